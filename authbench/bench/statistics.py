"""Numbers from histograms: percentiles, merging repeats, spread.

Two kinds of histogram meet here. Locust keeps client-side response times as exact
counts per rounded millisecond value (`{ms: count}`; 1 ms steps below 100 ms, 10 ms below
1 s, 100 ms above); merging two runs is adding counts, and a percentile is read the way
Locust reads it, so a merged figure equals what one long run would have said. Prometheus
histograms (the replicas' credential-validation time) keep cumulative counts per upper
bound `le`; a window is the difference of two scrapes, and a quantile is interpolated
linearly inside its bucket, as Prometheus' `histogram_quantile` does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

ResponseTimes = Mapping[int, int]  # rounded ms -> count (Locust's representation)


def locust_round(ms: float) -> int:
    """Round a response time the way Locust stores it (2 significant digits above 100)."""
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    if ms < 10000:
        return int(round(ms, -2))
    return int(round(ms, -3))


def merge_response_times(histograms: Iterable[ResponseTimes]) -> dict[int, int]:
    """Add Locust histograms (runs, repeats, processes) into one."""
    merged: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            merged[int(value)] = merged.get(int(value), 0) + int(count)
    return merged


def response_time_percentile(histogram: ResponseTimes, fraction: float) -> float:
    """The `fraction` percentile (0..1) of a Locust histogram, by Locust's own rule.

    Locust walks the buckets from the slowest down and answers the first value at which
    no more than `fraction` of the requests remain below; we do the same so that a figure
    here matches Locust's CSV for the same data.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, not {fraction}")
    total = sum(histogram.values())
    if total == 0:
        return math.nan
    below_allowed = int(total * fraction)
    processed = 0
    for value in sorted(histogram, reverse=True):
        processed += histogram[value]
        if total - processed <= below_allowed:
            return float(value)
    return float(min(histogram))


@dataclass(frozen=True)
class Bucket:
    le: float  # upper bound, seconds (math.inf for +Inf)
    count: float  # cumulative count of observations <= le


def bucket_delta(after: Sequence[Bucket], before: Sequence[Bucket]) -> list[Bucket]:
    """What a cumulative histogram gained between two scrapes (a process restart resets)."""
    earlier = {b.le: b.count for b in before}
    delta = [Bucket(b.le, b.count - earlier.get(b.le, 0.0)) for b in after]
    if any(b.count < 0 for b in delta):
        return list(after)  # the counter was reset in between: the later scrape is the window
    return delta


def merge_buckets(histograms: Iterable[Sequence[Bucket]]) -> list[Bucket]:
    """Add cumulative histograms with the same bucket bounds (replicas, repeats)."""
    totals: dict[float, float] = {}
    for histogram in histograms:
        for bucket in histogram:
            totals[bucket.le] = totals.get(bucket.le, 0.0) + bucket.count
    return [Bucket(le, totals[le]) for le in sorted(totals)]


def bucket_quantile(buckets: Sequence[Bucket], fraction: float) -> float:
    """Quantile of a cumulative histogram, interpolated inside the bucket (as Prometheus)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within 0..1, not {fraction}")
    ordered = sorted(buckets, key=lambda b: b.le)
    if not ordered or ordered[-1].count <= 0:
        return math.nan
    rank = fraction * ordered[-1].count
    lower_bound, lower_count = 0.0, 0.0
    for bucket in ordered:
        if bucket.count >= rank:
            if math.isinf(bucket.le):
                return lower_bound  # in the overflow bucket: the last finite bound
            width = bucket.count - lower_count
            if width <= 0:
                return bucket.le
            return lower_bound + (bucket.le - lower_bound) * (rank - lower_count) / width
        lower_bound, lower_count = bucket.le, bucket.count
    return lower_bound


def bucket_densities(buckets: Sequence[Bucket]) -> list[tuple[float, float, float]]:
    """(lower, upper, share of observations) per finite bucket: the distribution to draw."""
    ordered = sorted(buckets, key=lambda b: b.le)
    total = ordered[-1].count if ordered else 0.0
    out: list[tuple[float, float, float]] = []
    lower, previous = 0.0, 0.0
    for bucket in ordered:
        if math.isinf(bucket.le):
            break
        share = (bucket.count - previous) / total if total > 0 else 0.0
        out.append((lower, bucket.le, share))
        lower, previous = bucket.le, bucket.count
    return out


@dataclass(frozen=True)
class Spread:
    """How much repeats of the same cell agree."""

    n: int
    mean: float
    median: float
    stdev: float  # sample standard deviation; 0 for a single repeat
    low: float
    high: float

    @property
    def relative(self) -> float:
        """Coefficient of variation (stdev / mean); nan when the mean is 0."""
        return self.stdev / self.mean if self.mean else math.nan


def spread(values: Sequence[float]) -> Spread:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return Spread(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    stdev = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return Spread(
        n=len(finite),
        mean=statistics.fmean(finite),
        median=statistics.median(finite),
        stdev=stdev,
        low=min(finite),
        high=max(finite),
    )
