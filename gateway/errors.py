"""The gateway's errors: what it answers on purpose, and how an upstream exchange fails.

The first group are `authcore.errors` answers (JSON, a status, a machine code) that only
the gateway gives. The second group never reach a client as such: they tell the proxy
how an exchange with an upstream ended, so it can decide between retrying, ejecting the
upstream and which answer to give.
"""

from __future__ import annotations

from authcore.errors import AuthbenchError, BadRequest, DependencyUnavailable, Throttled


# --- answers --------------------------------------------------------------------------
class DotSegments(BadRequest):
    default_detail = "'.' and '..' path segments are not accepted"


class UnsupportedVersion(BadRequest):
    default_detail = "only HTTP/1.0 and HTTP/1.1 requests are served"


class MissingHost(BadRequest):
    default_detail = "an HTTP/1.1 request needs exactly one Host header"


class UpstreamFailure(AuthbenchError):
    status, code, default_detail = 502, "bad_gateway", "the upstream failed while answering"


class ResponseAborted(AuthbenchError):
    """The upstream failed after part of its answer went to the client (or the client
    left): the only honest thing left is to close the client's connection."""


class TooManyConnections(DependencyUnavailable):
    code, default_detail = "too_many_connections", "the gateway is at its connection limit"


class TooManyClientConnections(Throttled):
    code = "too_many_connections"
    default_detail = "too many open connections from this address"

    def __init__(self) -> None:
        super().__init__(1)


class NoDescriptors(DependencyUnavailable):
    """The gateway's own process is out of file descriptors: local back-pressure, which
    says nothing about the upstream's health (it is never ejected for it)."""

    code, default_detail = "gateway_overloaded", "the gateway cannot open a connection now"


# --- how an upstream exchange ended ---------------------------------------------------
class UpstreamError(Exception):
    """The exchange failed; `started` says whether the client already got part of it."""

    def __init__(self, started: bool = False) -> None:
        super().__init__()
        self.started = started


class ConnectFailed(UpstreamError):
    """No connection could be made: nothing was sent, any request may go elsewhere."""


class LocalExhaustion(UpstreamError):
    """No connection could be made because this process has no descriptor to spare."""


class UpstreamClosed(UpstreamError):
    """The upstream closed the connection before its answer was complete."""


class UpstreamTimedOut(UpstreamError):
    """No complete answer within UPSTREAM_TIMEOUT_S."""


class UpstreamProtocolError(UpstreamError):
    """The upstream's answer was not valid HTTP/1.1."""
