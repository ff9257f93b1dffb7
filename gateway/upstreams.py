"""UpstreamPool: the replicas behind the gateway, their health and the balancing order.

- Round robin over the healthy upstreams.
- Passive ejection: a connect failure takes an upstream out of rotation at once (after
  EJECT_AFTER_FAILURES in a row); requests go to the next one.
- Active health checks: every HEALTH_INTERVAL_S each upstream's /healthz (liveness, not
  readiness: a replica whose Redis is down still serves JWTs) is asked; a healthy answer
  brings an ejected upstream back; HEALTH_FALL failed probes in a row eject it (one slow
  probe on a busy machine is not a dead upstream: HAProxy's `fall 3`, Envoy's
  unhealthy_threshold). A refused connection still ejects at once, passively.
- Discovery: `dns://NAME:PORT` resolves every address behind NAME (compose's service DNS
  answers with every replica) and re-resolves on each health round, so scaling up or down
  takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

from authcore import metrics

log = logging.getLogger("gateway.upstreams")

HEALTH_PATH = "/healthz"
HEALTH_FALL = 3  # failed active probes in a row that eject an upstream
MAX_IDLE_PER_UPSTREAM = 512


class Pooled(Protocol):
    """What the pool needs of a kept-alive connection: that it can be closed."""

    def close(self) -> None: ...


C = TypeVar("C", bound=Pooled)


@dataclass(slots=True, eq=False)
class Upstream(Generic[C]):
    """One upstream: its address, its health and its idle keep-alive connections (of the
    type `gateway.connections` makes; the pool only ever closes them)."""

    base_url: str
    healthy: bool = True
    failures: int = 0
    failed_probes: int = 0  # failed active health probes in a row
    inflight: int = 0  # requests of this worker at this upstream (connecting or sent)
    # Where to connect, and the Host line every request to it carries (precomputed).
    host: str = field(init=False)
    port: int = field(init=False)
    host_header: bytes = field(init=False)
    # Keep-alive connections waiting for the next request, at most `max_idle` of them.
    idle: list[C] = field(init=False, default_factory=list)
    max_idle: int = field(init=False, default=MAX_IDLE_PER_UPSTREAM)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstreams are http://HOST:PORT URLs, not {self.base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.host_header = parts.netloc.encode("ascii")

    def close_idle(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            connection.close()


class UpstreamPool(Generic[C]):
    """The upstreams of one route; `idle_budget` bounds their idle connections together,
    so the keep-alive pool never eats the descriptors the gateway keeps in reserve."""

    def __init__(
        self,
        spec: str,
        *,
        eject_after: int = 1,
        health_interval_s: float = 1.0,
        health_timeout_s: float = 0.5,
        idle_budget: int = MAX_IDLE_PER_UPSTREAM,
    ) -> None:
        self._spec = spec.strip()
        self._idle_budget = idle_budget
        self._eject_after = max(1, eject_after)
        self._interval = health_interval_s
        self._health_timeout = aiohttp.ClientTimeout(total=health_timeout_s)
        self._upstreams: list[Upstream[C]] = []
        self._healthy: list[Upstream[C]] = []
        self._next = 0
        if self._spec.startswith("dns://"):
            parts = urlsplit(self._spec)
            if not parts.hostname or not parts.port:
                raise ValueError(f"dns upstream needs a host and a port: {self._spec!r}")
            self._dns: tuple[str, int] | None = (parts.hostname, parts.port)
        else:
            self._dns = None
            urls = [u.strip().rstrip("/") for u in self._spec.split(",") if u.strip()]
            if not urls:
                raise ValueError("no upstream URLs given")
            self._set([Upstream(u) for u in urls])

    @property
    def upstreams(self) -> list[Upstream[C]]:
        return list(self._upstreams)

    @property
    def healthy(self) -> list[Upstream[C]]:
        return list(self._healthy)

    def _set(self, upstreams: list[Upstream[C]]) -> None:
        for gone in set(self._upstreams) - set(upstreams):
            gone.close_idle()
        share = max(4, min(MAX_IDLE_PER_UPSTREAM, self._idle_budget // max(1, len(upstreams))))
        for upstream in upstreams:
            upstream.max_idle = share
        self._upstreams = upstreams
        self._rebuild()

    def close(self) -> None:
        """Close every pooled keep-alive connection (gateway shutdown)."""
        for upstream in self._upstreams:
            upstream.close_idle()

    def _rebuild(self) -> None:
        self._healthy = [u for u in self._upstreams if u.healthy]
        for u in self._upstreams:
            metrics.UPSTREAM_HEALTHY.labels(u.base_url).set(1 if u.healthy else 0)

    def pick(
        self, exclude: set[Upstream[C]] | None = None, max_inflight: int = 1 << 30
    ) -> Upstream[C] | None:
        """The next healthy upstream in round-robin order, skipping `exclude` and those
        with `max_inflight` requests already in flight (a slow upstream fills up and is
        passed over, so it cannot take every connection)."""
        healthy = self._healthy
        n = len(healthy)
        for _ in range(n):
            self._next = (self._next + 1) % n
            candidate = healthy[self._next]
            if candidate.inflight < max_inflight and (not exclude or candidate not in exclude):
                return candidate
        return None

    def all_full(self, exclude: set[Upstream[C]] | None, max_inflight: int) -> bool:
        """Whether `pick` found nothing only because every candidate was at its cap."""
        candidates = [u for u in self._healthy if not exclude or u not in exclude]
        return bool(candidates) and all(u.inflight >= max_inflight for u in candidates)

    def report_failure(self, upstream: Upstream[C]) -> None:
        upstream.failures += 1
        if upstream.healthy and upstream.failures >= self._eject_after:
            upstream.healthy = False
            metrics.UPSTREAM_EJECTIONS.labels(upstream.base_url).inc()
            log.warning("ejected %s", upstream.base_url)
            self._rebuild()

    def report_success(self, upstream: Upstream[C]) -> None:
        upstream.failures = 0

    async def _discover(self) -> None:
        assert self._dns is not None
        host, port = self._dns
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as err:
            log.warning("cannot resolve %s: %s", host, err)
            return
        wanted = sorted({f"http://{_host(str(info[4][0]))}:{port}" for info in infos})
        known = {u.base_url: u for u in self._upstreams}
        if set(wanted) != set(known):
            log.info("upstreams behind %s: %s", host, ", ".join(wanted))
            # New addresses start healthy: compose only lists replicas that are running.
            self._set([known.get(url) or Upstream(url) for url in wanted])

    async def check_once(self, session: aiohttp.ClientSession) -> None:
        if self._dns is not None:
            await self._discover()
        results = await asyncio.gather(
            *(self._probe(session, u) for u in self._upstreams), return_exceptions=True
        )
        changed = False
        for upstream, ok in zip(self._upstreams, results, strict=True):
            if ok is True:
                upstream.failed_probes = 0
                if not upstream.healthy:
                    log.info("upstream %s is back", upstream.base_url)
                    upstream.failures = 0
                    upstream.healthy = changed = True
                continue
            upstream.failed_probes += 1
            if upstream.healthy and upstream.failed_probes >= HEALTH_FALL:
                upstream.healthy = False
                metrics.UPSTREAM_EJECTIONS.labels(upstream.base_url).inc()
                log.warning(
                    "ejected %s: %d health probes failed in a row",
                    upstream.base_url,
                    upstream.failed_probes,
                )
                changed = True
        if changed:
            self._rebuild()

    async def _probe(self, session: aiohttp.ClientSession, upstream: Upstream[C]) -> bool:
        try:
            async with session.get(
                upstream.base_url + HEALTH_PATH, timeout=self._health_timeout
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def run_health_checks(self, session: aiohttp.ClientSession) -> None:
        while True:
            await self.check_once(session)
            await asyncio.sleep(self._interval)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
