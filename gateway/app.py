"""The gateway: routes /auth/* to the auth service and /api/* to the resource replicas.

`create_app(settings)` builds a `Gateway`: the two upstream pools, the reverse proxy, the
gateway's own /healthz and /readyz, and its `OperatorEndpoints`. `serve()` runs it behind
`gateway.server.ClientConnection`, an asyncio protocol, rather than an aiohttp
Application: the gateway sits in front of every measured request, so its per-request
cost is kept to parsing, one routing decision and byte-level forwarding (see
benchmarks/README.md for what that gained). aiohttp is still used where cost does not
matter: the active health checks.

/metrics names the upstreams' internal addresses, so the public port never serves it:
it is on the operator port (GATEWAY_ADMIN_PORT on GATEWAY_ADMIN_HOST, loopback by
default; 0 = no operator port), with /healthz and /readyz, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from authcore import errors, metrics
from authcore.config import Settings
from authcore.overload import InFlightLimit
from gateway.edge import EdgeValidator
from gateway.errors import DotSegments, ResponseAborted
from gateway.exchange import ProxyRequest
from gateway.limits import OpenConnections, client_budget
from gateway.proxy import Pool, ReverseProxy, request_id
from gateway.server import ClientConnection
from gateway.upstreams import UpstreamPool

log = logging.getLogger("gateway")

_API, _AUTH = b"/api/", b"/auth/"
ROUTE_API, ROUTE_AUTH = "/api/{tail}", "/auth/{tail}"
_JSON = b"application/json; charset=utf-8"
_BUILTIN_METHODS = (b"GET", b"HEAD")
# The operator port serves a scraper and a probe or two, not a crowd.
OPERATOR_CONNECTIONS = 64


class Listener:
    """What both ports share: the request limits, the connection caps, request IDs."""

    def __init__(self, settings: Settings, connections: OpenConnections[ClientConnection]) -> None:
        self.max_url_bytes = settings.max_url_bytes
        self.max_field_bytes = settings.max_header_bytes
        self.max_body_bytes = settings.max_body_bytes
        # A bound on a whole request head, so one endless header line cannot eat memory.
        self.max_head_bytes = settings.max_url_bytes + 32 * settings.max_header_bytes
        self.request_id: Callable[[bytes | None], bytes] = request_id
        self.connections = connections


class Gateway(Listener):
    """Routing, the upstream pools and the gateway's own public endpoints."""

    def __init__(self, settings: Settings) -> None:
        reserve = settings.gateway_fd_reserve
        budget = client_budget(reserve)  # also lifts the soft open-files limit
        super().__init__(
            settings,
            OpenConnections(
                settings.gateway_max_connections or budget,
                settings.gateway_max_connections_per_client,
            ),
        )
        self.settings = settings
        pool_args: dict[str, Any] = {
            "eject_after": settings.eject_after_failures,
            "health_interval_s": settings.health_interval_s,
            # Two routes' idle keep-alive connections share half the reserve.
            "idle_budget": max(8, reserve // 4),
        }
        self.auth_pool: Pool = UpstreamPool(settings.auth_url, **pool_args)
        self.resource_pool: Pool = UpstreamPool(settings.resource_urls, **pool_args)
        self.proxy = ReverseProxy(
            settings.upstream_timeout_s,
            settings.gateway_max_inflight_per_upstream,
            settings.overload_retry_after_s,
        )
        # Overload (issue 16): requests this worker holds (validating or at an upstream).
        self.inflight = InFlightLimit(
            settings.gateway_max_inflight, settings.overload_retry_after_s, "gateway"
        )
        # Edge validation (issue 15): the gateway checks /api credentials itself.
        self.edge = EdgeValidator(settings) if settings.validate_at == "gateway" else None
        self._validating: set[asyncio.Task[None]] = set()
        self.operator = OperatorEndpoints(self)
        self._access_log = settings.access_log
        self._observers: dict[tuple[str, int], Any] = {}
        # The public API's OpenAPI document, read once: served as it ships with authcore.
        self.openapi = (importlib.resources.files("authcore") / "openapi.json").read_bytes()

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
        limit = self.inflight  # InFlightLimit.enter, inlined on the hot path
        if limit.inflight >= limit.limit:
            limit.enter()  # raises Overloaded: a fast 503 with Retry-After
        limit.inflight += 1
        request.admitted = True  # `observe` counts it out, however it ends
        if self.edge is not None and pool is self.resource_pool:
            task = asyncio.get_running_loop().create_task(
                self._validate_and_forward(self.edge, request, pool, client)
            )
            self._validating.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._validating.discard)
            return
        self.proxy.forward(request, pool, client)

    async def _validate_and_forward(
        self, edge: EdgeValidator, request: ProxyRequest, pool: Pool, client: ClientConnection
    ) -> None:
        """VALIDATE_AT=gateway: check the credential, then forward with the assertion."""
        try:
            line = await edge.assertion_line(request)
        except errors.AuthbenchError as err:
            client.request_done(err)
            return
        except Exception:  # a bug: log it, answer a bare JSON 500
            log.exception("edge validation failed")
            client.request_done(errors.AuthbenchError())
            return
        if client.gone:
            client.request_done(ResponseAborted())
            return
        self.proxy.forward(request, pool, client, line)

    def _builtin(self, request: ProxyRequest, client: ClientConnection) -> None:
        path = request.target.split(b"?", 1)[0]
        answer = self.probe(path)
        if answer is not None:
            status, ctype, body = answer
        elif path == b"/openapi.json":
            status, ctype, body = 200, _JSON, self.openapi
        else:
            raise errors.NotFound()  # only /auth and /api are routed: no open proxy
        _answer(request, client, status, ctype, body)

    def probe(self, path: bytes) -> tuple[int, bytes, bytes] | None:
        """/healthz and /readyz (on both ports); None for any other path."""
        if path == b"/healthz":
            return 200, _JSON, _json({"status": "ok", "service": "gateway"})
        if path != b"/readyz":
            return None
        reason = self.not_ready()
        if reason:
            detail = {"upstreams_ready": reason}
            return (
                503,
                _JSON,
                _json({"status": "unavailable", "error": "not_ready", "detail": detail}),
            )
        return 200, _JSON, _json({"status": "ready", "service": "gateway"})

    def not_ready(self) -> str | None:
        pools = (("auth", self.auth_pool), ("resource", self.resource_pool))
        missing = [name for name, pool in pools if not pool.healthy]
        if missing:
            return f"no healthy {' or '.join(missing)} upstream"
        if self.edge is not None and not self.edge.ready:
            return "verification keys not loaded yet"
        return None

    def observe(self, request: ProxyRequest, status: int) -> None:
        """Per-route request duration, as the other services report it (cached children)."""
        if request.admitted:
            request.admitted = False
            self.inflight.inflight -= 1
        target = request.target
        if target.startswith(_API):
            route = ROUTE_API
        elif target.startswith(_AUTH):
            route = ROUTE_AUTH
        else:
            route = "unmatched"
        key = (route, status)
        child = self._observers.get(key)
        if child is None:
            child = self._observers[key] = metrics.HTTP_REQUESTS.labels(route, str(status))
        elapsed = time.perf_counter() - request.started
        child.observe(elapsed)
        if self._access_log:
            log.info(
                "%s %s %d %.1f ms %s",
                request.method.decode("latin-1"),
                target.decode("latin-1"),
                status,
                elapsed * 1000,
                request.rid.decode("latin-1"),
            )

    # --- lifecycle ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Active health checks (aiohttp: off the hot path) while the gateway serves."""
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=1),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        edge = self.edge.running() if self.edge is not None else contextlib.nullcontext()
        await edge.__aenter__()
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
            await edge.__aexit__(None, None, None)
            self.auth_pool.close()
            self.resource_pool.close()

    async def _sweep_connections(self) -> None:
        """Once a second: time out slow request heads and bodies, and idle clients."""
        head_limit = self.settings.client_header_timeout_s
        body_limit = self.settings.client_body_timeout_s
        idle_limit = self.settings.client_idle_timeout_s
        while True:
            await asyncio.sleep(1.0)
            for listener in (self, self.operator):
                for connection in list(listener.connections.open):
                    connection.sweep(head_limit, body_limit, idle_limit)


