"""The PNG charts of a bench run, drawn from its aggregated configurations and rows.

Each `chart_*` writes one file; colours come from the mode registry, one line per series
(a mode, and its JWT algorithm when several were measured), labelled at its end rather
than in a legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, no GUI toolkit imported

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from authbench import modes
from authbench.bench.aggregate import Config, Series, in_series, mode_validation, series_of
from authbench.bench.statistics import Spread, bucket_densities, bucket_quantile
from authbench.bench.summary import SummaryRow, rows_in_order

# (file, title) of every chart, in the report's order.
CHARTS = (
    ("latency.png", "Read latency percentiles vs replicas"),
    ("throughput.png", "Read throughput vs replicas"),
    ("redis.png", "The cost of central storage: Redis commands and CPU per request"),
    ("validation.png", "Server-side credential validation time, per mode"),
    ("cpu.png", "Where the CPU went, per cell"),
    ("errors.png", "Error rate per cell"),
)


def _draw_series(
    ax: Any,
    series: Series,
    xs: Sequence[float],
    ys: Sequence[float],
    spreads: Sequence[Spread],
    scale: float = 1.0,
) -> None:
    """One mode's line with min-max bars over repeats (`scale` divides the spreads' units
    into the drawn ones, e.g. µs drawn in ms), labelled at its end."""
    pairs = list(zip(ys, spreads, strict=True))
    low = [max(0.0, y - s.low / scale) if s.n > 1 else 0.0 for y, s in pairs]
    high = [max(0.0, s.high / scale - y) if s.n > 1 else 0.0 for y, s in pairs]
    ax.errorbar(
        xs,
        ys,
        yerr=[low, high],
        color=series.color,
        linestyle=series.style,
        marker="o",
        capsize=3,
        linewidth=2,
    )
    _label_end(ax, xs, ys, series.label, series.color)


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
        ax.annotate(
            text,
            (x, label_y),
            xytext=(dx_points, 0),
            textcoords="offset points",
            color=color,
            va="center",
            fontsize=8,
            fontweight="bold",
        )


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
    # µs HdrHistograms where the run has them (p50, p99, p99.9); Locust's 1-ms buckets
    # (p50, p95, p99) for older runs, whose figures they are.
    hdr = all(c.hdr_reads is not None for c in configs)
    us = (
        ("p50", 0.50, "read_p50_us"),
        ("p99", 0.99, "read_p99_us"),
        ("p99.9", 0.999, "read_p999_us"),
    )
    ms = (("p50", 0.50, "read_p50_ms"), ("p95", 0.95, "read_p95_ms"), ("p99", 0.99, "read_p99_ms"))
    percentiles = us if hdr else ms
    scale = 1000.0 if hdr else 1.0  # the µs figures are drawn in ms, keeping their resolution
    fig, axes = plt.subplots(len(loads), 3, figsize=(13, 3.8 * len(loads)), squeeze=False)
    for row_index, load in enumerate(loads):
        subset = [c for c in configs if c.load == load]
        for col, (name, fraction, key) in enumerate(percentiles):
            ax = axes[row_index][col]
            for series in series_of(subset):
                points = sorted(
                    (c for c in subset if in_series(c, series)), key=lambda c: c.replicas
                )
                xs = [c.replicas for c in points]
                ys = [
                    c.read_percentile_us(fraction) / scale if hdr else c.read_percentile(fraction)
                    for c in points
                ]
                spreads = [c.spread_of(key) for c in points]
                _draw_series(ax, series, xs, ys, spreads, scale)
            _replica_axis(ax, [c.replicas for c in subset])
            ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
            _place_labels(ax)
            ax.set_ylabel("ms (µs resolution)" if hdr else "ms (Locust's 1-ms buckets)")
            ax.set_title(f"{name} of GET /api/* reads, load {load}", fontsize=10)
    repeats = max((len(c.rows) for c in configs), default=1)
    spread_note = "bars: min-max over repeats" if repeats > 1 else "one repeat: no spread drawn"
    fig.suptitle(f"Client-side read latency vs replicas ({spread_note})", fontsize=11)
    _save(fig, path)


def chart_throughput(configs: Sequence[Config], path: Path) -> None:
    loads = sorted({c.load for c in configs})
    fig, axes = plt.subplots(1, len(loads), figsize=(6.5 * len(loads), 4.2), squeeze=False)
    for index, load in enumerate(loads):
        ax = axes[0][index]
        subset = [c for c in configs if c.load == load]
        for series in series_of(subset):
            points = sorted((c for c in subset if in_series(c, series)), key=lambda c: c.replicas)
            xs = [c.replicas for c in points]
            ys = [c.median("read_rps") for c in points]
            spreads = [c.spread_of("read_rps") for c in points]
            _draw_series(ax, series, xs, ys, spreads)
        offered = max((c.median("offered_rps") for c in subset), default=0.0)
        if offered > 0:
            ax.axhline(offered, color="#555555", linestyle="--", linewidth=1)
        _replica_axis(ax, [c.replicas for c in subset])
        ax.set_ylim(0, max(ax.get_ylim()[1], offered) * 1.2)
        _place_labels(ax)
        ax.set_ylabel("reads per second (median of repeats)")
        if offered > 0:
            # the title names the dashed line: a label on it would sit on the points
            title = f"Load {load}: paced, {offered:.0f} reads/s offered (dashed)"
        else:  # closed loop: every user sends as soon as its answer comes, so this is the ceiling
            title = f"Load {load}: closed loop, each mode's ceiling here"
        ax.set_title(title, fontsize=10)
    _save(fig, path)


LOAD_MARKERS = ("o", "s", "^", "D", "v", "P")


def through_origin_slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y = k x (a line through the origin): per request, what the
    points say; NaN without a point away from x = 0."""
    finite = [(x, y) for x, y in points if not (math.isnan(x) or math.isnan(y))]
    sxx = sum(x * x for x, _ in finite)
    return sum(x * y for x, y in finite) / sxx if sxx else math.nan


