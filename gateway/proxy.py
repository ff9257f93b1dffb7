"""ReverseProxy: forwards one request to an upstream pool, with header hygiene.

- Hop-by-hop headers (RFC 9110 section 7.6.1, and any named in Connection) are dropped
  both ways.
- Headers a client could use to claim an identity or a trusted origin are dropped on the
  way in; the gateway sets X-Forwarded-For/-Proto itself from what it saw.
- X-Request-Id: a client's value is kept only if it looks like an ID (no CRLF, no
  injection, bounded length); otherwise the gateway generates one. Either way it is
  returned to the client.
- A connect failure ejects the upstream and the request goes to the next one (nothing was
  sent, so any method may be retried); a failure after sending is retried only for
  idempotent methods, once, and only while nothing of the answer has reached the client;
  otherwise the client gets a JSON 502/503/504.

Headers are handled as the raw bytes the parser saw and the bytes that go on the wire:
the per-request work is a filter over a list of (name, value) pairs and one join, with
every constant below precomputed at import.
"""

from __future__ import annotations

import asyncio
import os
import re
from itertools import count

from authcore.assertion import ASSERTION_HEADER
from authcore.errors import UpstreamTimeout, UpstreamUnavailable
from authcore.overload import REQUESTS_SHED, Overloaded
from gateway.connections import (
    UpstreamConnection,
    UpstreamOf,
    connect,
    idle_connection,
)
from gateway.errors import (
    ConnectFailed,
    LocalExhaustion,
    NoDescriptors,
    ResponseAborted,
    UpstreamClosed,
    UpstreamError,
    UpstreamFailure,
    UpstreamTimedOut,
)
from gateway.exchange import HOP_BY_HOP, ClientSide, ProxyRequest
from gateway.upstreams import UpstreamPool

Pool = UpstreamPool[UpstreamConnection]

# Never accepted from a client: identity or trust is only ever asserted by the gateway.
SPOOFABLE = frozenset(
    """
    x-forwarded-for x-forwarded-host x-forwarded-proto x-forwarded-port forwarded
    x-real-ip x-client-ip x-original-forwarded-for true-client-ip
    x-user x-user-id x-authenticated-user x-forwarded-user x-remote-user remote-user
    x-auth-user x-replica x-request-id host content-length
    """.split()
) | {ASSERTION_HEADER.lower()}  # only the gateway mints identity assertions
# The gateway reads the whole (bounded) request body and answers `Expect: 100-continue`
# itself, so the upstream gets a complete request and never an Expect.
_REQUEST_DROP = frozenset(h.encode() for h in HOP_BY_HOP | SPOOFABLE | {"expect"})
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{8,64}")
_REQUEST_ID_BYTES = re.compile(REQUEST_ID_PATTERN.pattern.encode())
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_IDEMPOTENT_BYTES = frozenset(m.encode() for m in IDEMPOTENT)
# Generated IDs: a random per-process prefix and a counter. Unique across workers and
# restarts (96 random bits), and two orders of magnitude cheaper than uuid4().hex.
_ID_PREFIX = os.urandom(12).hex().encode()
_ids = count(1)


def request_id(incoming: bytes | None) -> bytes:
    """The client's X-Request-Id when it looks like an ID, otherwise a fresh one."""
    if incoming and _REQUEST_ID_BYTES.fullmatch(incoming):
        return incoming
    return b"%s%012x" % (_ID_PREFIX, next(_ids))


def upstream_headers(
    headers: list[tuple[bytes, bytes]], connection: bytes | None, peer: bytes, rid: bytes
) -> bytes:
    """The header block (after Host) the upstream gets: the client's headers minus
    hop-by-hop, spoofable and Connection-named ones, plus what the gateway asserts."""
    drop = _REQUEST_DROP
    if connection:
        tokens = {t.strip().lower() for t in connection.split(b",")}
        drop = drop | tokens
    parts = [b""]
    for name, value in headers:
        if name.lower() not in drop:
            parts.append(name + b": " + value)
    parts.append(b"X-Forwarded-For: " + peer)
    parts.append(b"X-Forwarded-Proto: http")
    parts.append(b"X-Request-Id: " + rid)
    return b"\r\n".join(parts)


