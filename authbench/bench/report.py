"""Charts and report.html of a bench results directory, drawn from its files alone.

`render(run_dir)` reads `manifest.json`, `summary.csv` and each cell's files and writes
PNG charts plus one self-contained `report.html` (charts embedded, each also linked as its
own file). It never measures anything: `authbench report DIR` redraws a finished run.
Every sentence under "Findings" is computed from the data; nothing is typed in by hand.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, no GUI toolkit imported

import matplotlib.pyplot as plt

from authbench import modes
from authbench.bench.matrix import MODE_ORDER
from authbench.bench.statistics import (
    Bucket,
    Spread,
    bucket_densities,
    bucket_quantile,
    merge_buckets,
    merge_response_times,
    response_time_percentile,
    spread,
)
from authbench.modes import Login

ALG_STYLES = ("-", "--", ":", "-.")
CHARTS = (
    ("latency.png", "Read latency (p50, p95, p99) vs replicas"),
    ("throughput.png", "Read throughput vs replicas"),
    ("redis.png", "The cost of central storage: Redis ops/s and CPU vs throughput"),
    ("validation.png", "Server-side credential validation time, per mode"),
    ("cpu.png", "Where the CPU went, per cell"),
    ("errors.png", "Error rate per cell"),
)
NUMERIC = {
    "replicas", "users", "requests", "failures", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms",
    "redis_ops_s", "redis_cpu_pct", "cpu_redis_pct", "cpu_auth_pct", "cpu_gateway_pct",
    "cpu_replicas_pct", "cpu_loadgen_pct", "repeat", "offered_rps", "fail_pct", "read_rps",
    "read_p50_ms", "read_p95_ms", "read_p99_ms", "redis_cmds_per_req", "validations",
    "validation_mean_us", "validation_p50_us", "validation_p99_us", "capture_s",
}  # fmt: skip


# --- loading ---------------------------------------------------------------------------
def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def load_rows(run_dir: Path) -> list[dict[str, Any]]:
    with (run_dir / "summary.csv").open(newline="") as f:
        rows: list[dict[str, Any]] = []
        for raw in csv.DictReader(f):
            row: dict[str, Any] = dict(raw)
            for key in NUMERIC & raw.keys():
                row[key] = _number(raw[key])
            rows.append(row)
    return rows


def _cell_json(run_dir: Path, cell_id: str) -> dict[str, Any]:
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
        if name.startswith("GET /api/")
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
    rows: list[dict[str, Any]] = field(default_factory=list)
    reads: dict[int, int] = field(default_factory=dict)  # merged Locust buckets
    validation: list[Bucket] = field(default_factory=list)
    redis_commands: dict[str, int] = field(default_factory=dict)  # calls per command

    def top_command(self) -> tuple[str, float]:
        """The Redis command sent most, and its share of all commands in the window."""
        total = sum(self.redis_commands.values())
        if not total:
            return ("", math.nan)
        name = max(self.redis_commands, key=lambda k: self.redis_commands[k])
        return (name.upper(), self.redis_commands[name] / total)

    def values(self, key: str) -> list[float]:
        return [float(r[key]) for r in self.rows if not math.isnan(float(r.get(key, math.nan)))]

    def spread_of(self, key: str) -> Spread:
        return spread(self.values(key))

    def median(self, key: str) -> float:
        return self.spread_of(key).median

    def read_percentile(self, fraction: float) -> float:
        """From all repeats' buckets merged: what one long run would have reported."""
        return response_time_percentile(self.reads, fraction) if self.reads else math.nan


def aggregate(run_dir: Path, rows: Sequence[dict[str, Any]]) -> list[Config]:
    configs: dict[tuple[str, int, str, str], Config] = {}
    for row in rows:
        if row.get("error") or math.isnan(row.get("requests", math.nan)):
            continue
        key = (row["mode"], int(row["replicas"]), row["load"], row["jwt_alg"])
        config = configs.setdefault(key, Config(*key))
        config.rows.append(row)
        config.reads = merge_response_times(
            [config.reads, _read_histogram(run_dir, row["cell_id"])]
        )
        cell = _cell_json(run_dir, row["cell_id"])
        config.validation = merge_buckets([config.validation, _validation_buckets(cell)])
        for name, calls in cell.get("redis_per_command", {}).items():
            config.redis_commands[name] = config.redis_commands.get(name, 0) + int(calls)
    return sorted(configs.values(), key=_config_order)


