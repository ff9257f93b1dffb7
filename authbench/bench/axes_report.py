"""What a run with the store axes shows: two charts, findings, and the disagreeing repeats.

- `distance.png`: each mode's read latency (p50 in µs, from the HdrHistograms, and p99)
  against the store round trip: direct, the proxy at 0 ms (its control), and each RTT.
  The line a store-on-read mode should follow is `its direct p50 + RTT`, drawn dashed;
- `capacity.png`: each mode's read throughput against replicas, Redis uncapped (solid)
  and held to its quota (dashed), with the quota's measured CPU underneath: where
  session and denylist flatten at the capped Redis's capacity and JWT does not;
- findings: medians over the repeats with their spread (min-max), per distance and per
  quota, and every configuration whose repeats disagree by more than 15% on a headline
  figure, named so that it is investigated rather than averaged away.

Everything is drawn from summary.csv's rows alone, so `authbench report` redraws it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from authbench import modes
from authbench.bench import axes
from authbench.bench.statistics import Spread, spread
from authbench.bench.summary import SummaryRow

DISAGREE = 0.15  # repeats further apart than this (max-min over median) are named
HEADLINE = ("read_p50_us", "read_rps")
CHARTS = (
    ("distance.png", "Store distance: read latency vs the store's round trip"),
    ("capacity.png", "Store capacity: read throughput vs replicas, Redis capped and not"),
)


@dataclass
class AxisConfig:
    """The repeats of one configuration of a run with axes."""

    mode: str
    replicas: int
    load: str
    alg: str
    link: str
    rtt_ms: float
    cpus: float  # NaN: uncapped
    pad: int
    rows: list[SummaryRow] = field(default_factory=list)

    def spread_of(self, column: str) -> Spread:
        return spread([r.number(column) for r in self.rows])

    def median(self, column: str) -> float:
        return self.spread_of(column).median

    @property
    def capped(self) -> bool:
        return not math.isnan(self.cpus)

    @property
    def label(self) -> str:
        parts = [self.mode, f"x{self.replicas}", self.load]
        if self.link != "direct" or self.rtt_ms:
            parts.append(f"proxy {self.rtt_ms:g} ms")
        if self.capped:
            parts.append(f"Redis {self.cpus:g} core")
        if self.pad:
            parts.append(f"pad {self.pad} B")
        return " ".join(parts)


def on_an_axis(row: SummaryRow) -> bool:
    """A cell away from the base system: a store distance, Redis capped, tokens padded."""
    return row.store_link in axes.DISTANT or not math.isnan(row.redis_cpus) or row.token_bytes > 0


def has_axes(rows: Sequence[SummaryRow]) -> bool:
    """Whether a run measured any store axis (older runs read as direct, uncapped)."""
    return any(on_an_axis(r) for r in rows)


def configurations(rows: Sequence[SummaryRow]) -> list[AxisConfig]:
    configs: dict[tuple[Any, ...], AxisConfig] = {}
    for row in rows:
        if row.error or row.requests is None:
            continue
        cpus = row.redis_cpus
        key = (row.mode, row.replicas, row.load, row.jwt_alg, row.store_link or "direct",
               row.store_rtt_ms, -1.0 if math.isnan(cpus) else cpus, row.token_bytes)  # fmt: skip
        fresh = AxisConfig(
            row.mode, row.replicas, row.load, row.jwt_alg, key[4], row.store_rtt_ms, cpus,
            row.token_bytes,
        )  # fmt: skip
        config = configs.setdefault(key, fresh)
        config.rows.append(row)
    return sorted(
        configs.values(),
        key=lambda c: (modes.rank(c.mode), c.load, c.replicas, c.link, c.rtt_ms, c.cpus, c.pad),
    )


# --- the distance axis -----------------------------------------------------------------
def _distance_points(configs: Sequence[AxisConfig]) -> dict[str, list[AxisConfig]]:
    """Per mode: the cells of the distance axis (1 replica, uncapped, unpadded, the paced
    load that has a proxied cell), direct first, then by RTT."""
    proxied_loads = {(c.load, c.replicas) for c in configs if c.link in axes.DISTANT}
    by_mode: dict[str, list[AxisConfig]] = {}
    for config in configs:
        if (config.load, config.replicas) not in proxied_loads or config.capped or config.pad:
            continue
        by_mode.setdefault(config.mode, []).append(config)
    for points in by_mode.values():
        points.sort(key=lambda c: (c.link != "direct", c.rtt_ms))
    return by_mode


def _x(config: AxisConfig) -> float:
    """Direct at -0.6 on the RTT axis, so the proxy's own cost shows as a step to 0."""
    return -0.6 if config.link == "direct" else config.rtt_ms


