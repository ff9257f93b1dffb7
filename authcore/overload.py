"""Overload: past capacity, a fast 503 with Retry-After instead of a growing queue.

A server that admits every request past its capacity only queues it: each admitted request
then waits for all the ones before it, latency grows without bound and clients time out
anyway, after having cost work. So both the gateway (per worker process, and per upstream)
and every replica bound the requests they hold in flight, and answer the rest at once
with `Overloaded`: 503, `Retry-After`, the contract's JSON. Admitted requests keep the
latency of a system at its capacity.

The replica's bound is `InFlightLimit.middleware`: it counts /api requests only, so health
probes and /metrics always answer (a shedding replica is busy, not dead: the gateway must
not eject it for that).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Counter

from authcore.errors import DependencyUnavailable

REQUESTS_SHED = Counter(
    "authbench_requests_shed_total",
    "Requests answered 503 at once because an in-flight limit was reached, by limit.",
    ["limit"],
)


class Overloaded(DependencyUnavailable):
    code, default_detail = "overloaded", "over capacity; retry later"

    def __init__(self, retry_after_s: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class InFlightLimit:
    """A count of requests in flight under a fixed bound, in one event loop (no lock)."""

    def __init__(self, limit: int, retry_after_s: int, name: str) -> None:
        if limit < 1:
            raise ValueError(f"in-flight limit must be >= 1, got {limit}")
        self.limit = limit
        self.inflight = 0
        self._retry_after_s = retry_after_s
        self._shed = REQUESTS_SHED.labels(name)

    def enter(self) -> None:
        """Count one more request in, or raise Overloaded (503) when at the limit."""
        if self.inflight >= self.limit:
            self._shed.inc()
            raise Overloaded(self._retry_after_s)
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1

    def middleware(self, prefix: str = "/api/") -> Middleware:
        """An aiohttp middleware that bounds the requests under `prefix`."""

        @web.middleware
        async def bound_inflight(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not request.path.startswith(prefix):
                return await handler(request)
            self.enter()
            try:
                return await handler(request)
            finally:
                self.inflight -= 1

        return bound_inflight
