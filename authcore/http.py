"""The HTTP edge every service shares: JSON errors, health, readiness, metrics, serving.

Handlers raise `AuthbenchError`s; `error_middleware` is the one place that turns them
(and aiohttp's own HTTP exceptions, and anything unexpected) into the contract's JSON.
Errors found by aiohttp's parser before any handler runs (a header line too long, a
request line that is not HTTP) are answered in JSON too, by `JsonErrorRequestHandler`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from authcore import errors, metrics
from authcore.config import IPNetwork

log = logging.getLogger("authcore.http")

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when the dependency is fine, or a short reason when it is not."""

READINESS_CHECKS = web.AppKey("readiness_checks", list[ReadinessCheck])
SERVICE_NAME = web.AppKey("service_name", str)

_JSON_HEADERS = {"Cache-Control": "no-store"}
_dumps = json.dumps


# A JSON body's media type: application/json or any +json type, parameters ignored.
_JSON_MEDIA = re.compile(r"application/(?:[A-Za-z0-9.+-]*\+)?json", re.IGNORECASE)
# Any character but C0/C1 controls and DEL: what a username or other name may hold.
_NO_CONTROLS = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or the 4xx that says what is wrong with it.

    The body must be declared JSON: a body with another Content-Type, or none at all, is
    415. Such a request is what an HTML form or a CORS "simple" request can send
    cross-site, so refusing it keeps other sites from posting here."""
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip()
    if _JSON_MEDIA.fullmatch(media) is None:
        raise errors.UnsupportedMediaType()
    body = await request.read()  # bounded by the app's client_max_size (413 beyond)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as err:  # bad JSON, bad UTF-8, absurd nesting
        raise errors.InvalidJson() from err
    if not isinstance(data, dict):
        raise errors.InvalidJson()
    return data


def checked_text(
    value: str, what: str, *, max_length: int, pattern: re.Pattern[str] | None = None
) -> str:
    """`value` if it is 1..max_length characters of encodable text matching `pattern`.

    Every string a client sends passes here (or a credential parser whose pattern admits
    ASCII only) before it reaches Redis, a hash or a log line. JSON can carry lone
    surrogates ("\\ud800") and aiohttp decodes non-UTF-8 header bytes to them
    (surrogateescape); neither encodes to UTF-8, so either would raise deep inside the
    Redis client or hashlib (a 500) if it got that far."""
    if not value or len(value) > max_length:
        raise errors.InvalidField(f"{what} must be 1 to {max_length} characters")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as err:
            raise errors.InvalidField(f"{what} is not valid UTF-8 text") from err
    if pattern is not None and pattern.fullmatch(value) is None:
        raise errors.InvalidField(f"{what} is malformed")
    return value


def string_field(
    data: dict[str, Any],
    name: str,
    *,
    max_length: int = 256,
    pattern: re.Pattern[str] | None = _NO_CONTROLS,
) -> str:
    """A required string field of a JSON body, checked by `checked_text`. By default it
    may hold no control characters; `pattern=None` admits any text (passwords)."""
    value = data.get(name)
    if value is None:
        raise errors.InvalidField(f"'{name}' is required")
    if not isinstance(value, str):
        raise errors.InvalidField(f"'{name}' must be a string")
    return checked_text(value, f"'{name}'", max_length=max_length, pattern=pattern)


def client_address(request: web.BaseRequest, trusted: tuple[IPNetwork, ...]) -> str:
    """The client's address, for per-address throttling (TRUSTED_PROXIES).

    The TCP peer is the client unless it is a trusted proxy (the gateway); then
    X-Forwarded-For is read from the right, each hop a proxy appended, and the first hop
    that is not itself a trusted proxy is the client. Hops further left were written by
    the client and prove nothing. A hop that is no IP address ends the walk at the last
    good one, so the answer is always a canonical address (never client text)."""
    peer = request.remote or ""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return "unknown"  # a Unix socket: no address to throttle by
    if not trusted or not _in_any(address, trusted):
        return str(address)
    hops = [
        hop for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")
    ]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop.strip())
        except ValueError:
            break
        if not _in_any(address, trusted):
            break
    return str(address)


def _in_any(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: tuple[IPNetwork, ...]
) -> bool:
    return any(address in network for network in networks)


def error_body(code: str, detail: str) -> bytes:
    return _dumps({"error": code, "detail": detail}).encode()


def error_response(err: errors.AuthbenchError) -> web.Response:
    headers = {**_JSON_HEADERS, **err.headers}
    return web.Response(
        body=error_body(err.code, err.detail),
        status=err.status,
        content_type="application/json",
        headers=headers,
    )


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_dumps(data).encode(),
        status=status,
        content_type="application/json",
        headers={**_JSON_HEADERS, **(headers or {})},
    )


_HTTP_STATUS_ERRORS: dict[int, type[errors.AuthbenchError]] = {
    400: errors.BadRequest,
    404: errors.NotFound,
    405: errors.MethodNotAllowed,
    413: errors.PayloadTooLarge,
    414: errors.UriTooLong,
    415: errors.UnsupportedMediaType,
    431: errors.HeadersTooLarge,
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except errors.AuthbenchError as err:
        status = err.status
        return error_response(err)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:  # redirects and the like pass through untouched
            raise
        kind = _HTTP_STATUS_ERRORS.get(exc.status)
        mapped = kind() if kind else errors.AuthbenchError(exc.reason)
        if kind is None:
            mapped.status, mapped.code = exc.status, exc.reason.lower().replace(" ", "_")
        if isinstance(mapped, errors.MethodNotAllowed):
            mapped.allow = exc.headers.get("Allow", "")  # aiohttp's router knows them
        return error_response(mapped)
    except (asyncio.CancelledError, ConnectionResetError):
        status = 499  # client went away: nothing to answer
        raise
    except Exception:
        # A bug, not bad input: log it here (never to the client), answer a bare 500.
        log.exception("unhandled error on %s %s", request.method, request.rel_url.path)
        return error_response(errors.AuthbenchError())
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        metrics.HTTP_REQUESTS.labels(name, str(status)).observe(time.perf_counter() - started)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "service": request.app[SERVICE_NAME]})


async def readyz(request: web.Request) -> web.Response:
    reasons = {}
    for check in request.app[READINESS_CHECKS]:
        reason = await check()
        if reason:
            reasons[getattr(check, "__name__", "check")] = reason
    if reasons:
        return json_response(
            {"status": "unavailable", "error": "not_ready", "detail": reasons}, status=503
        )
    return json_response({"status": "ready", "service": request.app[SERVICE_NAME]})


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def base_app(service: str, *, client_max_size: int = 65536) -> web.Application:
    """An application with the shared middleware and the three operational endpoints."""
    app = web.Application(middlewares=[error_middleware], client_max_size=client_max_size)
    app[SERVICE_NAME] = service
    app[READINESS_CHECKS] = []
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


class JsonErrorRequestHandler(RequestHandler):
    """Answers parser-level errors (before routing) in the contract's JSON shape."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            # aiohttp reports both an overlong header and an overlong request line as
            # LineTooLong(line, limit): the limit says which when the two limits differ,
            # else the line's shape ("METHOD /target" or "/target", not "Name: value").
            line, limit = (*exc.args, b"", None)[:2]
            if self.max_line_size != self.max_field_size:
                too_long_url = limit == self.max_line_size
            else:
                too_long_url = _is_request_line(line)
            err: errors.AuthbenchError = (
                errors.UriTooLong() if too_long_url else errors.HeadersTooLarge()
            )
        elif isinstance(exc, BadHttpMessage) and "too many headers" in str(exc).lower():
            err = errors.HeadersTooLarge("too many request headers")
        elif isinstance(exc, BadHttpMessage):
            err = errors.BadRequest("malformed HTTP request")
        elif status == 500:
            log.error("error before routing: %s", type(exc).__name__ if exc else "unknown")
            err = errors.AuthbenchError()
        else:
            err = _HTTP_STATUS_ERRORS.get(status, errors.BadRequest)()
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        resp = error_response(err)
        resp.force_close()
        return resp


