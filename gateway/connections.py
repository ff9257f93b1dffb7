"""Keep-alive connections to upstreams, and the exchange of one request over one of them.

An `UpstreamConnection` is an asyncio protocol with an httptools (llhttp) response parser.
It writes the request in one call and streams the answer straight into the client's
transport as it is parsed: the status line and filtered headers as soon as they are
complete, then each body piece as it arrives (re-chunked when the upstream sent chunks).
Nothing is buffered whole, and a slow client pauses reading from the upstream.

Idle connections wait in their upstream's `idle` list (last in, first out: the warmest
socket is reused first) and are dropped when they have been idle longer than
IDLE_TIMEOUT_S, well under the upstreams' own keep-alive timeout (aiohttp: 75 s), so a
request is almost never written into a socket the upstream is about to close.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import TypeAlias, cast

import httptools

from gateway.errors import (
    ConnectFailed,
    LocalExhaustion,
    UpstreamClosed,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimedOut,
)
from gateway.exchange import HOP_BY_HOP, ClientSide, ProxyRequest
from gateway.upstreams import Upstream

IDLE_TIMEOUT_S = 15.0
# Out of descriptors in this process (or the whole system): the upstream is not at fault.
_NO_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Hop-by-hop, and the framing and the request ID the gateway sets itself.
_RESPONSE_DROP = frozenset(h.encode() for h in HOP_BY_HOP | {"content-length", "x-request-id"})
_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}

UpstreamOf: TypeAlias = Upstream["UpstreamConnection"]


def idle_connection(upstream: UpstreamOf) -> UpstreamConnection | None:
    """A pooled keep-alive connection to `upstream` that is still fresh, if any."""
    idle = upstream.idle
    if not idle:
        return None
    now = asyncio.get_running_loop().time()
    while idle:
        connection = idle.pop()
        if now - connection.idle_since < IDLE_TIMEOUT_S and connection.usable:
            return connection
        connection.close()
    return None


async def connect(upstream: UpstreamOf, connect_timeout_s: float) -> UpstreamConnection:
    """A new connection to `upstream`; ConnectFailed (nothing was sent), or
    LocalExhaustion when this process has no descriptor for it."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout_s):
            _, protocol = await loop.create_connection(
                lambda: UpstreamConnection(upstream), upstream.host, upstream.port
            )
    except OSError as err:
        if err.errno in _NO_DESCRIPTORS:
            raise LocalExhaustion() from err
        raise ConnectFailed() from err
    except TimeoutError as err:
        raise ConnectFailed() from err
    return protocol