class OperatorEndpoints(Listener):
    """The operator port: /metrics (it names upstream addresses), /healthz and /readyz.
    Nothing is proxied from here."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(
            gateway.settings, OpenConnections(OPERATOR_CONNECTIONS, OPERATOR_CONNECTIONS)
        )
        self._gateway = gateway

    def dispatch(self, request: ProxyRequest, client: ClientConnection) -> None:
        path = request.target.split(b"?", 1)[0]
        answer = self._gateway.probe(path)
        if answer is not None:
            status, ctype, body = answer
        elif path == b"/metrics":
            text, content_type = metrics.render()
            status, ctype, body = 200, content_type.encode(), text
        else:
            raise errors.NotFound()
        _answer(request, client, status, ctype, body)
        client.request_done(None)

    def observe(self, request: ProxyRequest, status: int) -> None:
        """Scrapes and probes are not traffic: they stay out of the request histogram."""


def create_app(settings: Settings) -> Gateway:
    return Gateway(settings)


async def serve(gateway: Gateway, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until cancelled (SIGINT/SIGTERM end the task in authcore.http.run)."""
    loop = asyncio.get_running_loop()
    settings = gateway.settings
    async with gateway.running():
        servers = [
            await loop.create_server(
                lambda: ClientConnection(gateway), host, port, reuse_port=reuse_port, backlog=1024
            )
        ]
        log.info(
            "gateway listening on http://%s:%d (at most %d client connections, %d per address)",
            host,
            port,
            gateway.connections.max_total,
            gateway.connections.max_per_address,
        )
        if settings.gateway_admin_port:
            operator = gateway.operator
            servers.append(
                await loop.create_server(
                    lambda: ClientConnection(operator),
                    settings.gateway_admin_host,
                    settings.gateway_admin_port,
                    reuse_port=reuse_port,
                )
            )
            log.info(
                "operator port (/metrics) on http://%s:%d",
                settings.gateway_admin_host,
                settings.gateway_admin_port,
            )
        try:
            await asyncio.Event().wait()
        finally:
            for server in servers:
                server.close()


def _answer(
    request: ProxyRequest, client: ClientConnection, status: int, ctype: bytes, body: bytes
) -> None:
    if request.method not in _BUILTIN_METHODS:
        raise errors.MethodNotAllowed(allow="GET, HEAD")
    client.send(status, ctype, body, request.rid, head_only=request.method == b"HEAD")


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
