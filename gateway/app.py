"""The gateway: routes /auth/* to the auth service and /api/* to the resource replicas.

`create_app(settings)` builds a `Gateway`: the two upstream pools, the reverse proxy and
the gateway's own /healthz, /readyz and /metrics. `serve()` runs it behind
`gateway.server.ClientConnection`, an asyncio protocol, rather than an aiohttp
Application: the gateway sits in front of every measured request, so its per-request
cost is kept to parsing, one routing decision and byte-level forwarding (see
benchmarks/README.md for what that gained). aiohttp is still used where cost does not
matter: the active health checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from authcore import errors, metrics
from authcore.config import Settings
from gateway.proxy import ReverseProxy, request_id
from gateway.server import ClientConnection, ProxyRequest
from gateway.upstreams import UpstreamPool

log = logging.getLogger("gateway")

_API, _AUTH = b"/api/", b"/auth/"
ROUTE_API, ROUTE_AUTH = "/api/{tail}", "/auth/{tail}"
_JSON = b"application/json; charset=utf-8"
_BUILTIN_METHODS = (b"GET", b"HEAD")


class DotSegments(errors.BadRequest):
    code, default_detail = "bad_request", "'.' and '..' path segments are not accepted"


class Gateway:
    """Routing, the upstream pools and the gateway's own endpoints."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        pool_args: dict[str, Any] = {
            "eject_after": settings.eject_after_failures,
            "health_interval_s": settings.health_interval_s,
        }
        self.auth_pool = UpstreamPool(settings.auth_url, **pool_args)
        self.resource_pool = UpstreamPool(settings.resource_urls, **pool_args)
        self.proxy = ReverseProxy(settings.upstream_timeout_s)
        self.max_url_bytes = settings.max_url_bytes
        self.max_field_bytes = settings.max_header_bytes
        self.max_body_bytes = settings.max_body_bytes
        # A bound on a whole request head, so one endless header line cannot eat memory.
        self.max_head_bytes = settings.max_url_bytes + 32 * settings.max_header_bytes
        self.request_id = request_id
        self._access_log = settings.access_log
        self._observers: dict[tuple[str, int], Any] = {}
        self.connections: set[ClientConnection] = set()

    # --- one request --------------------------------------------------------------------
    def dispatch(self, request: ProxyRequest, client: ClientConnection) -> None:
        """Route one request; `client.request_done` is called when it has been answered
        (domain errors may also be raised straight from here)."""
        target = request.target
        if target[:1] != b"/":
            target = request.target = _origin_form(target)
        if b"/." in target or b"%2" in target:
            _refuse_dot_segments(target)
        if target.startswith(_API):
            pool = self.resource_pool
        elif target.startswith(_AUTH):
            pool = self.auth_pool
        else:
            self._builtin(request, client)
            client.request_done(None)
            return
        self.proxy.forward(request, pool, client)

    def _builtin(self, request: ProxyRequest, client: ClientConnection) -> None:
        path = request.target.split(b"?", 1)[0]
        if path == b"/healthz":
            status, ctype, body = 200, _JSON, _json({"status": "ok", "service": "gateway"})
        elif path == b"/readyz":
            reason = self.not_ready()
            if reason:
                status, ctype, body = 503, _JSON, _json({
                    "status": "unavailable", "error": "not_ready",
                    "detail": {"upstreams_ready": reason},
                })  # fmt: skip
            else:
                status, ctype, body = 200, _JSON, _json({"status": "ready", "service": "gateway"})
        elif path == b"/metrics":
            text, content_type = metrics.render()
            status, ctype, body = 200, content_type.encode(), text
        else:
            raise errors.NotFound()  # only /auth and /api are routed: no open proxy
        if request.method not in _BUILTIN_METHODS:
            raise errors.MethodNotAllowed()
        client.send(status, ctype, body, request.rid, head_only=request.method == b"HEAD")

    def not_ready(self) -> str | None:
        missing = [
            name for name, pool in (("auth", self.auth_pool), ("resource", self.resource_pool))
            if not pool.healthy
        ]  # fmt: skip
        return f"no healthy {' or '.join(missing)} upstream" if missing else None

    def observe(self, request: ProxyRequest, status: int) -> None:
        """Per-route request duration, as the other services report it (cached children)."""
        target = request.target
        route = (
            ROUTE_API if target.startswith(_API)
            else ROUTE_AUTH if target.startswith(_AUTH) else "unmatched"
        )  # fmt: skip
        key = (route, status)
        child = self._observers.get(key)
        if child is None:
            child = self._observers[key] = metrics.HTTP_REQUESTS.labels(route, str(status))
        elapsed = time.perf_counter() - request.started
        child.observe(elapsed)
        if self._access_log:
            log.info(
                "%s %s %d %.1f ms %s", request.method.decode("latin-1"),
                target.decode("latin-1"), status, elapsed * 1000, request.rid.decode("latin-1"),
            )  # fmt: skip

    # --- lifecycle ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Active health checks (aiohttp: off the hot path) while the gateway serves."""
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=1),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        checks = [
            asyncio.create_task(self.auth_pool.run_health_checks(session)),
            asyncio.create_task(self.resource_pool.run_health_checks(session)),
            asyncio.create_task(self._sweep_connections()),
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
            self.auth_pool.close()
            self.resource_pool.close()

    async def _sweep_connections(self) -> None:
        """Once a second: time out slow request heads and idle keep-alive clients."""
        head_limit = self.settings.client_header_timeout_s
        idle_limit = self.settings.client_idle_timeout_s
        while True:
            await asyncio.sleep(1.0)
            for connection in list(self.connections):
                connection.sweep(head_limit, idle_limit)


def create_app(settings: Settings) -> Gateway:
    return Gateway(settings)


async def serve(gateway: Gateway, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until cancelled (SIGINT/SIGTERM end the task in authcore.http.run)."""
    loop = asyncio.get_running_loop()
    async with gateway.running():
        server = await loop.create_server(
            lambda: ClientConnection(gateway), host, port, reuse_port=reuse_port, backlog=1024
        )
        log.info("gateway listening on http://%s:%d", host, port)
        try:
            await asyncio.Event().wait()
        finally:
            server.close()


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def _origin_form(target: bytes) -> bytes:
    """An absolute-form target (`http://host/path`) reduced to its path: the host a
    client names is never where the gateway connects (no open proxy)."""
    scheme, sep, rest = target.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        return target  # e.g. `*` or CONNECT's authority: routed nowhere, a 404
    slash = rest.find(b"/")
    return rest[slash:] if slash >= 0 else b"/"


def _refuse_dot_segments(target: bytes) -> None:
    """`.` and `..` segments (also as %2e) are refused, never resolved: /api/../metrics
    must not reach a replica's own endpoints, and no upstream ever sees one."""
    path = target.partition(b"?")[0].lower().replace(b"%2e", b".")
    if any(segment in (b".", b"..") for segment in path.split(b"/")):
        raise DotSegments()
