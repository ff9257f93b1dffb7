"""A bench run's cells grouped by configuration, repeats merged: what charts and findings read.

A *configuration* is a cell without its repeat number (mode, replicas, load, JWT
algorithm). Its repeats' Locust response-time buckets are added (a merged percentile is
what one long run would have said), their validation histograms too, and each summary
column is read as the spread over repeats. A *series* is one line on a chart: a mode, and
its JWT algorithm when the run measured several.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authbench import modes
from authbench.bench import latency
from authbench.bench.statistics import (
    Bucket,
    Spread,
    merge_buckets,
    merge_response_times,
    response_time_percentile,
    spread,
)
from authbench.bench.summary import READ_PREFIX, SummaryRow
from authbench.modes import Login

ALG_STYLES = ("-", "--", ":", "-.")


def cell_json(run_dir: Path, cell_id: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((run_dir / "cells" / cell_id / "cell.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def _read_histogram(run_dir: Path, cell_id: str) -> dict[int, int]:
    """The cell's Locust response-time buckets of GET /api/* reads."""
    try:
        data = json.loads((run_dir / "cells" / cell_id / "locust_histogram.json").read_text())
    except (OSError, ValueError):
        return {}
    return merge_response_times(
        {int(k): int(v) for k, v in entry["response_times"].items()}
        for name, entry in data.get("entries", {}).items()
        if name.startswith(READ_PREFIX)
    )


def _validation_buckets(cell: dict[str, Any]) -> list[Bucket]:
    ok = [
        [Bucket(float(le), float(count)) for le, count in buckets]
        for key, buckets in cell.get("validation_buckets", {}).items()
        if key.endswith("/ok")
    ]
    return merge_buckets(ok)


# --- aggregation over repeats ----------------------------------------------------------
@dataclass
class Series:
    """One line on a chart: a mode (and JWT algorithm when several were measured)."""

    mode: str
    alg: str
    label: str
    style: str
    variant: str = ""  # Config.variant: the gateway and placement, when not the defaults

    @property
    def color(self) -> str:
        return modes.color(self.mode)


@dataclass
class Config:
    """The repeats of one cell configuration, merged."""

    mode: str
    replicas: int
    load: str
    alg: str
    # Where the cells ran when not the default: the gateway (`nginx`) and the validation
    # placement (`at gateway`), e.g. "nginx, at gateway"; "" for ours, at the replicas.
    variant: str = ""
    rows: list[SummaryRow] = field(default_factory=list)
    reads: dict[int, int] = field(default_factory=dict)  # merged Locust buckets
    validation: list[Bucket] = field(default_factory=list)
    redis_commands: dict[str, int] = field(default_factory=dict)  # calls per command
    hdr_reads: Any = None  # the repeats' µs HdrHistograms of the reads, merged (None: none)

    def top_command(self) -> tuple[str, float]:
        """The Redis command sent most, and its share of all commands in the window."""
        total = sum(self.redis_commands.values())
        if not total:
            return ("", math.nan)
        name = max(self.redis_commands, key=lambda k: self.redis_commands[k])
        return (name.upper(), self.redis_commands[name] / total)

    def values(self, column: str) -> list[float]:
        """The repeats' values of a numeric summary column (those measured)."""
        return [v for v in (r.number(column) for r in self.rows) if not math.isnan(v)]

    def spread_of(self, key: str) -> Spread:
        return spread(self.values(key))

    def median(self, key: str) -> float:
        return self.spread_of(key).median

    def read_percentile(self, fraction: float) -> float:
        """From all repeats' buckets merged: what one long run would have reported."""
        return response_time_percentile(self.reads, fraction) if self.reads else math.nan

    def read_percentile_us(self, fraction: float) -> float:
        """The same from the µs HdrHistograms (NaN for runs that predate them)."""
        if self.hdr_reads is None or not self.hdr_reads.get_total_count():
            return math.nan
        return float(self.hdr_reads.get_value_at_percentile(100.0 * fraction))


def aggregate(run_dir: Path, rows: Sequence[SummaryRow]) -> list[Config]:
    """The measured rows grouped by configuration, repeats merged, in report order."""
    configs: dict[tuple[str, int, str, str, str], Config] = {}
    for row in rows:
        if row.error or row.requests is None:
            continue
        key = (row.mode, row.replicas, row.load, row.jwt_alg, variant(row))
        config = configs.setdefault(key, Config(*key))
        config.rows.append(row)
        config.reads = merge_response_times([config.reads, _read_histogram(run_dir, row.cell_id)])
        hdr = latency.merge_dir(run_dir / "cells" / row.cell_id / "hdr")["reads"]
        if hdr.get_total_count():
            config.hdr_reads = latency.merge([config.hdr_reads or latency.new_histogram(), hdr])
        cell = cell_json(run_dir, row.cell_id)
        config.validation = merge_buckets([config.validation, _validation_buckets(cell)])
        for name, calls in cell.get("redis_per_command", {}).items():
            config.redis_commands[name] = config.redis_commands.get(name, 0) + int(calls)
    return sorted(configs.values(), key=_config_order)


def variant(row: SummaryRow) -> str:
    """What sets a row's cell apart besides mode, replicas, load and algorithm: the gateway
    when not ours, the validation placement when not the replicas ("" for both defaults,
    and for runs before those columns)."""
    parts = []
    if row.gateway not in ("", "ours"):
        parts.append(row.gateway)
    if row.validate_at not in ("", "replica"):
        parts.append(f"at {row.validate_at}")
    return ", ".join(parts)


def _config_order(config: Config) -> tuple[int, str, str, int, str]:
    return (modes.rank(config.mode), config.variant, config.alg, config.replicas, config.load)


def signs(mode: str) -> bool:
    """Whether the mode's credential is a signed token (the JWT algorithm matters)."""
    record = modes.find(mode)
    return record is None or record.login is not Login.SESSION


def stateless_jwt(mode: str) -> bool:
    record = modes.find(mode)
    return record is not None and record.login is Login.JWT and not record.store_on_read


def series_of(configs: Iterable[Config]) -> list[Series]:
    configs = list(configs)
    algs = sorted({c.alg for c in configs if signs(c.mode)})
    seen: dict[tuple[str, str, str], Series] = {}
    for config in configs:
        alg = config.alg if signs(config.mode) else ""
        if (config.mode, alg, config.variant) in seen:
            continue
        label = config.mode if len(algs) <= 1 or not alg else f"{config.mode} ({alg})"
        if config.variant:
            label += f" [{config.variant}]"
        style = ALG_STYLES[algs.index(alg) % len(ALG_STYLES)] if alg in algs else "-"
        seen[(config.mode, alg, config.variant)] = Series(
            config.mode, alg, label, style, config.variant
        )
    return list(seen.values())


def in_series(config: Config, series: Series) -> bool:
    return (
        config.mode == series.mode
        and config.variant == series.variant
        and (not signs(series.mode) or config.alg == series.alg)
    )


def mode_validation(configs: Sequence[Config]) -> dict[str, list[Bucket]]:
    out: dict[str, list[Bucket]] = {}
    for series in series_of(configs):
        merged = merge_buckets(c.validation for c in configs if in_series(c, series))
        if merged and merged[-1].count > 0:
            out[series.label] = merged
    return out
