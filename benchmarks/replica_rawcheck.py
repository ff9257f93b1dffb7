"""A resource replica whose credential check is the raw library call and nothing else.

The same app as `python -m resource_service`, with `CredentialChecker.authenticate`
replaced by exactly what the issue calls the raw cost, done in place, in the server:
- `Authorization: Bearer <t>`: PyJWT's decode of <t> (the replica's key, algorithm,
  audience, issuer, leeway and required claims), nothing else;
- otherwise: one redis.asyncio GET (hiredis, a pooled client with redis-py's defaults).
In-situ, so the library pays the same cold caches and kernel costs inside a busy server
as the real check does (benchmarks/replica_costs.py compares the three replicas).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import jwt
import redis.asyncio as aioredis
from aiohttp import web

from authcore.config import Settings
from authcore.credentials import CredentialChecker, Principal
from authcore.http import run, serve
from authcore.jwks import JWKS_PATH
from authcore.tokens import REQUIRED_CLAIMS, generate_key
from resource_service.app import create_app
from resource_service.routes import CHECKER

_JWT = Principal("user1", "jwt")
_SESSION = Principal("user1", "session")


class RawLibraryChecker(CredentialChecker):
    def __init__(self, settings: Settings) -> None:
        alg = settings.jwt_algorithm
        if alg == "HS256":
            self._key: Any = generate_key("HS256", settings.jwt_hs256_secret).public_key
        else:
            url = settings.auth_url.rstrip("/") + JWKS_PATH
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
                jwk = json.loads(resp.read())["keys"][0]
            self._key = jwt.PyJWK(jwk, algorithm=alg).key
        self._alg = [alg]
        self._audience, self._issuer = settings.jwt_audience, settings.jwt_issuer
        self._leeway = settings.jwt_leeway_s
        self._options: Any = {"require": list(REQUIRED_CLAIMS)}
        self._decoder = jwt.PyJWT()
        self._redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                settings.redis_url, max_connections=settings.pool_size()
            )
        )

    async def authenticate(self, request: web.Request) -> Principal:
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            self._decoder.decode(
                authorization[7:], self._key, algorithms=self._alg, audience=self._audience,
                issuer=self._issuer, leeway=self._leeway, options=self._options,
            )  # fmt: skip
            return _JWT
        await self._redis.get("bench:raw")
        return _SESSION


async def _swap_checker(app: web.Application) -> None:
    # Runs after the app's cleanup_ctx set the real checker up (aiohttp startup order).
    app[CHECKER] = RawLibraryChecker(Settings.from_env())


def main() -> None:
    settings = Settings.from_env()
    app = create_app(settings, "rawcheck")
    app.on_startup.append(_swap_checker)
    run(lambda: serve(app, settings.host, settings.port), settings.log_level)


if __name__ == "__main__":
    main()