_REQUEST_LINE = re.compile(rb"[A-Za-z]+ [^ :]|/|\*")


def _is_request_line(line: object) -> bool:
    if isinstance(line, str):
        line = line.encode("latin-1", "replace")
    return isinstance(line, bytes | bytearray) and _REQUEST_LINE.match(bytes(line)) is not None


class JsonErrorAppRunner(web.AppRunner):
    """AppRunner whose connections use `JsonErrorRequestHandler`.

    aiohttp (3.14) has no public hook for this: parser errors are answered by
    `RequestHandler.handle_error` before routing (no middleware sees them), `web.Server`
    builds a plain RequestHandler per connection, and AppRunner takes no handler class.
    So this overrides the private `_make_server` and re-classes the server aiohttp built
    (same state, one overridden factory) rather than re-creating it from more private
    parts. tests/authcore/test_parser_error_hook.py fails by name if an upgrade moves
    any of it."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer
        return server


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency off Windows
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_line_size: int = 8190,
    max_field_size: int = 8190,
    reuse_port: bool = False,
    access_log: bool = False,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve `app` until cancelled (SIGINT/SIGTERM end the task in `run`)."""
    runner = JsonErrorAppRunner(
        app,
        access_log=log if access_log else None,
        max_line_size=max_line_size,
        max_field_size=max_field_size,
        handle_signals=False,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
        await site.start()
        log.info("%s listening on http://%s:%d", app[SERVICE_NAME], host, port)
        if ready is not None:
            ready()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(main: Callable[[], Awaitable[None]], log_level: str = "INFO") -> None:
    """Run a service's `main` on uvloop; SIGINT and SIGTERM end it cleanly (exit 0)."""
    import signal

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    install_uvloop()

    async def _wrapped() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await main()
        except asyncio.CancelledError:
            pass

    asyncio.run(_wrapped())