def _config_order(config: Config) -> tuple[int, str, int, str]:
    return (modes.rank(config.mode), config.alg, config.replicas, config.load)


def _signs(mode: str) -> bool:
    """Whether the mode's credential is a signed token (the JWT algorithm matters)."""
    record = modes.find(mode)
    return record is None or record.login is not Login.SESSION


def _stateless_jwt(mode: str) -> bool:
    record = modes.find(mode)
    return record is not None and record.login is Login.JWT and not record.store_on_read


def series_of(configs: Iterable[Config]) -> list[Series]:
    configs = list(configs)
    algs = sorted({c.alg for c in configs if _signs(c.mode)})
    seen: dict[tuple[str, str], Series] = {}
    for config in configs:
        alg = config.alg if _signs(config.mode) else ""
        if (config.mode, alg) in seen:
            continue
        label = config.mode if len(algs) <= 1 or not alg else f"{config.mode} ({alg})"
        style = ALG_STYLES[algs.index(alg) % len(ALG_STYLES)] if alg in algs else "-"
        seen[(config.mode, alg)] = Series(config.mode, alg, label, style)
    return list(seen.values())


def _in_series(config: Config, series: Series) -> bool:
    return config.mode == series.mode and (not _signs(series.mode) or config.alg == series.alg)


