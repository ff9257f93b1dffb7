"""How many client connections one gateway process holds: per address, in total, and the
descriptors it keeps back for its own work.

Every client connection costs a file descriptor, and a proxied request costs a second
one (its upstream connection). A process that runs out of descriptors can no longer
connect to its upstreams or run its health checks, so it would eject healthy upstreams
and fail everyone (issue 11: 20,000 trickling sockets did exactly that). So:

- `client_budget()` raises the soft open-files limit to the hard one and derives the
  total cap from it: half of what is left after GATEWAY_FD_RESERVE, because each admitted
  client may hold one upstream connection too. The reserve covers the listening sockets,
  the health checks, the idle keep-alive pool (bounded to a quarter of the reserve per
  route, `UpstreamPool(idle_budget=...)`), log files, and the brief life of refused
  connections.
- `OpenConnections` admits a connection only under both caps; a refused one gets a JSON
  answer (503 when the gateway is full, 429 when its address holds too many) and is
  closed at once, never read.
"""

from __future__ import annotations

import resource
from typing import Generic, TypeVar

from prometheus_client import Counter

from authcore.errors import AuthbenchError
from gateway.errors import TooManyClientConnections, TooManyConnections

CONNECTIONS_REFUSED = Counter(
    "authbench_gateway_connections_refused_total",
    "Client connections refused at a connection cap, by cap (total or per_address).",
    ["cap"],
)

T = TypeVar("T")


def client_budget(reserve: int) -> int:
    """The most client connections this process can hold with `reserve` descriptors kept
    back; raises the soft RLIMIT_NOFILE to the hard limit first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY:
        soft = wanted
    elif soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # keep the soft limit we have, and size the caps to it
    kept = min(reserve, soft // 2)  # a tiny limit still leaves clients some room
    return max(1, (soft - kept) // 2)


class OpenConnections(Generic[T]):
    """The open client connections of one listener, under two caps."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.open: set[T] = set()
        self._per_address: dict[bytes, int] = {}
        self._refused_total = CONNECTIONS_REFUSED.labels("total")
        self._refused_address = CONNECTIONS_REFUSED.labels("per_address")

    def admit(self, connection: T, address: bytes) -> AuthbenchError | None:
        """Count `connection` in, or the error to answer it with before closing it."""
        if len(self.open) >= self.max_total:
            self._refused_total.inc()
            return TooManyConnections()
        held = self._per_address.get(address, 0)
        if held >= self.max_per_address:
            self._refused_address.inc()
            return TooManyClientConnections()
        self._per_address[address] = held + 1
        self.open.add(connection)
        return None

    def release(self, connection: T, address: bytes) -> None:
        """`connection` has closed (a no-op for one that was never admitted)."""
        if connection not in self.open:
            return
        self.open.discard(connection)
        held = self._per_address[address] - 1
        if held:
            self._per_address[address] = held
        else:
            del self._per_address[address]

    def held_by(self, address: bytes) -> int:
        return self._per_address.get(address, 0)
