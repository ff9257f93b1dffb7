"""App factory of the gateway."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from authbench.config import Settings
from authbench.errors import NotFound
from authbench.http import READINESS_CHECKS, base_app
from gateway.proxy import ReverseProxy
from gateway.upstreams import UpstreamPool

SETTINGS = web.AppKey("settings", Settings)
PROXY = web.AppKey("proxy", ReverseProxy)
AUTH_POOL = web.AppKey("auth_pool", UpstreamPool)
RESOURCE_POOL = web.AppKey("resource_pool", UpstreamPool)


def create_app(settings: Settings) -> web.Application:
    app = base_app("gateway", client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    # Pools exist from the start (readiness reports on them); health checks run in ctx.
    pool_args = {
        "eject_after": settings.eject_after_failures,
        "health_interval_s": settings.health_interval_s,
    }
    app[AUTH_POOL] = UpstreamPool(settings.auth_url, **pool_args)  # type: ignore[arg-type]
    app[RESOURCE_POOL] = UpstreamPool(settings.resource_urls, **pool_args)  # type: ignore[arg-type]
    app.router.add_route("*", "/auth/{tail:.*}", _to_auth)
    app.router.add_route("*", "/api/{tail:.*}", _to_resources)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    app.cleanup_ctx.append(_resources)
    return app


async def _to_auth(request: web.Request) -> web.StreamResponse:
    return await request.app[PROXY].forward(request, request.app[AUTH_POOL])


async def _to_resources(request: web.Request) -> web.StreamResponse:
    return await request.app[PROXY].forward(request, request.app[RESOURCE_POOL])


async def _not_found(request: web.Request) -> web.StreamResponse:
    # Only /auth and /api are routed: the gateway is no open proxy.
    raise NotFound()


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connector = aiohttp.TCPConnector(
        limit=0,  # the pool is bounded by the client concurrency, not a global cap
        limit_per_host=256,
        keepalive_timeout=30,
        ttl_dns_cache=1,  # the upstream pool does its own discovery
        enable_cleanup_closed=True,
    )
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    )
    app[PROXY] = ReverseProxy(session, settings.upstream_timeout_s)

    async def upstreams_ready() -> str | None:
        missing = [
            name for name, pool in (("auth", app[AUTH_POOL]), ("resource", app[RESOURCE_POOL]))
            if not pool.healthy
        ]  # fmt: skip
        return f"no healthy {' or '.join(missing)} upstream" if missing else None

    app[READINESS_CHECKS].append(upstreams_ready)
    checks = [
        asyncio.create_task(app[AUTH_POOL].run_health_checks(session)),
        asyncio.create_task(app[RESOURCE_POOL].run_health_checks(session)),
    ]
    try:
        yield
    finally:
        for task in checks:
            task.cancel()
        for task in checks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()