ExchangeDone = Callable[["UpstreamConnection", "UpstreamError | None"], None]


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an upstream; carries one exchange at a time."""

    __slots__ = (
        "_chunked_out",
        "_client",
        "_head_only",
        "_headers",
        "_interim",
        "_parser",
        "_paused",
        "_reason",
        "_started",
        "_timer",
        "_transport",
        "_until_close",
        "_waiter",
        "idle_since",
        "upstream",
    )

    def __init__(self, upstream: UpstreamOf) -> None:
        self.upstream = upstream
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: ExchangeDone | None = None
        self._client: ClientSide | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._started = False
        self._head_only = False
        self._interim = False
        self._chunked_out = False  # the client gets the body re-chunked
        self._until_close = False  # the upstream's body ends when it closes
        self._paused = False  # reading paused because the client's buffer is full
        self.idle_since = 0.0

    # --- pool side ----------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def release(self) -> None:
        """Back to the pool, unused."""
        self.idle_since = asyncio.get_running_loop().time()
        self.upstream.idle.append(self)

    def exchange(
        self,
        payload: bytes,
        client: ClientSide,
        request: ProxyRequest,
        timeout_s: float,
        done: ExchangeDone,
    ) -> None:
        """Send `payload`; `done(self, error)` is called once the answer was relayed."""
        transport = self._transport
        assert transport is not None
        self._waiter = done
        self._client = client
        self._head_only = request.method == b"HEAD"
        self._started = False
        client.upstream = self
        transport.write(payload)
        self._timer = asyncio.get_running_loop().call_later(timeout_s, self._timed_out)

    def pause_reading(self) -> None:
        if self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and self._paused:
            self._paused = False
            self._transport.resume_reading()

    def abort(self) -> None:
        """The client went away: drop this exchange and the connection with it."""
        self._fail(UpstreamClosed(self._started))

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Bytes on an idle connection: the upstream is confused; do not reuse it.
            self.close()
            return
        client = self._client
        if client is not None:
            client.cork()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamProtocolError(self._started))
        finally:
            if client is not None:
                client.uncork()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._waiter is None:
            idle = self.upstream.idle
            if self in idle:
                idle.remove(self)
            return
        if self._started and self._until_close:
            if self._chunked_out and self._client is not None:
                self._client.write(b"0\r\n\r\n")
            self._finish(reuse=False)  # the close is the end of this body
        else:
            self._fail(UpstreamClosed(self._started))

    # --- httptools callbacks ------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = []
        self._reason = b""

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._interim = True  # 1xx: the final answer follows on the same connection
            return
        client = self._client
        assert client is not None
        key = (status, self._reason)
        status_line = _STATUS_LINES.get(key)
        if status_line is None:
            status_line = b"HTTP/1.1 %d %s\r\n" % key
            if len(_STATUS_LINES) < 256:
                _STATUS_LINES[key] = status_line
        parts, length, chunked, named = _filtered(status_line, self._headers, _RESPONSE_DROP)
        if named:  # headers the upstream named in Connection are hop-by-hop too
            parts, length, chunked, _ = _filtered(
                status_line, self._headers, _RESPONSE_DROP | named
            )
        self._chunked_out = self._until_close = False
        if self._head_only or status in (204, 304):
            if length is not None and self._head_only:
                parts += (b"Content-Length: ", length, b"\r\n")
        elif length is not None and not chunked:
            parts += (b"Content-Length: ", length, b"\r\n")
        else:
            # Chunked, or delimited by the upstream closing: relay in chunks to an
            # HTTP/1.1 client; an HTTP/1.0 client learns the end when we close.
            self._until_close = not chunked
            if client.http11:
                parts.append(b"Transfer-Encoding: chunked\r\n")
                self._chunked_out = True
            else:
                client.keep_alive = False
        parts.append(client.response_tail())
        client.write(b"".join(parts))
        self._started = True
        client.status = status
        if self._head_only:
            # llhttp cannot be told this answer has no body: finish here and do not reuse.
            self._finish(reuse=False)

    def on_body(self, body: bytes) -> None:
        client = self._client
        if client is None or self._interim:
            return
        if self._chunked_out:
            client.write(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            client.write(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._client is None:
            return
        if self._chunked_out:
            self._client.write(b"0\r\n\r\n")
        self._finish(reuse=self._parser.should_keep_alive())

    # --- ending an exchange -------------------------------------------------------------
    def _detach(self) -> ExchangeDone | None:
        """End the exchange's bookkeeping: timer, client link; returns who waits on it."""
        waiter, client = self._waiter, self._client
        self._waiter = self._client = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if client is not None and client.upstream is self:
            client.upstream = None
        return waiter

    def _finish(self, reuse: bool) -> None:
        waiter = self._detach()
        if self._paused:  # a slow client paused us; the next one may not be
            self.resume_reading()
        if reuse and self.usable:
            idle = self.upstream.idle
            if len(idle) < self.upstream.max_idle:
                self.idle_since = asyncio.get_running_loop().time()
                idle.append(self)
            else:
                self.close()
        else:
            self.close()
        if waiter is not None:
            waiter(self, None)

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._detach()
        if self._transport is not None:
            self._transport.abort()
        if waiter is not None:
            waiter(self, error)

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(UpstreamTimedOut(self._started))


def _filtered(
    status_line: bytes, headers: list[tuple[bytes, bytes]], drop: frozenset[bytes]
) -> tuple[list[bytes], bytes | None, bool, frozenset[bytes]]:
    """The client's header lines, and the upstream's framing and Connection tokens."""
    parts = [status_line]
    length: bytes | None = None
    chunked = False
    named: frozenset[bytes] = frozenset()
    for name, value in headers:
        lowered = name.lower()
        if lowered in drop:
            if lowered == b"content-length":
                length = value
            elif lowered == b"transfer-encoding":
                chunked = True
            elif lowered == b"connection":
                named = frozenset(t.strip().lower() for t in value.split(b",")) - {
                    b"",
                    b"close",
                    b"keep-alive",
                }
            continue
        parts += (name, b": ", value, b"\r\n")
    return parts, length, chunked, named
