"""App factory of a resource replica."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from authcore.assertion import AssertionVerifier
from authcore.checking import credential_checking
from authcore.config import Settings
from authcore.http import READINESS_CHECKS, base_app
from authcore.overload import InFlightLimit
from resource_service.edge import AssertionChecker
from resource_service.routes import CHECKER, ITEM_DATA, REPLICA, routes

SETTINGS = web.AppKey("settings", Settings)


def create_app(settings: Settings, replica: str) -> web.Application:
    app = base_app("resource", client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[REPLICA] = replica
    # The payload is built once: a fixed-size body models a real resource, at no CPU cost.
    app[ITEM_DATA] = "x" * settings.item_bytes
    app.add_routes(routes)
    # Overload (issue 16): past REPLICA_MAX_INFLIGHT /api requests, a fast 503.
    limit = InFlightLimit(settings.replica_max_inflight, settings.overload_retry_after_s, "replica")
    app.middlewares.append(limit.middleware())
    app.cleanup_ctx.append(_edge_resources if settings.validate_at == "gateway" else _resources)
    return app


async def _edge_resources(app: web.Application) -> AsyncIterator[None]:
    """VALIDATE_AT=gateway: the gateway checked the credential; this replica verifies only
    its identity assertion, so it needs no Redis, no JWKS and no auth service at all."""
    app[CHECKER] = AssertionChecker(AssertionVerifier.from_settings(app[SETTINGS]))
    yield


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """VALIDATE_AT=replica: this replica checks every credential itself (authcore.checking,
    the same wiring as the gateway's when it validates)."""
    async with credential_checking(app[SETTINGS], app[REPLICA]) as checking:
        app[CHECKER] = checking.checker
        app[READINESS_CHECKS].extend(checking.readiness)
        yield