# --- charts ----------------------------------------------------------------------------
def _label_end(ax: Any, xs: Sequence[float], ys: Sequence[float], text: str, color: str) -> None:
    """Remember a line's last point; `_place_labels` writes the label there."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if not math.isnan(y)]
    if points:
        pending = ax.__dict__.setdefault("_authbench_labels", [])
        pending.append((*points[-1], text, color))


def _place_labels(ax: Any, dx_points: float = 7.0) -> None:
    """Direct labels at the lines' ends, nudged apart so none hides another: nobody has to
    hunt in a legend."""
    pending = sorted(ax.__dict__.pop("_authbench_labels", []), key=lambda item: item[1])
    if not pending:
        return
    low, high = ax.get_ylim()
    gap = 0.07 * (high - low)
    placed: list[float] = []
    for x, y, text, color in pending:
        label_y = max(y, placed[-1] + gap) if placed else y
        placed.append(label_y)
        ax.annotate(text, (x, label_y), xytext=(dx_points, 0), textcoords="offset points",
                    color=color, va="center", fontsize=8, fontweight="bold")  # fmt: skip


def _replica_axis(ax: Any, replicas: Sequence[int]) -> None:
    ax.set_xticks(sorted(set(replicas)))
    ax.set_xlabel("resource replicas")
    ax.grid(True, alpha=0.3)
    lo, hi = min(replicas), max(replicas)
    ax.set_xlim(lo - 0.3, hi + 0.3 + 0.35 * max(1, hi - lo))  # room for the end labels


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart_latency(configs: Sequence[Config], path: Path) -> None:
    loads = sorted({c.load for c in configs})
    percentiles = (("p50", 0.50, "read_p50_ms"), ("p95", 0.95, "read_p95_ms"),
                   ("p99", 0.99, "read_p99_ms"))  # fmt: skip
    fig, axes = plt.subplots(len(loads), 3, figsize=(13, 3.8 * len(loads)), squeeze=False)
    for row_index, load in enumerate(loads):
        subset = [c for c in configs if c.load == load]
        for col, (name, fraction, key) in enumerate(percentiles):
            ax = axes[row_index][col]
            for series in series_of(subset):
                points = sorted(
                    (c for c in subset if _in_series(c, series)), key=lambda c: c.replicas
                )
                xs = [c.replicas for c in points]
                ys = [c.read_percentile(fraction) for c in points]
                spreads = [c.spread_of(key) for c in points]
                low = [
                    max(0.0, y - s.low) if s.n > 1 else 0.0
                    for y, s in zip(ys, spreads, strict=True)
                ]
                high = [
                    max(0.0, s.high - y) if s.n > 1 else 0.0
                    for y, s in zip(ys, spreads, strict=True)
                ]
                ax.errorbar(xs, ys, yerr=[low, high], color=series.color, linestyle=series.style,
                            marker="o", capsize=3, linewidth=2)  # fmt: skip
                _label_end(ax, xs, ys, series.label, series.color)
            _replica_axis(ax, [c.replicas for c in subset])
            ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
            _place_labels(ax)
            ax.set_ylabel("ms")
            ax.set_title(f"{name} of GET /api/* reads, load {load}", fontsize=10)
    fig.suptitle("Client-side read latency vs replicas (bars: min-max over repeats)", fontsize=11)
    _save(fig, path)


def chart_throughput(configs: Sequence[Config], path: Path) -> None:
    loads = sorted({c.load for c in configs})
    fig, axes = plt.subplots(1, len(loads), figsize=(6.5 * len(loads), 4.2), squeeze=False)
    for index, load in enumerate(loads):
        ax = axes[0][index]
        subset = [c for c in configs if c.load == load]
        for series in series_of(subset):
            points = sorted((c for c in subset if _in_series(c, series)), key=lambda c: c.replicas)
            xs = [c.replicas for c in points]
            ys = [c.median("read_rps") for c in points]
            spreads = [c.spread_of("read_rps") for c in points]
            low = [
                max(0.0, y - s.low) if s.n > 1 else 0.0 for y, s in zip(ys, spreads, strict=True)
            ]
            high = [
                max(0.0, s.high - y) if s.n > 1 else 0.0 for y, s in zip(ys, spreads, strict=True)
            ]
            ax.errorbar(xs, ys, yerr=[low, high], color=series.color, linestyle=series.style,
                        marker="o", capsize=3, linewidth=2)  # fmt: skip
            _label_end(ax, xs, ys, series.label, series.color)
        offered = max((c.median("offered_rps") for c in subset), default=0.0)
        if offered > 0:
            ax.axhline(offered, color="#555555", linestyle="--", linewidth=1)
        _replica_axis(ax, [c.replicas for c in subset])
        if offered > 0:  # label the offered rate at the left edge, above its line
            ax.annotate(f"offered {offered:.0f} reads/s", (ax.get_xlim()[0], offered),
                        xytext=(4, 4), textcoords="offset points", fontsize=8,
                        color="#555555")  # fmt: skip
        ax.set_ylim(0, max(ax.get_ylim()[1], offered) * 1.2)
        _place_labels(ax)
        ax.set_ylabel("reads per second (median of repeats)")
        ax.set_title(f"Throughput of authenticated reads, load {load}", fontsize=10)
    _save(fig, path)


def chart_redis(configs: Sequence[Config], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    for ax, key, ylabel in ((axes[0], "redis_ops_s", "Redis commands per second"),
                            (axes[1], "redis_cpu_pct", "Redis CPU, % of one core")):  # fmt: skip
        for series in series_of(configs):
            points = [c for c in configs if _in_series(c, series)]
            xs = [c.median("rps") for c in points]
            ys = [c.median(key) for c in points]
            ax.scatter(xs, ys, color=series.color, s=40, label=series.label, zorder=3)
            for c, x, y in zip(points, xs, ys, strict=True):
                ax.annotate(f"x{c.replicas}", (x, y), xytext=(4, 3), textcoords="offset points",
                            fontsize=7, color=series.color)  # fmt: skip
            finite = [(x, y) for x, y in zip(xs, ys, strict=True) if not math.isnan(y)]
            if finite:
                x, y = max(finite)
                _label_end(ax, [x], [y], series.label, series.color)
        ax.set_xlabel("throughput, all requests per second")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, ax.get_xlim()[1] * 1.25)  # room for the labels right of the points
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
        _place_labels(ax, dx_points=24.0)  # past the "xN" replica notes
        ax.grid(True, alpha=0.3)
    axes[0].set_title("Redis load grows with traffic for sessions and the denylist", fontsize=10)
    axes[1].set_title("...and so does Redis CPU (xN: replicas)", fontsize=10)
    _save(fig, path)


def mode_validation(configs: Sequence[Config]) -> dict[str, list[Bucket]]:
    out: dict[str, list[Bucket]] = {}
    for series in series_of(configs):
        merged = merge_buckets(c.validation for c in configs if _in_series(c, series))
        if merged and merged[-1].count > 0:
            out[series.label] = merged
    return out


def chart_validation(configs: Sequence[Config], path: Path) -> None:
    per_mode = mode_validation(configs)
    series = {s.label: s for s in series_of(configs)}
    fig, axes = plt.subplots(max(1, len(per_mode)), 1, figsize=(9, 1.9 * max(1, len(per_mode)) + 1),
                             sharex=True, squeeze=False)  # fmt: skip
    for ax, (label, buckets) in zip(axes[:, 0], per_mode.items(), strict=False):
        color = series[label].color if label in series else "#7f7f7f"
        bars = [(lo, hi, share) for lo, hi, share in bucket_densities(buckets) if hi > 0]
        lefts = [max(lo, 1e-6) * 1e6 for lo, _, _ in bars]
        widths = [hi * 1e6 - left for left, (_, hi, _) in zip(lefts, bars, strict=True)]
        ax.bar(lefts, [100 * s for _, _, s in bars], width=widths, align="edge", color=color,
               alpha=0.75, edgecolor="white")  # fmt: skip
        p50 = bucket_quantile(buckets, 0.5) * 1e6
        p99 = bucket_quantile(buckets, 0.99) * 1e6
        for value, name in ((p50, "p50"), (p99, "p99")):
            ax.axvline(value, color="black", linewidth=1, linestyle=":")
            ax.annotate(f"{name} {value:.0f} µs", (value, ax.get_ylim()[1] * 0.85),
                        xytext=(3, 0), textcoords="offset points", fontsize=8)  # fmt: skip
        ax.set_ylabel("% of checks")
        ax.set_title(f"{label}: {int(buckets[-1].count)} checks", color=color, fontsize=10,
                     loc="left", fontweight="bold")  # fmt: skip
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    used = [
        (max(lo, 1e-6) * 1e6, hi * 1e6)
        for buckets in per_mode.values()
        for lo, hi, share in bucket_densities(buckets)
        if share > 0
    ]
    if used:  # zoom on the buckets that hold checks, not the histogram's whole range
        axes[-1][0].set_xlim(min(lo for lo, _ in used) * 0.7, max(hi for _, hi in used) * 1.5)
    axes[-1][0].set_xlabel("time to validate one credential on a replica (µs, log scale)")
    if not per_mode:
        axes[0][0].text(
            0.5, 0.5, "no /metrics samples", ha="center", transform=axes[0][0].transAxes
        )
    fig.suptitle(
        "Server-side validation time (from each replica's /metrics histogram)", fontsize=11
    )
    _save(fig, path)


def chart_cpu(rows: Sequence[dict[str, Any]], path: Path) -> None:
    parts = (("cpu_redis_pct", "redis", "#9467bd"), ("cpu_auth_pct", "auth", "#8c564b"),
             ("cpu_gateway_pct", "gateway", "#7f7f7f"), ("cpu_replicas_pct", "replicas", "#bcbd22"),
             ("cpu_loadgen_pct", "load generator", "#17becf"))  # fmt: skip
    good = sorted((r for r in rows if not r.get("error")), key=_row_order)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(good) + 3), 4.6))
    bottoms = [0.0] * len(good)
    xs = list(range(len(good)))
    for key, name, color in parts:
        values = [0.0 if math.isnan(r.get(key, math.nan)) else r[key] for r in good]
        ax.bar(xs, values, bottom=bottoms, color=color, label=name, width=0.7)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    ax.set_xticks(xs, [_short(r) for r in good], rotation=35, ha="right", fontsize=8)
    for tick, row in zip(ax.get_xticklabels(), good, strict=True):
        tick.set_color(modes.color(row["mode"], "black"))
    ax.set_ylabel("% of one core (machine total = 100 x cores)")
    ax.legend(loc="upper left", fontsize=8, ncol=5, frameon=False, bbox_to_anchor=(0, 1.12))
    ax.grid(True, axis="y", alpha=0.3)
    _save(fig, path)


def chart_errors(rows: Sequence[dict[str, Any]], path: Path) -> None:
    ordered = sorted(rows, key=_row_order)
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(ordered) + 1.5))
    ys = list(range(len(ordered)))
    values = [0.0 if math.isnan(r.get("fail_pct", math.nan)) else r["fail_pct"] for r in ordered]
    colors = [modes.color(r["mode"]) for r in ordered]
    ax.barh(ys, values, color=colors)
    for y, row, value in zip(ys, ordered, values, strict=True):
        if row.get("error"):
            text = "not measured: " + str(row["error"])[:50]
        else:
            text = f"{value:.2f}%  ({int(row['failures'])} of {int(row['requests'])})"
        ax.annotate(text, (value, y), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)  # fmt: skip
    ax.set_yticks(ys, [_short(r) for r in ordered], fontsize=8)
    for tick, row in zip(ax.get_yticklabels(), ordered, strict=True):
        tick.set_color(modes.color(row["mode"], "black"))
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, max(values, default=0.0) * 1.6))
    ax.set_xlabel("failed requests, % of the cell's requests")
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)


def _row_order(row: dict[str, Any]) -> tuple[int, float, str, str, float]:
    return (modes.rank(row.get("mode", "")), row.get("replicas", 0.0), row.get("load", ""),
            row.get("jwt_alg", ""), row.get("repeat", 0.0))  # fmt: skip


def _short(row: dict[str, Any]) -> str:
    return f"{row['mode']} x{int(row['replicas'])} {row['load']} #{int(row['repeat'])}"


# --- findings --------------------------------------------------------------------------
def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def findings(
    rows: Sequence[dict[str, Any]],
    configs: Sequence[Config],
    manifest: dict[str, Any],
    run_dir: Path,
) -> list[str]:
    """Plain-language statements, each computed from the measurements."""
    out: list[str] = []
    if not configs:
        return ["No cell produced measurements; see the errors below."]
    top = max(c.replicas for c in configs)
    load = sorted({c.load for c in configs})[0]
    algs = manifest.get("settings", {}).get("matrix", {}).get("jwt_algs") or [configs[0].alg]
    primary = [c for c in configs if not _signs(c.mode) or c.alg == algs[0]]  # one per mode
    at_top = {c.mode: c for c in primary if c.replicas == top and c.load == load}
    cost = []
    for mode in MODE_ORDER:
        c = at_top.get(mode)
        if c is None:
            continue
        cost.append(
            f"{mode} {_f(c.median('redis_cmds_per_req'), 2)} Redis commands per request "
            f"({_f(c.median('redis_ops_s'), 0)} ops/s) and {_f(c.median('redis_cpu_pct'))}% of a "
            "core in Redis"
        )
    if cost:
        out.append(f"At {top} replica(s) and load {load}: " + "; ".join(cost) + ".")
    tops = []
    for mode in MODE_ORDER:
        c = at_top.get(mode)
        name, share = c.top_command() if c else ("", math.nan)
        if c and name:
            tops.append(f"{mode}: {name} ({_f(100 * share, 0)}% of its Redis commands)")
    if tops:
        out.append("The Redis command sent most, per mode: " + "; ".join(tops) + ".")
    lat = []
    for mode in MODE_ORDER:
        c = at_top.get(mode)
        if c is not None:
            lat.append(
                f"{mode} {_f(c.read_percentile(0.5), 0)} / {_f(c.read_percentile(0.99), 0)} ms"
            )
    if lat:
        out.append(
            f"Read latency p50 / p99 at {top} replica(s), load {load}: " + ", ".join(lat) + "."
        )
    validation = mode_validation(configs)
    if validation:
        parts = [
            f"{label} p50 {_f(bucket_quantile(b, 0.5) * 1e6, 0)} µs, p99 "
            f"{_f(bucket_quantile(b, 0.99) * 1e6, 0)} µs"
            for label, b in validation.items()
        ]
        out.append("Server-side, validating one credential took: " + "; ".join(parts) + ".")
        mode_of = {s.label: s.mode for s in series_of(configs)}
        session = next((b for lb, b in validation.items() if not _signs(mode_of[lb])), None)
        jwt = next((b for lb, b in validation.items() if _stateless_jwt(mode_of[lb])), None)
        if session and jwt:
            ratio = bucket_quantile(session, 0.5) / max(1e-9, bucket_quantile(jwt, 0.5))
            out.append(f"The median session check took {_f(ratio, 1)}x the median JWT check.")
    low = min(c.replicas for c in configs)
    if top > low:
        scale = []
        for mode in MODE_ORDER:
            a = next(
                (c for c in primary if c.mode == mode and c.replicas == low and c.load == load),
                None,
            )
            b = at_top.get(mode)
            if a and b and a.median("read_rps") > 0:
                change = 100 * (b.median("read_rps") / a.median("read_rps") - 1)
                doubtful = any(r.get("flags") for r in (*a.rows, *b.rows))
                scale.append(f"{mode} {change:+.0f}%" + (" (a flagged cell)" if doubtful else ""))
        offered = max((c.median("offered_rps") for c in configs if c.load == load), default=0.0)
        note = (
            f" (every cell was offered {offered:.0f} reads/s: a flat line means the mode kept up)"
            if offered > 0
            else " (closed loop: each mode ran as fast as answers came back)"
        )
        out.append(
            f"From {low} to {top} replicas, read throughput changed by: "
            + ", ".join(scale)
            + note
            + "."
        )
    revocation = []
    for mode in MODE_ORDER:
        statuses = sorted({str(r.get("after_logout_status", "")) for r in rows
                           if r.get("mode") == mode and r.get("after_logout_status")})  # fmt: skip
        if statuses:
            meaning = {"401": "refused at once", "200": "still accepted"}
            said = ", ".join(f"{s} ({meaning.get(s, 'other')})" for s in statuses)
            revocation.append(f"{mode}: {said}")
    if revocation:
        out.append(
            "Logout, measured after each cell (log in, log out, present the old credential "
            "again): " + "; ".join(revocation) + ". A stateless JWT stays valid until it "
            "expires; the denylist and sessions end it at once."
        )
    machine = manifest.get("machine", {})
    cpus = machine.get("logical_cpus") or 0
    busiest = max((r for r in rows if not r.get("error")), key=_total_cpu, default=None)
    if busiest is not None and cpus:
        loads = [machine.get(k, [math.nan])[0] for k in ("loadavg_at_start", "loadavg_at_end")]
        out.append(
            f"The busiest cell ({_short(busiest)}) used {_f(_total_cpu(busiest), 0)}% of one core "
            f"in total (the system under test plus the load generator), of the {100 * cpus}% "
            f"this {cpus}-CPU machine has; all replicas share those cores, so adding replicas "
            "here spreads the same CPU rather than adding any. The machine's load average was "
            f"{_f(loads[0])} at the start and {_f(loads[-1])} at the end (other work adds noise)."
        )
    reasons: dict[str, int] = {}
    for row in rows:
        for reason, count in (
            _cell_json(run_dir, str(row.get("cell_id", ""))).get("failure_reasons", {}).items()
        ):
            cause = reason.split(": ", 1)[-1]  # drop the request name: group by cause
            reasons[cause] = reasons.get(cause, 0) + int(count)
    if reasons:
        common = sorted(reasons.items(), key=lambda item: -item[1])[:4]
        out.append(
            f"{sum(reasons.values())} requests failed in all; why, most frequent first: "
            + "; ".join(f"{reason} x{count}" for reason, count in common)
            + " (per cell: locust_failures.csv)."
        )
    flagged = [r for r in rows if r.get("flags")]
    if flagged:
        out.append(
            f"{len(flagged)} of {len(rows)} cells are flagged (see the table): "
            + ", ".join(f"{r['cell_id']}: {r['flags']}" for r in flagged[:8])
            + (" ..." if len(flagged) > 8 else "")
            + ". Read their figures with care"
            + (
                " (a saturated generator: raise --processes)."
                if any("generator-saturated" in str(r["flags"]) for r in flagged)
                else "."
            )
        )
    else:
        out.append("No cell was flagged: the generator kept up and was not saturated.")
    jwt_top = next((c for mode, c in at_top.items() if _stateless_jwt(mode)), None)
    central = [c for mode, c in at_top.items() if modes.get(mode).store_on_read]
    if jwt_top and central:
        others = " and ".join(f"{c.mode} {_f(c.median('redis_cmds_per_req'), 2)}" for c in central)
        where = " and with ".join(modes.get(c.mode).store_role for c in central)
        denylist = any(modes.get(c.mode).login is Login.JWT for c in central)
        out.append(
            "The seed doc's claims, measured: stateless JWTs needed "
            f"{_f(jwt_top.median('redis_cmds_per_req'), 2)} Redis commands per request (only "
            f"logins, refreshes and logouts touch Redis), against {others}: with {where}, the "
            "central store is on every request's path."
            + (
                " Revocation, 'hard for JWTs', is bought back by the denylist at that "
                "per-request Redis cost."
                if denylist
                else ""
            )
        )
    return out


def _total_cpu(row: dict[str, Any]) -> float:
    keys = (
        "cpu_redis_pct",
        "cpu_auth_pct",
        "cpu_gateway_pct",
        "cpu_replicas_pct",
        "cpu_loadgen_pct",
    )
    return sum(0.0 if math.isnan(row.get(k, math.nan)) else row[k] for k in keys)


# --- HTML ------------------------------------------------------------------------------
TABLE_COLUMNS = (
    "mode", "replicas", "load", "jwt_alg", "repeat", "requests", "failures", "rps", "read_rps",
    "p50_ms", "p95_ms", "p99_ms", "max_ms", "read_p50_ms", "read_p99_ms", "redis_ops_s",
    "redis_cmds_per_req", "redis_cpu_pct", "cpu_replicas_pct", "cpu_gateway_pct",
    "cpu_auth_pct", "cpu_loadgen_pct", "validation_p50_us", "validation_p99_us",
    "after_logout_status", "flags", "error",
)  # fmt: skip

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.8em}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4} td.t{text-align:left} tr.flag{background:#fff4e0}
img{max-width:100%;border:1px solid #eee} .mode-session{color:#1f77b4}
.mode-jwt{color:#2ca02c} .mode-jwt-denylist{color:#d62728}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
li{margin:.4em 0}
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "<td></td>"
        return f"<td>{value:,.1f}</td>" if value != int(value) else f"<td>{int(value):,}</td>"
    return f'<td class="t">{html.escape(str(value))}</td>'


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        css = ' class="flag"' if row.get("flags") or row.get("error") else ""
        body.append(f"<tr{css}>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _spread_table(configs: Sequence[Config]) -> str:
    rows = []
    for c in configs:
        rps, p99 = c.spread_of("read_rps"), c.spread_of("read_p99_ms")
        rows.append({
            "mode": c.mode, "replicas": float(c.replicas), "load": c.load, "jwt_alg": c.alg,
            "repeats": float(rps.n), "reads/s mean": rps.mean, "reads/s stdev": rps.stdev,
            "reads/s min": rps.low, "reads/s max": rps.high,
            "read p99 ms (merged)": c.read_percentile(0.99),
            "read p99 ms min": p99.low, "read p99 ms max": p99.high,
            "cv of reads/s %": 100 * rps.relative if rps.n > 1 else math.nan,
        })  # fmt: skip
    return _table(rows, list(rows[0]) if rows else [])


def render(run_dir: Path) -> Path:
    """Draw the charts and report.html of a bench results directory; return the report."""
    run_dir = Path(run_dir)
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    rows = load_rows(run_dir)
    configs = aggregate(run_dir, rows)
    good_rows = [r for r in rows if not r.get("error")]
    chart_latency(configs, run_dir / "latency.png") if configs else _empty(run_dir / "latency.png")
    chart_throughput(configs, run_dir / "throughput.png") if configs else _empty(
        run_dir / "throughput.png"
    )
    chart_redis(configs, run_dir / "redis.png") if configs else _empty(run_dir / "redis.png")
    chart_validation(configs, run_dir / "validation.png")
    chart_cpu(good_rows, run_dir / "cpu.png") if good_rows else _empty(run_dir / "cpu.png")
    chart_errors(rows, run_dir / "errors.png") if rows else _empty(run_dir / "errors.png")

    settings = manifest.get("settings", {})
    protocol = settings.get("protocol", {})
    matrix = settings.get("matrix", {})
    machine = manifest.get("machine", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>authbench bench {html.escape(manifest.get('run_id', ''))}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Session vs JWT vs JWT + denylist, as replicas grow</h1>",
        f"<p>Run <b>{html.escape(str(manifest.get('run_id', '')))}</b>, "
        f"{html.escape(str(manifest.get('started_utc', '')))} to "
        f"{html.escape(str(manifest.get('finished_utc', 'unfinished')))}, commit "
        f"<code>{html.escape(str(manifest.get('git', {}).get('commit', ''))[:12])}</code>"
        f"{' (with uncommitted changes)' if manifest.get('git', {}).get('dirty') else ''}, on "
        f"{html.escape(str(machine.get('cpu_model', '')))} x{machine.get('logical_cpus', '?')}. "
        f"Matrix: modes {html.escape(', '.join(matrix.get('modes', [])))}; replicas "
        f"{matrix.get('replicas')}; loads {html.escape(str(matrix.get('loads')))} (USERS@RATE: "
        "each user starts RATE tasks per second, constant arrival); JWT algorithms "
        f"{matrix.get('jwt_algs')}; {matrix.get('repeats')} repeat(s), order shuffled with seed "
        f"{matrix.get('seed')}. Per cell: {protocol.get('warmup_s')} s warm-up (excluded), "
        f"{protocol.get('capture_s')} s capture, {protocol.get('rest_s')} s rest.</p>",
        "<h2>Findings</h2><ul>",
        *(f"<li>{html.escape(line)}</li>" for line in findings(rows, configs, manifest, run_dir)),
        "</ul>",
        "<h2>Charts</h2>",
        "<p>Colours are fixed per mode: <b class='mode-session'>session</b>, "
        "<b class='mode-jwt'>jwt</b>, <b class='mode-jwt-denylist'>jwt+denylist</b>. Latency "
        "is client-side (Locust) for the authenticated reads GET /api/me and /api/items/[id]; "
        "percentiles merge the repeats' raw response-time buckets.</p>",
    ]
    for name, title in CHARTS:
        data = base64.b64encode((run_dir / name).read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(title)}</h3><p><a href='{name}'>{name}</a></p>"
            f"<img alt='{html.escape(title)}' data-file='{name}' "
            f"src='data:image/png;base64,{data}'>"
        )
    parts += [
        "<h2>Summary (one row per cell; all columns in <a href='summary.csv'>summary.csv</a>)</h2>",
        _table(sorted(rows, key=_row_order), TABLE_COLUMNS),
        "<p>CPU is % of one core over the capture window; redis_cmds_per_req counts every "
        "Redis command during the window (logins and refreshes included) per Locust request.</p>",
        "<h2>Spread across repeats</h2>",
        _spread_table(configs),
        "<h2>Cells</h2><ul>",
    ]
    for row in sorted(rows, key=_row_order):
        cid = html.escape(str(row.get("cell_id", "")))
        locust_html = (run_dir / "cells" / str(row.get("cell_id", "")) / "locust.html").exists()
        parts.append(
            f"<li>{cid}: "
            + (f"<a href='cells/{cid}/locust.html'>Locust report</a>, " if locust_html else "")
            + f"<a href='cells/{cid}/locust_stats.csv'>stats</a>, "
            f"<a href='cells/{cid}/locust_failures.csv'>failures</a>, "
            f"<a href='cells/{cid}/cell.json'>samplers</a></li>"
        )
    parts += [
        "</ul><h2>Manifest</h2>",
        f"<pre>{html.escape(json.dumps(manifest, indent=2))}</pre>",
        "</body></html>",
    ]
    out = run_dir / "report.html"
    out.write_text("\n".join(parts))
    return out


def _empty(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, "no measurements", ha="center", va="center")
    ax.axis("off")
    _save(fig, path)
