"""From recorded requests to what a fault cost: 1-second buckets and per-mode figures.

Times are wall-clock seconds (`time.time()`), which the Locust subprocess (request start
times) and the scenario (fault and recovery moments) share. Buckets are keyed by the
second a request *started*, relative to the fault; "first error" and "recovery" use the
moment a request *completed*, which is when a user learns of the failure.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BEFORE_S = 3.0  # the seconds before the fault that the "before" latencies describe


@dataclass(frozen=True, slots=True)
class Record:
    start: float
    mode: str
    name: str
    status: int  # 0: no HTTP answer (connection error or client timeout)
    latency_ms: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def end(self) -> float:
        return self.start + self.latency_ms / 1000


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """When the fault began, when it was undone (restart, SIGCONT, delay off issued) and
    when Redis was seen back (answering PING again, or the delay off).

    The outage is [fault_at, restore_at): Redis was certainly gone then. Between
    restore_at and back_at it may already answer (PING is polled), so a request started
    there may meet the new Redis, e.g. a 401 for a session it no longer has. Recovery is
    measured from back_at.
    """

    fault_at: float
    restore_at: float
    back_at: float

    @property
    def duration_s(self) -> float:
        return self.back_at - self.fault_at


def read_records(path: Path) -> list[Record]:
    records = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            records.append(
                Record(
                    float(row["start"]),
                    row["mode"],
                    row["name"],
                    int(row["status"]),
                    float(row["latency_ms"]),
                    row.get("error", ""),
                )
            )
    records.sort(key=lambda r: r.start)
    return records


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class Bucket:
    second: int  # relative to the fault: -1 is the second before it
    requests: int = 0
    ok: int = 0
    failures: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def add(self, record: Record) -> None:
        self.requests += 1
        self.latencies.append(record.latency_ms)
        if record.ok:
            self.ok += 1
        else:
            self.failures[record.status] += 1


def buckets(records: Iterable[Record], fault_at: float) -> dict[str, list[Bucket]]:
    """Per mode, one bucket per second from the first to the last second with requests."""
    by_mode: dict[str, dict[int, Bucket]] = {}
    for record in records:
        second = math.floor(record.start - fault_at)
        seconds = by_mode.setdefault(record.mode, {})
        if second not in seconds:
            seconds[second] = Bucket(second)
        seconds[second].add(record)
    result: dict[str, list[Bucket]] = {}
    for mode, per_second in by_mode.items():
        first, last = min(per_second), max(per_second)
        result[mode] = [per_second.get(s, Bucket(s)) for s in range(first, last + 1)]
    return result


def timeline_rows(
    scenario: str, per_mode: dict[str, list[Bucket]], statuses: Sequence[int]
) -> list[dict[str, Any]]:
    rows = []
    for mode, mode_buckets in per_mode.items():
        for b in mode_buckets:
            row: dict[str, Any] = {
                "scenario": scenario,
                "mode": mode,
                "second": b.second,
                "requests": b.requests,
                "ok": b.ok,
                "failed": b.requests - b.ok,
            }
            for status in statuses:
                row[f"status_{status}"] = b.failures.get(status, 0)
            row["p50_ms"] = _round(percentile(b.latencies, 0.5))
            row["p99_ms"] = _round(percentile(b.latencies, 0.99))
            row["max_ms"] = _round(max(b.latencies, default=math.nan))
            rows.append(row)
    return rows


def failure_statuses(records: Iterable[Record]) -> list[int]:
    return sorted({r.status for r in records if not r.ok})


def write_timeline(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("")
        return
    columns = list(rows[0])
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True, slots=True)
class ModeFigures:
    """What one fault cost one mode; None where the thing measured did not happen."""

    mode: str
    requests: int
    failures: int
    first_error_s: float | None  # fault -> first failed answer
    outage_requests: int  # started while Redis was down or slow (fault -> fault undone)
    outage_failures: int
    outage_error_rate: float | None
    outage_statuses: dict[str, int]  # failure status -> count, during the outage
    recovery_s: float | None  # Redis back -> last failed answer (0: none failed after)
    failures_after_back: int
    hung: int  # answered after the fault, slower than the hang threshold (or cut by timeout)
    max_latency_ms: float | None  # of the whole run, start-up logins included
    p50_before_ms: float | None
    p99_before_ms: float | None
    p50_outage_ms: float | None
    p99_outage_ms: float | None
    p50_after_ms: float | None
    p99_after_ms: float | None
    # Where the mode's group checks credentials (VALIDATE_AT, issue 15): `replica`, or
    # `gateway` (a compose stack started with VALIDATE_AT=gateway, say).
    validate_at: str = "replica"

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["outage_statuses"] = " ".join(f"{k}:{v}" for k, v in self.outage_statuses.items())
        return row


def mode_figures(
    mode: str, records: Sequence[Record], window: FaultWindow, hang_ms: float
) -> ModeFigures:
    """Figures of one mode's records (all of the run, in start order)."""
    # "Before" is the steady state just before the fault, not the start-up logins.
    before = [r for r in records if window.fault_at - BEFORE_S <= r.start < window.fault_at]
    during = [r for r in records if window.fault_at <= r.start < window.restore_at]
    after = [r for r in records if r.start >= window.back_at]
    failed_after_fault = [r for r in records if not r.ok and r.end >= window.fault_at]
    first_error = (
        min(r.end for r in failed_after_fault) - window.fault_at if failed_after_fault else None
    )
    outage_failed = [r for r in during if not r.ok]
    # Failures that a user saw after Redis was back: the tail of the outage and anything
    # the restart itself caused (e.g. 401 for a session that did not survive).
    late_failures = [r for r in records if not r.ok and r.end >= window.back_at]
    recovery = max(r.end for r in late_failures) - window.back_at if late_failures else 0.0
    statuses = Counter(str(r.status) for r in outage_failed)
    return ModeFigures(
        mode=mode,
        requests=len(records),
        failures=sum(1 for r in records if not r.ok),
        first_error_s=_round(first_error, 3),
        outage_requests=len(during),
        outage_failures=len(outage_failed),
        outage_error_rate=_round(len(outage_failed) / len(during), 4) if during else None,
        outage_statuses=dict(sorted(statuses.items())),
        recovery_s=_round(max(0.0, recovery), 3),
        failures_after_back=len(late_failures),
        # From the fault on: a slow login during start-up says nothing about the fault.
        hung=sum(1 for r in records if r.latency_ms > hang_ms and r.end >= window.fault_at),
        max_latency_ms=_round(max((r.latency_ms for r in records), default=math.nan)),
        p50_before_ms=_round(percentile([r.latency_ms for r in before], 0.5)),
        p99_before_ms=_round(percentile([r.latency_ms for r in before], 0.99)),
        p50_outage_ms=_round(percentile([r.latency_ms for r in during], 0.5)),
        p99_outage_ms=_round(percentile([r.latency_ms for r in during], 0.99)),
        p50_after_ms=_round(percentile([r.latency_ms for r in after], 0.5)),
        p99_after_ms=_round(percentile([r.latency_ms for r in after], 0.99)),
    )


def figures_by_mode(
    records: Sequence[Record], window: FaultWindow, hang_ms: float, modes: Sequence[str]
) -> dict[str, ModeFigures]:
    return {
        mode: mode_figures(mode, [r for r in records if r.mode == mode], window, hang_ms)
        for mode in modes
    }


def _round(value: float | None, digits: int = 2) -> Any:
    """Rounded for the report; None for nothing measured (JSON has no NaN)."""
    if value is None or math.isnan(value):
        return None
    return round(value, digits)
