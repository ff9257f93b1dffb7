"""The gateway's HTTP/1.1 server side: one asyncio protocol per client connection.

The proxy hot path bypasses aiohttp's server (request objects, routing, middleware,
response objects) for an httptools (llhttp, the parser Node.js uses) request parser and
byte-level responses: the gateway only needs the method, the target and the raw headers to
forward a request, and that work is what every benchmark request pays for.

What aiohttp's server did for us is done here, explicitly:
- limits: request target longer than MAX_URL_BYTES is 414, a header line longer than
  MAX_HEADER_BYTES or more than MAX_HEADERS headers is 431, a body over MAX_BODY_BYTES is
  413, anything but HTTP/1.0 and HTTP/1.1 is 400 (llhttp itself refuses every other
  version but "HTTP/2.0" and "HTTP/0.9" as malformed; those two get the same 400 rather
  than a 505, since HTTP/2 never sends an HTTP/1 request line), and an HTTP/1.1 request
  without Host is 400 (RFC 9112 section 3.2); all in the contract's JSON, then the
  connection is closed (after reading what the client still sends, so it sees the answer);
- time: a request head must be complete within CLIENT_HEADER_TIMEOUT_S and its body
  within CLIENT_BODY_TIMEOUT_S of the head (408), however steadily the bytes trickle in;
  an idle keep-alive connection is closed after CLIENT_IDLE_TIMEOUT_S;
- connection caps (`gateway.limits`): per client address and in total, checked when a
  connection opens;
- trailer fields of a chunked body are dropped, never merged into the headers (RFC 9110
  section 6.5.1: an Authorization or Cookie sent only as a trailer authenticates nothing);
- keep-alive and HTTP/1.0, pipelined requests answered in order, `Expect: 100-continue`;
- backpressure: a client that does not read pauses the upstream it is fed from;
- a client that goes away aborts its upstream exchange.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol, cast

import httptools

from authcore import errors
from authcore.http import error_body
from gateway.errors import MissingHost, ResponseAborted, UnsupportedVersion
from gateway.exchange import ProxyRequest, UpstreamRelay
from gateway.limits import OpenConnections

log = logging.getLogger("gateway.server")

MAX_HEADERS = 128
MAX_PIPELINED = 16  # queued requests per connection before we stop reading
_DRAIN_LIMIT = 1 << 22  # after a 413, read and drop at most this much before closing
_DRAIN_TIMEOUT_S = 2.0
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_KEEP_ALIVE_TAIL = b"\r\n"
_CLOSE_TAIL = b"Connection: close\r\n\r\n"
_KEEP_ALIVE_10_TAIL = b"Connection: keep-alive\r\n\r\n"


class Dispatcher(Protocol):
    """What a client connection needs of whatever answers its requests (the gateway, or
    its operator endpoints): limits, connection caps, and the answering itself."""

    max_url_bytes: int
    max_field_bytes: int
    max_body_bytes: int
    max_head_bytes: int
    connections: OpenConnections[ClientConnection]
    request_id: Callable[[bytes | None], bytes]

    def dispatch(self, request: ProxyRequest, client: ClientConnection) -> None: ...

    def observe(self, request: ProxyRequest, status: int) -> None: ...


class _Rejected:
    """A request refused while parsing: its error is answered in turn, then we close."""

    __slots__ = ("error", "rid")

    def __init__(self, error: errors.AuthbenchError, rid: bytes | None) -> None:
        self.error = error
        self.rid = rid


_PENDING = object()  # `_outcome` while a request is still being answered


class _Refuse(Exception):
    def __init__(self, error: errors.AuthbenchError) -> None:
        super().__init__()
        self.error = error


class ClientConnection(asyncio.Protocol):
    """One client connection: parse requests, hand them to the gateway one at a time."""

    __slots__ = (
        "_active",
        "_body",
        "_body_size",
        "_body_ticks",
        "_busy",
        "_connection",
        "_current",
        "_dispatching",
        "_drain_left",
        "_expect",
        "_gateway",
        "_head_bytes",
        "_head_ticks",
        "_headers",
        "_host_seen",
        "_idle_ticks",
        "_in_body",
        "_in_head",
        "_length",
        "_lost",
        "_out",
        "_outcome",
        "_parser",
        "_queue",
        "_reading_paused",
        "_rid",
        "_rid_line",
        "_stopped",
        "_transport",
        "_url",
        "_version11",
        "http11",
        "keep_alive",
        "peer",
        "status",
        "upstream",
    )

    def __init__(self, gateway: Dispatcher) -> None:
        self._gateway = gateway
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[ProxyRequest | _Rejected] = deque()
        self._busy = False
        self._lost = False
        self._stopped = False  # a refusal is queued: parse nothing more
        self._reading_paused = False
        self._drain_left = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] | None = None
        self._body_size = 0
        self._head_bytes = 0
        self._head_ticks = 0  # sweeps seen while this request head is arriving
        self._body_ticks = 0  # sweeps seen while this request body is arriving
        self._idle_ticks = 0  # sweeps in a row with no byte and nothing to answer
        self._active = False  # a byte arrived since the last sweep
        self._in_head = False
        self._in_body = False
        self._version11 = True
        self._length = -1
        self._expect = False
        self._rid: bytes | None = None
        self._connection: bytes | None = None
        self._host_seen = False
        self._rid_line = b""
        self._out: list[bytes] | None = None
        self._current: ProxyRequest | None = None
        self._dispatching = False
        self._outcome: errors.AuthbenchError | object | None = None
        self.peer = b"unknown"
        self.http11 = True
        self.keep_alive = True
        self.status = 0
        self.upstream: UpstreamRelay | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = str(peer[0]).encode()
        refusal = self._gateway.connections.admit(self, self.peer)
        if refusal is not None:
            # Over a cap: answer at once and close, without reading (a flood of these must
            # cost as little as possible and hold no descriptor for long).
            self._stopped = True
            self.keep_alive = False
            self.send_error(refusal, None)
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._active = True
        if self._stopped:
            self._drain(len(data))
            return
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self._gateway.max_head_bytes:
                self._refuse(errors.HeadersTooLarge())
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            # An Upgrade/CONNECT request: it was queued as a plain request (Upgrade is
            # hop-by-hop, never forwarded); what follows must be HTTP again.
            offset = exc.args[0]
            if offset < len(data) and not self._stopped:
                self.data_received(data[offset:])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refuse):
                self._refuse(cause.error)
            else:
                log.error("parser callback failed: %r", cause)
                self._refuse(errors.AuthbenchError())
        except httptools.HttpParserError:
            self._refuse(errors.BadRequest("malformed HTTP request"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._gateway.connections.release(self, self.peer)
        self._transport = None
        upstream = self.upstream
        if upstream is not None:
            upstream.abort()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    # --- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._head_ticks = 0
        self._body_ticks = 0
        self._url = b""
        self._headers = []
        self._body = None
        self._body_size = 0
        self._length = -1
        self._expect = False
        self._rid = None
        self._connection = None
        self._host_seen = False
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._gateway.max_url_bytes:
            raise _Refuse(errors.UriTooLong())

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            # A trailer field after a chunked body. RFC 9110 section 6.5.1: never merged
            # into the header section; the body goes upstream de-chunked, so it is dropped
            # (its bytes still count against MAX_BODY_BYTES).
            self._body_size += len(name) + len(value)
            if self._body_size > self._gateway.max_body_bytes:
                raise _Refuse(errors.PayloadTooLarge())
            return
        headers = self._headers
        if len(name) + len(value) + 2 > self._gateway.max_field_bytes:
            raise _Refuse(errors.HeadersTooLarge())
        if len(headers) >= MAX_HEADERS:
            raise _Refuse(errors.HeadersTooLarge("too many request headers"))
        headers.append((name, value))
        # The few headers the gateway itself acts on; first letters keep this cheap.
        first = name[:1]
        if first in b"CcXxEe":
            lowered = name.lower()
            if lowered == b"content-length":
                self._length = int(value) if value.isdigit() else -1
                if self._length > self._gateway.max_body_bytes:
                    raise _Refuse(errors.PayloadTooLarge())
            elif lowered == b"x-request-id":
                self._rid = value
            elif lowered == b"connection":
                self._connection = value
            elif lowered == b"expect":
                self._expect = value.lower() == b"100-continue"
        elif first in b"Hh" and name.lower() == b"host":
            if self._host_seen:  # RFC 9112 3.2: more than one Host is a 400
                raise _Refuse(errors.BadRequest("more than one Host header"))
            self._host_seen = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True  # until on_message_complete, at once when there is no body
        self._head_bytes = 0
        version = self._parser.get_http_version()
        if version == "1.1":
            if not self._host_seen:  # RFC 9112 section 3.2
                raise _Refuse(MissingHost())
            self._version11 = True
        elif version == "1.0":
            self._version11 = False
        else:
            raise _Refuse(UnsupportedVersion())
        if self._expect and not self._busy and not self._queue and self._transport:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._gateway.max_body_bytes:
            raise _Refuse(errors.PayloadTooLarge())
        if self._body is None:
            self._body = [body]
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        parser = self._parser
        body = self._body
        request = ProxyRequest(
            parser.get_method(),
            self._url,
            self._headers,
            (body[0] if len(body) == 1 else b"".join(body)) if body else None,
            self._connection,
            self._gateway.request_id(self._rid),
            parser.should_keep_alive(),
            self._version11,
        )
        self._queue.append(request)
        if not self._busy:
            self._next()
        elif len(self._queue) >= MAX_PIPELINED and self._transport and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()

    # --- answering ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        elif self._transport is not None:
            self._transport.write(data)

    def cork(self) -> None:
        """Collect writes until `uncork`: one send() for a head and its body."""
        self._out = []

    def uncork(self) -> None:
        out, self._out = self._out, None
        if out and self._transport is not None:
            self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def response_tail(self) -> bytes:
        """What ends a response head: the X-Request-Id line and the Connection header."""
        rid_line = self._rid_line
        if not self.keep_alive:
            return rid_line + _CLOSE_TAIL
        if not self.http11:
            return rid_line + _KEEP_ALIVE_10_TAIL
        return rid_line + _KEEP_ALIVE_TAIL

    def send_error(self, error: errors.AuthbenchError, rid: bytes | None) -> None:
        self.status = error.status
        body = error_body(error.code, error.detail)
        lines = [
            b"HTTP/1.1 %d %s\r\n" % (error.status, _reason(error.status)),
            b"Content-Type: application/json; charset=utf-8\r\n",
            b"Cache-Control: no-store\r\n",
            b"Content-Length: %d\r\n" % len(body),
        ]
        for name, value in error.headers.items():
            lines.append(b"%s: %s\r\n" % (name.encode(), value.encode()))
        if rid is not None:
            lines.append(b"X-Request-Id: " + rid + b"\r\n")
        lines.append(_CLOSE_TAIL if not self.keep_alive else b"\r\n")
        lines.append(body)
        self.write(b"".join(lines))

    def send(
        self, status: int, content_type: bytes, body: bytes, rid: bytes, head_only: bool = False
    ) -> None:
        """A complete answer from the gateway itself (its own endpoints)."""
        self.status = status
        self.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
            b"Content-Length: %d\r\nX-Request-Id: %s\r\n%s"
            % (
                status,
                _reason(status),
                content_type,
                len(body),
                rid,
                _CLOSE_TAIL if not self.keep_alive else b"\r\n",
            )
            + (b"" if head_only else body)
        )

    @property
    def gone(self) -> bool:
        """The client closed (or we did): nothing more can be answered."""
        return self._lost

    def _next(self) -> None:
        """Answer queued requests in order (pipelining), one at a time.

        A request either completes during `gateway.dispatch` (the gateway's own answers,
        errors) or later, from an upstream callback, through `request_done`.
        """
        queue = self._queue
        self._busy = True
        while queue and not self._lost:
            item = queue.popleft()
            if self._reading_paused and len(queue) < MAX_PIPELINED // 2:
                self._reading_paused = False
                if self._transport is not None:
                    self._transport.resume_reading()
            if isinstance(item, _Rejected):
                self.keep_alive = False
                self.send_error(item.error, item.rid)
                self._close_after_drain()
                return
            self._current = item
            self.keep_alive = item.keep_alive
            self.http11 = item.http11
            self._rid_line = b"X-Request-Id: " + item.rid + b"\r\n"
            self.status = 0
            self._dispatching = True
            self._outcome = _PENDING
            try:
                self._gateway.dispatch(item, self)
            except errors.AuthbenchError as err:
                self._outcome = err
            except Exception:  # a bug: log it, answer a bare JSON 500
                log.exception("unhandled error on %s", item.method.decode("latin-1"))
                self._outcome = errors.AuthbenchError()
            finally:
                self._dispatching = False
            outcome = self._outcome
            if outcome is _PENDING:
                return  # request_done continues from here
            if not self._complete(item, cast(errors.AuthbenchError | None, outcome)):
                return
        self._busy = False

    def request_done(self, error: errors.AuthbenchError | None) -> None:
        """The current request has been answered (or has failed with `error`)."""
        if self._dispatching:
            self._outcome = error
            return
        item = self._current
        if item is not None and self._complete(item, error):
            self._next()

    def _complete(self, item: ProxyRequest, error: errors.AuthbenchError | None) -> bool:
        """Finish one request; returns whether the connection goes on with the next."""
        self._current = None
        if error is not None:
            if isinstance(error, ResponseAborted) or self.status:
                # Part of an answer is out (or the client left): closing is all we can do.
                self._gateway.observe(item, self.status or 502)
                self._abort()
                return False
            self.send_error(error, item.rid)
        self._gateway.observe(item, self.status)
        if not self.keep_alive:
            self._close()
            return False
        return True

    def sweep(self, head_limit: int, body_limit: int, idle_limit: int) -> None:
        """Called once a second by the gateway: end slow heads and slow bodies (408), and
        idle connections.

        Counting sweeps keeps the hot path free of timers: a request costs one attribute
        store (`_active`). A head or a body that trickles in a byte at a time still ends:
        its count restarts only when a new request begins.
        """
        if self._lost or self._stopped:
            return
        if self._in_head:
            self._head_ticks += 1
            if self._head_ticks > head_limit:
                self._refuse(errors.RequestTimeout())
                return
        elif self._in_body:
            self._body_ticks += 1
            if self._body_ticks > body_limit:
                self._refuse(errors.RequestTimeout("the request body was not sent in time"))
                return
        if self._active or self._busy or self._queue:
            self._active = False
            self._idle_ticks = 0
            return
        self._idle_ticks += 1
        if self._idle_ticks > idle_limit:
            self._close()

    # --- refusing and closing -----------------------------------------------------------
    def _refuse(self, error: errors.AuthbenchError) -> None:
        """Stop parsing; answer `error` after the requests already queued, then close."""
        self._stopped = True
        self._queue.append(_Rejected(error, None))
        if not self._busy:
            self._next()

    def _close(self) -> None:
        self.uncork()  # what a corked upstream callback wrote goes out first
        if self._transport is not None:
            self._transport.close()

    def _close_after_drain(self) -> None:
        """Close once the client has stopped sending (bounded), so it reads our answer
        instead of a reset caused by unread data."""
        self.uncork()
        transport = self._transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        pending = self._length - self._body_size
        self._drain_left = pending if not self._in_head and pending > 0 else _DRAIN_LIMIT
        asyncio.get_running_loop().call_later(_DRAIN_TIMEOUT_S, self._abort)

    def _drain(self, size: int) -> None:
        self._drain_left -= size
        if self._drain_left <= 0:
            self._close()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


# Reason phrases from the standard library, one lookup per answer.
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")