class ReverseProxy:
    """Sends a parsed request to one upstream of a pool and streams its answer back."""

    def __init__(
        self, timeout_s: float, max_per_upstream: int = 1 << 30, retry_after_s: int = 1
    ) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(1.0, timeout_s)
        self.max_per_upstream = max_per_upstream
        self.retry_after_s = retry_after_s
        self.shed = REQUESTS_SHED.labels("upstream")

    def forward(
        self, request: ProxyRequest, pool: Pool, client: ClientSide, extra: bytes = b""
    ) -> None:
        """Start forwarding (`extra`: header lines the gateway adds, each after a CRLF);
        `client.request_done(error)` is called when it has ended."""
        head = upstream_headers(request.headers, request.connection, client.peer, request.rid)
        if extra:
            head += extra
        body = request.body
        if body is not None or request.method in (b"POST", b"PUT", b"PATCH"):
            head += b"\r\nContent-Length: %d" % (len(body) if body else 0)
        Forwarding(self, request, pool, client, head + b"\r\n\r\n" + (body or b"")).attempt()


class Forwarding:
    """One request's way through the pool: pick, send, and retry when that is safe.

    Callbacks rather than a coroutine: with a pooled connection at hand (the common case)
    a request is written to its upstream straight from the parser callback that completed
    it, and its answer relayed from the upstream's `data_received`, with no Task, Future
    or event-loop round trip in between. Only a new connection takes a coroutine.
    """

    __slots__ = ("_client", "_pool", "_proxy", "_request", "_retried", "_tail", "_tried")

    def __init__(
        self,
        proxy: ReverseProxy,
        request: ProxyRequest,
        pool: Pool,
        client: ClientSide,
        tail: bytes,
    ) -> None:
        self._proxy = proxy
        self._request = request
        self._pool = pool
        self._client = client
        self._tail = tail
        self._tried: set[UpstreamOf] | None = None
        self._retried = False

    def attempt(self) -> None:
        proxy = self._proxy
        upstream = self._pool.pick(self._tried, proxy.max_per_upstream)
        if upstream is None:
            if self._pool.all_full(self._tried, proxy.max_per_upstream):
                proxy.shed.inc()
                self._client.request_done(Overloaded(proxy.retry_after_s))
            else:
                self._client.request_done(UpstreamUnavailable())
            return
        upstream.inflight += 1  # until _done, or a connect that fails
        if self._tried is None:
            self._tried = {upstream}
        else:
            self._tried.add(upstream)
        connection = idle_connection(upstream)
        if connection is None:
            asyncio.get_running_loop().create_task(self._connect(upstream))
        else:
            self._send(upstream, connection)

    async def _connect(self, upstream: UpstreamOf) -> None:
        try:
            connection = await connect(upstream, self._proxy.connect_timeout_s)
        except LocalExhaustion:
            # This process is out of descriptors: the upstream is fine; do not eject it.
            upstream.inflight -= 1
            self._client.request_done(NoDescriptors())
            return
        except ConnectFailed:
            upstream.inflight -= 1
            self._pool.report_failure(upstream)  # nothing was sent: try the next one
            self.attempt()
            return
        if self._client.gone:
            upstream.inflight -= 1
            connection.release()
            self._client.request_done(ResponseAborted())
            return
        self._send(upstream, connection)

    def _send(self, upstream: UpstreamOf, connection: UpstreamConnection) -> None:
        request = self._request
        head = request.method + b" " + request.target + b" HTTP/1.1\r\nHost: "
        connection.exchange(
            head + upstream.host_header + self._tail,
            self._client,
            request,
            self._proxy.timeout_s,
            self._done,
        )

    def _done(self, connection: UpstreamConnection, error: UpstreamError | None) -> None:
        upstream = connection.upstream
        upstream.inflight -= 1
        if error is None:
            if upstream.failures:
                self._pool.report_success(upstream)
            self._client.request_done(None)
            return
        if error.started:  # part of the answer is out: only closing is honest
            self._client.request_done(ResponseAborted())
        elif isinstance(error, UpstreamClosed):
            # Sent, then the upstream vanished (a replica killed mid-request, or a
            # pooled keep-alive connection it had closed).
            if self._client.gone:
                self._client.request_done(ResponseAborted())
                return
            self._pool.report_failure(upstream)
            if self._request.method not in _IDEMPOTENT_BYTES or self._retried:
                self._client.request_done(UpstreamFailure())
            else:
                self._retried = True
                self.attempt()
        elif isinstance(error, UpstreamTimedOut):
            self._client.request_done(UpstreamTimeout())
        else:
            self._client.request_done(UpstreamFailure())
