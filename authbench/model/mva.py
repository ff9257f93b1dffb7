"""Exact Mean Value Analysis (single class, closed) and asymptotic bounds.

A closed network: `population` customers cycle through the stations and then think for
`think_s` seconds (the client's wait between an answer and its next request). Each station
is one of

- a queue (`servers=1`): one server, first come first served or processor sharing;
- a multi-server queue (`servers=m`): a load-dependent station whose rate is
  min(j, m) / demand with j customers present, solved exactly with the marginal queue-length
  probabilities (Reiser and Lavenberg 1980; Lazowska et al., "Quantitative System
  Performance", 1984, ch. 20);
- a delay (`delay=True`): pure latency with no queue, such as a network round trip.

`copies` stands for identical stations that each get 1/copies of the visits (replicas behind
a balancer): they are solved as one and their queue lengths multiplied back. A maintained
library (line-solver) does this and far more, but it is a 37 MB wheel pulling pandas, scipy
and networkx; the recursion below is short, and tests pin it to textbook answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Station:
    """One service centre: `demand_s` is the total service demand of one request there."""

    name: str
    demand_s: float
    servers: int = 1
    delay: bool = False
    copies: int = 1

    def __post_init__(self) -> None:
        if self.demand_s < 0 or not math.isfinite(self.demand_s):
            raise ValueError(f"station {self.name}: demand must be finite and >= 0")
        if self.servers < 1 or self.copies < 1:
            raise ValueError(f"station {self.name}: servers and copies must be >= 1")


@dataclass(frozen=True)
class MvaResult:
    """The solution at the full population."""

    population: int
    throughput: float  # requests per second
    response_s: float  # mean time from sending a request to its answer (think time excluded)
    residence_s: dict[str, float]  # per station (all its copies together)
    queue: dict[str, float]  # mean customers at one copy of the station
    utilisation: dict[str, float]  # per server of one copy (1.0 = saturated)


def solve_closed(stations: list[Station], population: int, think_s: float = 0.0) -> MvaResult:
    """Exact MVA at `population` customers; raises ValueError on a population below 1."""
    if population < 1:
        raise ValueError("population must be >= 1")
    if think_s < 0:
        raise ValueError("think time must be >= 0")
    queue = {s.name: 0.0 for s in stations}
    # p[name][j]: probability of j customers at one copy of a multi-server station.
    marginal = {s.name: [1.0] for s in stations if s.servers > 1 and not s.delay}
    throughput = 0.0
    residence: dict[str, float] = {}
    for n in range(1, population + 1):
        for s in stations:
            each = s.demand_s / s.copies
            if s.delay:
                r = each
            elif s.servers == 1:
                r = each * (1.0 + queue[s.name])
            else:
                p = marginal[s.name]
                r = sum(j * each / min(j, s.servers) * p[j - 1] for j in range(1, n + 1))
            residence[s.name] = r * s.copies
        throughput = n / (think_s + sum(residence.values()))
        for s in stations:
            queue[s.name] = throughput * residence[s.name] / s.copies
            if s.name in marginal:
                prev = marginal[s.name]
                each = s.demand_s / s.copies
                new = [0.0] * (n + 1)
                for j in range(1, n + 1):
                    new[j] = each / min(j, s.servers) * throughput * prev[j - 1]
                new[0] = max(0.0, 1.0 - sum(new[1:]))
                marginal[s.name] = new
    utilisation = {
        s.name: 0.0 if s.delay else throughput * s.demand_s / s.copies / s.servers for s in stations
    }
    return MvaResult(
        population=population,
        throughput=throughput,
        response_s=sum(residence.values()),
        residence_s=dict(residence),
        queue=dict(queue),
        utilisation=utilisation,
    )


@dataclass(frozen=True)
class Bounds:
    """Asymptotic bounds (Lazowska et al. ch. 5): what no load can beat."""

    max_throughput: float  # 1 / D_max: the bottleneck's capacity (open or closed)
    bottleneck: str
    total_demand_s: float  # D: the least possible response time
    knee_population: float  # N* = (D + Z) / D_max, where the two closed bounds cross

    def closed_throughput(self, population: int, think_s: float = 0.0) -> float:
        """X(N) <= min(N / (D + Z), 1 / D_max)."""
        return min(population / (self.total_demand_s + think_s), self.max_throughput)


def bounds(stations: list[Station], think_s: float = 0.0) -> Bounds:
    """Bottleneck bounds; a delay station adds latency but never limits throughput."""
    per_server = {
        s.name: s.demand_s / s.copies / s.servers for s in stations if not s.delay and s.demand_s
    }
    if not per_server:
        raise ValueError("bounds need at least one queueing station with a demand")
    bottleneck = max(per_server, key=lambda k: per_server[k])
    d_max = per_server[bottleneck]
    # A request visits one copy of a replicated station, so it meets its whole demand once.
    total = sum(s.demand_s for s in stations)
    return Bounds(
        max_throughput=1.0 / d_max,
        bottleneck=bottleneck,
        total_demand_s=total,
        knee_population=(total + think_s) / d_max,
    )
