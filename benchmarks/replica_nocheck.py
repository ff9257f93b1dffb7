"""A resource replica whose credential check is a constant: the "without checks" baseline.

Everything else is the real replica (`resource_service.create_app`: middleware, routes,
JSON, metrics, Redis pool, JWKS fetcher); only `CredentialChecker.authenticate` answers a
fixed principal without looking at the request. `python benchmarks/replica_nocheck.py`,
configured by the same environment as `python -m resource_service`.
"""

from __future__ import annotations

from aiohttp import web

from authcore.config import Settings
from authcore.credentials import CredentialChecker, Principal
from authcore.http import run, serve
from resource_service.app import create_app
from resource_service.routes import CHECKER

_PRINCIPAL = Principal("user1", "jwt")


class ConstantChecker(CredentialChecker):
    def __init__(self) -> None:  # no state: nothing is checked
        pass

    async def authenticate(self, request: web.Request) -> Principal:
        return _PRINCIPAL


async def _swap_checker(app: web.Application) -> None:
    # Runs after the app's cleanup_ctx set the real checker up (aiohttp startup order).
    app[CHECKER] = ConstantChecker()


def main() -> None:
    settings = Settings.from_env()
    app = create_app(settings, "nocheck")
    app.on_startup.append(_swap_checker)
    run(lambda: serve(app, settings.host, settings.port), settings.log_level)


if __name__ == "__main__":
    main()
