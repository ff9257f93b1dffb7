"""What the two sides of the proxy know of each other: a request, and two small protocols.

`gateway.server` (the client side) parses a `ProxyRequest` and hands it on;
`gateway.proxy` and `gateway.connections` (the upstream side) answer it through the
`ClientSide` protocol, and the client side steers the exchange that feeds it through
`UpstreamRelay`. Neither side imports the other: both depend on this module only.
"""

from __future__ import annotations

import time
from typing import Protocol

from authcore.errors import AuthbenchError

# Hop-by-hop headers (RFC 9110 section 7.6.1), lower-case: never forwarded either way.
HOP_BY_HOP = frozenset(
    """
    connection keep-alive proxy-authenticate proxy-authorization te trailer
    transfer-encoding upgrade proxy-connection
    """.split()
)


class ProxyRequest:
    """What the gateway keeps of a request: raw method, target and headers, the body."""

    __slots__ = (
        "admitted",
        "body",
        "connection",
        "headers",
        "http11",
        "keep_alive",
        "method",
        "rid",
        "started",
        "target",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        connection: bytes | None,
        rid: bytes,
        keep_alive: bool,
        http11: bool,
    ) -> None:
        self.method = method
        self.http11 = http11
        self.target = target
        self.headers = headers
        self.body = body
        self.connection = connection
        self.rid = rid
        self.keep_alive = keep_alive
        self.started = time.perf_counter()
        self.admitted = False  # counted against the worker's in-flight limit


class UpstreamRelay(Protocol):
    """The upstream exchange currently feeding a client: paused while the client does not
    read, dropped when the client goes away."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self) -> None: ...


class ClientSide(Protocol):
    """A client connection as the upstream side sees it: where an answer is written."""

    peer: bytes  # the address X-Forwarded-For carries
    http11: bool  # the request being answered is HTTP/1.1 (chunked answers allowed)
    keep_alive: bool  # cleared when the answer can only end by closing
    status: int  # the status sent, once a head is out
    upstream: UpstreamRelay | None

    @property
    def gone(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def cork(self) -> None: ...

    def uncork(self) -> None: ...

    def response_tail(self) -> bytes: ...

    def request_done(self, error: AuthbenchError | None) -> None: ...
