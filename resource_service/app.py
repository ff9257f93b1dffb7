"""App factory of a resource replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from authcore.assertion import AssertionVerifier
from authcore.config import Settings
from authcore.credentials import CredentialChecker
from authcore.http import READINESS_CHECKS, base_app
from authcore.introspection import IntrospectionClient
from authcore.jwks import KeySetFetcher
from authcore.overload import InFlightLimit
from authcore.pushlist import PushList
from authcore.redis_store import RedisStore
from authcore.revocation import RevocationList
from authcore.session_cache import CachedSessionStore
from authcore.sessions import SessionStore
from authcore.tokens import TokenVerifier
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
    settings = app[SETTINGS]
    store = RedisStore(settings)
    verifier = TokenVerifier(settings)
    client = aiohttp.ClientSession()
    fetcher = KeySetFetcher(settings, verifier, client)
    denylist = RevocationList(store, settings.jwt_leeway_s) if settings.denylist_enabled else None
    # JWT_REVOCATION=pushlist: the revocation set is held here, pushed through a stream.
    pushlist = PushList(settings, app[REPLICA]) if settings.pushlist_enabled else None
    # SESSION_CACHE: the near cache and its invalidation listener (mode session+cache).
    cache = CachedSessionStore(store, settings) if settings.session_cache else None
    listening = asyncio.create_task(cache.listener.run()) if cache is not None else None
    app[CHECKER] = CredentialChecker(
        settings,
        cache if cache is not None else SessionStore(store, settings),
        verifier,
        denylist or pushlist,
        refresh_keys=fetcher.refresh_on_unknown_kid,
        # Mode opaque: every such read asks the auth service (RFC 7662), when it is set up.
        opaque=IntrospectionClient(settings, client) if settings.introspect_secret else None,
    )
    app[READINESS_CHECKS].extend([store.ping, fetcher.readiness])
    loading = asyncio.create_task(fetcher.load_until_ready())
    if pushlist is not None:
        app[READINESS_CHECKS].append(pushlist.readiness)
        pushlist.start()
    try:
        yield
    finally:
        if pushlist is not None:
            await pushlist.stop()
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loading
        if cache is not None and listening is not None:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            await cache.close()
        await client.close()
        await store.close()