def spans_load(xs: Sequence[float], ratio: float = 1.5) -> bool:
    """Whether throughputs spread enough (max over min) for a slope to be a trend."""
    finite = [x for x in xs if not math.isnan(x) and x > 0]
    return len(finite) > 1 and max(finite) / min(finite) >= ratio


def chart_redis(configs: Sequence[Config], path: Path) -> None:
    """Redis commands/s and Redis CPU against throughput: every configuration (replicas x
    load level) a point, marker per load level. Left, per mode, the line through the origin
    that fits its points best: its slope is the mode's Redis commands per request. Right,
    the points alone (Redis has a CPU floor at no load, so no line through 0 is claimed)."""
    loads = sorted({c.load for c in configs})
    trend = spans_load([c.median("rps") for c in configs])
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.0))
    for ax, key, ylabel in (
        (axes[0], "redis_ops_s", "Redis commands per second"),
        (axes[1], "redis_cpu_pct", "Redis CPU, % of one core"),
    ):
        handles = []
        for series in series_of(configs):
            points = [c for c in configs if in_series(c, series)]
            xy = [(c.median("rps"), c.median(key)) for c in points]
            for c, (x, y) in zip(points, xy, strict=True):
                marker = LOAD_MARKERS[loads.index(c.load) % len(LOAD_MARKERS)]
                ax.scatter([x], [y], color=series.color, marker=marker, s=36, zorder=3)
            label = series.label
            finite = [x for x, y in xy if not (math.isnan(x) or math.isnan(y))]
            slope = through_origin_slope(xy)
            if key == "redis_ops_s" and finite and not math.isnan(slope):
                end = max(finite)
                ax.plot([0, end], [0, slope * end], color=series.color, linewidth=1.2, alpha=0.8)
                label = f"{series.label}: {slope:.2g} commands per request"
            handles.append(Line2D([], [], color=series.color, marker="o", label=label))
        handles += [
            Line2D([], [], color="#444444", marker=LOAD_MARKERS[i % len(LOAD_MARKERS)],
                       linestyle="", label=f"load {load}")
            for i, load in enumerate(loads)
        ]  # fmt: skip
        ax.set_xlabel("throughput, all requests per second (median of repeats)")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, ax.get_xlim()[1] * 1.05)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
        # upper left: above the steepest line through 0, where no point can be
        ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=True, framealpha=0.9)
        ax.grid(True, alpha=0.3)
    if trend:
        axes[0].set_title("Redis commands/s vs throughput (line: fit through 0)", fontsize=10)
        axes[1].set_title("Redis CPU vs throughput", fontsize=10)
    else:  # one throughput: the slope is a ratio at one point, not a trend
        axes[0].set_title("Redis commands/s at one load level: a ratio, not a trend", fontsize=10)
        axes[1].set_title("Redis CPU at one load level: a level, not a trend", fontsize=10)
    _save(fig, path)