def chart_distance(configs: Sequence[AxisConfig], path: Path) -> bool:
    by_mode = _distance_points(configs)
    if not by_mode:
        return False
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ticks: set[float] = set()
    for mode, points in by_mode.items():
        color = modes.color(mode)
        xs = [_x(c) for c in points]
        ticks.update(xs)
        p50 = [c.median("read_p50_us") / 1000 for c in points]
        low = [c.spread_of("read_p50_us").low / 1000 for c in points]
        high = [c.spread_of("read_p50_us").high / 1000 for c in points]
        ax.plot(xs, p50, "o-", color=color, label=f"{mode} p50")
        ax.fill_between(xs, low, high, color=color, alpha=0.15)
        direct = next((c for c in points if c.link == "direct"), None)
        if direct is not None and modes.get(mode).store_on_read:
            rtts = [c.rtt_ms for c in points if c.link in axes.DISTANT]
            base = direct.median("read_p50_us") / 1000
            ax.plot(rtts, [base + r for r in rtts], ":", color=color, alpha=0.7,
                    label=f"{mode}: direct p50 + RTT")  # fmt: skip
    ax.set_xticks(sorted(ticks))
    ax.set_xticklabels(["direct" if t < 0 else f"{t:g}" for t in sorted(ticks)])
    ax.set_xlabel("round trip added to the store (ms; userspace proxy)")
    ax.set_ylabel("read latency p50 (ms, µs resolution; band: min-max of repeats)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    # what is drawn, not what it should show: the findings say what the medians did
    ax.set_title("Store distance: read p50 per mode vs the round trip added to the store")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# --- the capacity axis -----------------------------------------------------------------
def _capacity_configs(configs: Sequence[AxisConfig]) -> list[AxisConfig]:
    """The capacity axis: direct link, unpadded, at the loads that have a capped cell."""
    capped_loads = {c.load for c in configs if c.capped and c.link == "direct"}
    return [c for c in configs if c.load in capped_loads and c.link == "direct" and not c.pad]


def chart_capacity(configs: Sequence[AxisConfig], path: Path) -> bool:
    chosen = _capacity_configs(configs)
    if not chosen:
        return False
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    lines: dict[tuple[str, float], list[AxisConfig]] = {}
    for config in chosen:
        lines.setdefault((config.mode, -1.0 if not config.capped else config.cpus), []).append(
            config
        )
    replicas: set[int] = set()
    for (mode, cpus), points in sorted(
        lines.items(), key=lambda kv: (modes.rank(kv[0][0]), kv[0][1])
    ):
        points.sort(key=lambda c: c.replicas)
        xs = [c.replicas for c in points]
        replicas.update(xs)
        color = modes.color(mode)
        style = "-" if cpus < 0 else "--"
        name = f"{mode}, Redis {'uncapped' if cpus < 0 else f'{cpus:g} core'}"
        ys = [c.median("read_rps") for c in points]
        errs = [
            [y - c.spread_of("read_rps").low for y, c in zip(ys, points, strict=True)],
            [c.spread_of("read_rps").high - y for y, c in zip(ys, points, strict=True)],
        ]
        face = color if cpus < 0 else "white"  # capped: hollow markers, dashed line
        top.errorbar(xs, ys, yerr=errs, fmt="o" + style, color=color, mfc=face, capsize=3,
                     label=name)  # fmt: skip
        if cpus >= 0:
            bottom.plot(xs, [c.median("redis_cpu_pct") for c in points], "o" + style,
                        color=color, label=f"{mode}: Redis CPU")  # fmt: skip
            bottom.axhline(100 * cpus, color="grey", lw=0.8, ls=":")
    top.set_ylabel("reads/s (median; bars: min-max of repeats)")
    top.set_title("Store capacity: read throughput per mode, Redis capped (hollow) and not")
    top.grid(True, alpha=0.3)
    top.legend(fontsize=7)
    bottom.set_ylabel("capped Redis\nCPU (% core)")
    bottom.set_xlabel("resource replicas")
    bottom.set_xticks(sorted(replicas))
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def draw(run_dir: Path, rows: Sequence[SummaryRow]) -> list[tuple[str, str]]:
    """Draw the axes' charts a run has data for; (file, title) of each drawn."""
    configs = configurations(rows)
    drawn = []
    drawers: dict[str, Callable[[Sequence[AxisConfig], Path], bool]] = {
        "distance.png": chart_distance,
        "capacity.png": chart_capacity,
    }
    for name, title in CHARTS:
        if drawers[name](configs, run_dir / name):
            drawn.append((name, title))
    return drawn


# --- findings --------------------------------------------------------------------------
def _m(s: Spread, scale: float = 1.0, digits: int = 0) -> str:
    if math.isnan(s.median):
        return "n/a"
    if s.n < 2:
        return f"{s.median / scale:.{digits}f}"
    return f"{s.median / scale:.{digits}f} ({s.low / scale:.{digits}f}-{s.high / scale:.{digits}f})"


def findings(rows: Sequence[SummaryRow], store_note: str = "") -> list[str]:
    configs = configurations(rows)
    lines: list[str] = []
    if store_note and any(r.store_link in axes.DISTANT for r in rows):
        lines.append(f"Store distance: {store_note}.")
    for mode, points in _distance_points(configs).items():
        direct = next((c for c in points if c.link == "direct"), None)
        if direct is None:
            continue
        base = direct.median("read_p50_us")
        control = next((c for c in points if c.link in axes.DISTANT and c.rtt_ms == 0), None)
        parts = [f"direct {_m(direct.spread_of('read_p50_us'))} µs"]
        for c in points:
            if c.link not in axes.DISTANT:
                continue
            rise = c.median("read_p50_us") - base
            paired = ""
            if control is not None and c is not control:
                # Per repeat, against the control cell of the same repeat (same cluster,
                # minutes apart at most): what drift on a shared machine cancels out of.
                paired = f", {_m(_paired_rise(c, control))} µs over the proxy at 0 ms"
            parts.append(
                f"{c.rtt_ms:g} ms: {_m(c.spread_of('read_p50_us'))} µs ({rise:+.0f} µs over "
                f"direct{paired}; store PING {_m(c.spread_of('store_ping_us'))} µs)"
            )
        lines.append(f"Store distance, {mode} read p50 (median, min-max over repeats): "
                     + "; ".join(parts) + ".")  # fmt: skip
    for c in _capacity_configs(configs):
        if not c.capped:
            continue
        free = next(
            (u for u in configs if u.mode == c.mode and u.replicas == c.replicas
             and u.load == c.load and u.link == "direct" and not u.capped and not u.pad),
            None,
        )  # fmt: skip
        text = (
            f"Store capacity, {c.mode} x{c.replicas} ({c.load}): Redis held to {c.cpus:g} core "
            f"gives {_m(c.spread_of('read_rps'))} reads/s, Redis CPU "
            f"{_m(c.spread_of('redis_cpu_pct'), digits=1)}%, throttled "
            f"{_m(c.spread_of('redis_throttled_pct'), digits=0)}% of periods"
        )
        if free is not None:
            text += f"; uncapped {_m(free.spread_of('read_rps'))} reads/s"
        lines.append(text + ".")
    lines += disagreements(configs)
    return lines


def _paired_rise(config: AxisConfig, control: AxisConfig) -> Spread:
    """read p50 of `config` minus that of `control`, repeat by repeat."""
    base = {r.repeat: r.read_p50_us for r in control.rows}
    return spread([r.read_p50_us - base[r.repeat] for r in config.rows if r.repeat in base])


def disagreements(configs: Sequence[AxisConfig], threshold: float = DISAGREE) -> list[str]:
    """Configurations whose repeats differ by more than `threshold` of their median on a
    headline figure: to investigate (see each repeat's cell folder), not to average."""
    out = []
    for config in configs:
        for column in HEADLINE:
            s = config.spread_of(column)
            if s.n < 2 or not s.median:
                continue
            gap = (s.high - s.low) / s.median
            if gap > threshold:
                values = ", ".join(f"{r.cell_id}: {r.number(column):.0f}" for r in config.rows)
                out.append(
                    f"Repeats disagree by {100 * gap:.0f}% on {column} in {config.label} "
                    f"({values}): investigate before quoting its median."
                )
    return out
