"""The soak's pass criteria, each a named check with its bound and what was measured.

After the warm-up (the first `warmup_s`, when caches fill and every key family reaches
its steady state), every series is fitted with a least-squares line and its slope must
stay within a bound:

| series | bound (default) |
| --- | --- |
| RSS of each process (its forked workers included) | `max_rss_mb_per_h` (20 MB/h) |
| open descriptors of each process | `max_fds_per_h` (30 per hour) |
| Redis `used_memory` | `max_redis_mb_per_h` (20 MB/h) |

and Redis keys must stay bounded by the live credentials:

- every key carries a TTL (no key that nothing would ever remove), among those probed;
- at each sample, keys <= `KEYS_PER_ACCOUNT` x accounts + `KEYS_PER_EVENT` x the auth
  events (logins, refreshes, logouts) the load sent within the longest key lifetime
  before it. An account holds at most its current credential (kept alive by use), its
  session index `us:`, its family index `uf:` and a throttle counter; an event writes at
  most three keys that can outlive it by up to that lifetime (login: a session or a
  refresh token; refresh: the successor, the spent token stays until its TTL; logout: a
  denylisted `jti`, a revoked-family marker). A key family that leaks outgrows it.

A short run has few points, so a slope there is mostly noise: the bounds are options,
and CI runs with wide ones (it checks that the machinery works, and that a bound that
cannot be met fails the command).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from authbench.soak.sampling import Sample

KEYS_PER_ACCOUNT = 4
KEYS_PER_EVENT = 3
HOUR_S = 3600.0


@dataclass(frozen=True)
class Bounds:
    max_rss_mb_per_h: float = 20.0
    max_fds_per_h: float = 30.0
    max_redis_mb_per_h: float = 20.0


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "rss slope auth"
    series: str  # what it looks at
    measured: float
    bound: float
    unit: str
    passed: bool

    def line(self) -> str:
        verdict = "ok  " if self.passed else "FAIL"
        return (
            f"{verdict} {self.name}: {self.measured:.3g} {self.unit} "
            f"(bound {self.bound:.3g} {self.unit})"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour; None with < 3 points."""
    if len(points) < 3 or len({t for t, _ in points}) < 2:
        return None
    fit = statistics.linear_regression([t for t, _ in points], [v for _, v in points])
    return fit.slope * HOUR_S


def evaluate(
    samples: Sequence[Sample],
    warmup_s: float,
    bounds: Bounds,
    accounts: int,
    key_lifetime_s: float,
    exclude: Sequence[str] = (),
) -> list[Check]:
    steady = [s for s in samples if s.t_s >= warmup_s]
    checks: list[Check] = []
    if len(steady) < 3:
        return [Check("samples after warm-up", "samples", len(steady), 3, "samples", False)]

    names = sorted({name for s in steady for name in s.processes} - set(exclude))
    for name in names:
        rss = [(s.t_s, s.processes[name].rss_mb) for s in steady if name in s.processes]
        fds = [(s.t_s, float(s.processes[name].fds)) for s in steady if name in s.processes]
        for label, points, bound, unit in (
            ("rss slope", rss, bounds.max_rss_mb_per_h, "MB/h"),
            ("fd slope", fds, bounds.max_fds_per_h, "fds/h"),
        ):
            slope = slope_per_hour(points)
            if slope is None:
                checks.append(Check(f"{label} {name}", name, 0, 3, "samples", False))
            else:
                checks.append(Check(f"{label} {name}", name, slope, bound, unit, slope <= bound))

    redis_points = [(s.t_s, s.redis.used_memory_mb) for s in steady if s.redis is not None]
    slope = slope_per_hour(redis_points)
    if slope is None:
        checks.append(Check("redis used_memory slope", "redis", 0, 3, "samples", False))
    else:
        checks.append(
            Check(
                "redis used_memory slope",
                "redis",
                slope,
                bounds.max_redis_mb_per_h,
                "MB/h",
                slope <= bounds.max_redis_mb_per_h,
            )
        )

    without_ttl = max((s.redis.keys_without_ttl for s in steady if s.redis), default=0)
    checks.append(Check("keys without a TTL", "redis", without_ttl, 0, "keys", without_ttl == 0))

    worst = 0.0  # largest keys / bound ratio over the steady samples
    worst_detail = (0, 1.0)
    for sample in steady:
        if sample.redis is None:
            continue
        events = events_within(samples, sample, key_lifetime_s)
        bound = KEYS_PER_ACCOUNT * accounts + KEYS_PER_EVENT * events
        ratio = sample.redis.keys_total / bound if bound else float("inf")
        if ratio > worst:
            worst, worst_detail = ratio, (sample.redis.keys_total, float(bound))
    keys, bound = worst_detail
    checks.append(
        Check("keys bounded by live credentials", "redis", keys, bound, "keys", keys <= bound)
    )
    return checks


def events_within(samples: Sequence[Sample], at: Sample, window_s: float) -> int:
    """Auth events the load sent in the `window_s` before `at` (whole samples: the count
    at the latest sample no later than the window's start is subtracted)."""
    before = [s.auth_events for s in samples if s.t_s <= at.t_s - window_s]
    start = before[-1] if before else 0
    return max(0, at.auth_events - start)


def failed(checks: Sequence[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]