def chart_validation(configs: Sequence[Config], path: Path) -> None:
    per_mode = mode_validation(configs)
    series = {s.label: s for s in series_of(configs)}
    fig, axes = plt.subplots(
        max(1, len(per_mode)),
        1,
        figsize=(9, 1.9 * max(1, len(per_mode)) + 1),
        sharex=True,
        squeeze=False,
    )
    for ax, (label, buckets) in zip(axes[:, 0], per_mode.items(), strict=False):
        color = series[label].color if label in series else "#7f7f7f"
        bars = [(lo, hi, share) for lo, hi, share in bucket_densities(buckets) if hi > 0]
        lefts = [max(lo, 1e-6) * 1e6 for lo, _, _ in bars]
        widths = [hi * 1e6 - left for left, (_, hi, _) in zip(lefts, bars, strict=True)]
        ax.bar(
            lefts,
            [100 * s for _, _, s in bars],
            width=widths,
            align="edge",
            color=color,
            alpha=0.75,
            edgecolor="white",
        )
        p50 = bucket_quantile(buckets, 0.5) * 1e6
        p99 = bucket_quantile(buckets, 0.99) * 1e6
        # the two labels at different heights, so close percentiles do not overprint
        for value, name, height in ((p50, "p50", 0.85), (p99, "p99", 0.6)):
            ax.axvline(value, color="black", linewidth=1, linestyle=":")
            ax.annotate(
                f"{name} {value:.0f} µs",
                (value, ax.get_ylim()[1] * height),
                xytext=(3, 0),
                textcoords="offset points",
                fontsize=8,
            )
        ax.set_ylabel("% of checks")
        ax.set_title(
            f"{label}: {int(buckets[-1].count)} checks",
            color=color,
            fontsize=10,
            loc="left",
            fontweight="bold",
        )
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


def chart_cpu(rows: Sequence[SummaryRow], path: Path) -> None:
    """Stacked horizontal bars, one per cell: the figure grows downwards with the cells,
    so its labels keep their size however many cells a run has."""
    parts = (
        ("cpu_redis_pct", "redis", "#9467bd"),
        ("cpu_auth_pct", "auth", "#8c564b"),
        ("cpu_gateway_pct", "gateway", "#7f7f7f"),
        ("cpu_replicas_pct", "replicas", "#bcbd22"),
        ("cpu_loadgen_pct", "load generator", "#17becf"),
    )
    good = rows_in_order([r for r in rows if not r.error])
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(good) + 1.8))
    lefts = [0.0] * len(good)
    ys = list(range(len(good)))
    for key, name, color in parts:
        values = [_zero_if_nan(r.number(key)) for r in good]
        ax.barh(ys, values, left=lefts, color=color, label=name, height=0.7)
        lefts = [b + v for b, v in zip(lefts, values, strict=True)]
    ax.set_yticks(ys, [short_name(r) for r in good], fontsize=8)
    for tick, row in zip(ax.get_yticklabels(), good, strict=True):
        tick.set_color(modes.color(row.mode, "black"))
    ax.invert_yaxis()
    ax.set_xlabel("% of one core over the capture window (machine total = 100 x cores)")
    ax.legend(loc="lower left", fontsize=8, ncol=5, frameon=False, bbox_to_anchor=(0, 1.0))
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)


def chart_errors(rows: Sequence[SummaryRow], path: Path) -> None:
    ordered = rows_in_order(rows)
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(ordered) + 1.5))
    ys = list(range(len(ordered)))
    values = [_zero_if_nan(r.fail_pct) for r in ordered]
    colors = [modes.color(r.mode) for r in ordered]
    ax.barh(ys, values, color=colors)
    for y, row, value in zip(ys, ordered, values, strict=True):
        if row.error:
            text = "not measured: " + row.error[:50]
        else:
            text = f"{value:.2f}%  ({row.number('failures'):.0f} of {row.number('requests'):.0f})"
        ax.annotate(
            text, (value, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.set_yticks(ys, [short_name(r) for r in ordered], fontsize=8)
    for tick, row in zip(ax.get_yticklabels(), ordered, strict=True):
        tick.set_color(modes.color(row.mode, "black"))
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, max(values, default=0.0) * 1.6))
    ax.set_xlabel("failed requests, % of the cell's requests")
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)


def short_name(row: SummaryRow) -> str:
    """A cell in a few characters: `session x4 30@15 #1`."""
    return f"{row.mode} x{row.replicas} {row.load} #{row.repeat}"


def _zero_if_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def chart_empty(path: Path) -> None:
    """A placeholder where a run has nothing to draw."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, "no measurements", ha="center", va="center")
    ax.axis("off")
    _save(fig, path)
