"""Several bench runs side by side: the same figures, one line style per run.

A reader compares runs, not only modes: local against compose, before and after a change,
two machines, two Redis versions. `compare(run_dirs, results_dir)` writes
`results/compare-<UTC time>/` (the run-folder name of `authbench.provenance.new_run_id`):

- `manifest.json`: `"kind": "compare"`, the runs compared (paths relative to the folder,
  so `authbench report` redraws it), and what differs between them besides the matrix
  (protocol, commit, versions, machine);
- `compare.csv`: per configuration every run measured, per figure, per run: the median,
  min and max over the run's repeats, and the difference from the first run (the
  baseline) with a verdict: `beyond spread` when the two runs' min-max ranges do not
  overlap, `within spread` when they do, `one repeat` when a run has a single repeat (no
  spread to judge by);
- `compare_throughput.png`, `compare_latency.png`, `compare_redis.png`: the bench
  report's replica and Redis charts over the shared configurations, colour per mode (the
  registry's), line style and marker per run;
- `report.html`: the runs, what differs, the charts and the difference tables.

A *configuration* is a cell without its repeat: mode, replicas, load, JWT algorithm and
the store axes (link and RTT, Redis CPU quota, token padding). Only configurations every
run measured are compared; runs that share none are refused with a message naming each
dimension whose values differ (`NoOverlap`).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from authbench import modes
from authbench.bench.axes import DISTANT
from authbench.bench.statistics import Spread, spread
from authbench.bench.summary import SummaryRow, read_summary
from authbench.provenance import new_run_id, run_head

RUN_STYLES: tuple[Any, ...] = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3)))
RUN_MARKERS = ("o", "s", "^", "D", "v", "P")
CHARTS = (
    ("compare_throughput.png", "Read throughput vs replicas, per run"),
    ("compare_latency.png", "Read latency (p50, p99) vs replicas, per run"),
    ("compare_redis.png", "Redis commands/s vs throughput, per run"),
)
DISTANCE_CHART = ("compare_distance.png", "Store distance: read p50 vs the store's round trip")
# The dimensions of a configuration, in the order messages name them.
DIMENSIONS = ("mode", "replicas", "load", "jwt_alg", "store", "redis_cpus", "token_bytes")


class NoOverlap(ValueError):
    """The runs share no configuration; the message names what differs."""


Key = tuple[str, int, str, str, str, str, int]


def config_key(row: SummaryRow) -> Key:
    """A row's configuration (its repeat left out), each part as text a reader can read."""
    link = row.store_link or "direct"
    store = "direct" if link == "direct" else f"{link} {row.store_rtt_ms:g} ms"
    cpus = "uncapped" if math.isnan(row.redis_cpus) else f"{row.redis_cpus:g} core"
    # A session's cookie ignores the JWT algorithm and the padding (matrix.Matrix.configs).
    return (row.mode, row.replicas, row.load, row.jwt_alg, store, cpus, row.token_bytes)


def key_text(key: Key) -> str:
    mode, replicas, load, alg, store, cpus, pad = key
    parts = [mode, f"x{replicas}", load, alg]
    if store != "direct":
        parts.append(store)
    if cpus != "uncapped":
        parts.append(f"Redis {cpus}")
    if pad:
        parts.append(f"pad {pad} B")
    return " ".join(parts)


@dataclass
class Run:
    """One bench run folder, its rows grouped by configuration."""

    path: Path
    manifest: dict[str, Any]
    rows: list[SummaryRow]
    configs: dict[Key, list[SummaryRow]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @classmethod
    def load(cls, path: Path) -> Run:
        """Read a bench run folder; ValueError naming the folder when it is not one."""
        path = Path(path)
        try:
            manifest: dict[str, Any] = json.loads((path / "manifest.json").read_text())
            rows = read_summary(path / "summary.csv")
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{path} is not a bench run folder (manifest.json and summary.csv): {err}"
            ) from err
        if manifest.get("kind", "bench") != "bench":
            raise ValueError(f"{path} is a {manifest.get('kind')!r} run, not a bench run")
        run = cls(path, manifest, rows)
        for row in rows:
            if not row.error and row.requests is not None:
                run.configs.setdefault(config_key(row), []).append(row)
        return run


# --- the figures compared -------------------------------------------------------------
def _latency(us_column: str, ms_column: str) -> Callable[[SummaryRow], float]:
    """µs from the HdrHistograms where the row has them, else Locust's ms in µs."""

    def read(row: SummaryRow) -> float:
        value = row.number(us_column)
        return value if not math.isnan(value) else 1000.0 * row.number(ms_column)

    return read


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    read: Callable[[SummaryRow], float]
    headline: bool = False  # shown in report.html (every figure is in compare.csv)


def _column(name: str) -> Callable[[SummaryRow], float]:
    return lambda row: row.number(name)


FIGURES = (
    Figure("read_rps", "read throughput", "reads/s", _column("read_rps"), True),
    Figure("read_p50_us", "read p50", "µs", _latency("read_p50_us", "read_p50_ms"), True),
    Figure("read_p99_us", "read p99", "µs", _latency("read_p99_us", "read_p99_ms"), True),
    Figure("redis_ops_s", "Redis commands/s", "ops/s", _column("redis_ops_s"), True),
    Figure("redis_cpu_pct", "Redis CPU", "% of a core", _column("redis_cpu_pct"), True),
    Figure("redis_cmds_per_req", "Redis commands per request", "", _column("redis_cmds_per_req")),
    Figure("cpu_replicas_pct", "replicas' CPU", "% of a core", _column("cpu_replicas_pct")),
    Figure("cpu_gateway_pct", "gateway CPU", "% of a core", _column("cpu_gateway_pct")),
    Figure("cpu_loadgen_pct", "load generator CPU", "% of a core", _column("cpu_loadgen_pct")),
    Figure("validation_p50_us", "validation p50", "µs", _column("validation_p50_us")),
    Figure("fail_pct", "failed requests", "%", _column("fail_pct")),
)


_P50 = next(f for f in FIGURES if f.key == "read_p50_us")


def ms_resolution(rows: Sequence[SummaryRow]) -> bool:
    """Whether a run's read latency only has Locust's 1-ms buckets (no µs figures)."""
    return all(math.isnan(r.read_p50_us) for r in rows)


@dataclass(frozen=True)
class Difference:
    """One figure of one configuration: each run's spread, and each against the first."""

    key: Key
    figure: Figure
    spreads: tuple[Spread, ...]

    def diff(self, index: int) -> float:
        return self.spreads[index].median - self.spreads[0].median

    def diff_pct(self, index: int) -> float:
        base = self.spreads[0].median
        return 100.0 * self.diff(index) / base if base else math.nan

    def verdict(self, index: int) -> str:
        """`beyond spread`, `within spread`, `one repeat` or `not measured`."""
        a, b = self.spreads[0], self.spreads[index]
        if a.n == 0 or b.n == 0:
            return "not measured"
        if a.n < 2 or b.n < 2:
            return "one repeat"
        return "beyond spread" if a.high < b.low or b.high < a.low else "within spread"

    def chance(self, index: int) -> float:
        """How often two runs that measure the same thing still land `beyond spread`: of
        all orders of their n_a + n_b repeats, the share that puts one run's all below the
        other's (2 / C(n_a + n_b, n_a); 1/3 for 2 repeats each, 1/10 for 3 each). NaN
        where the verdict is not `beyond spread`."""
        if self.verdict(index) != "beyond spread":
            return math.nan
        a, b = self.spreads[0].n, self.spreads[index].n
        return 2.0 / math.comb(a + b, a)


def shared_keys(runs: Sequence[Run]) -> list[Key]:
    """The configurations every run measured, in report order; NoOverlap when none."""
    common = set(runs[0].configs)
    for run in runs[1:]:
        common &= set(run.configs)
    if not common:
        raise NoOverlap(what_differs(runs))
    return sorted(
        common,
        key=lambda k: (
            modes.rank(k[0]), k[2], k[4] != "direct", k[4], k[5] != "uncapped", k[5], k[6],
            k[3], k[1],
        ),
    )  # fmt: skip


def _dimension_values(run: Run) -> dict[str, list[str]]:
    values: dict[str, set[str]] = {d: set() for d in DIMENSIONS}
    for key in run.configs:
        for dimension, part in zip(DIMENSIONS, key, strict=True):
            values[dimension].add(str(part))
    return {d: sorted(v) for d, v in values.items()}


def what_differs(runs: Sequence[Run]) -> str:
    """Why runs share no configuration: each dimension whose values differ, per run."""
    if any(not run.configs for run in runs):
        empty = [run.name for run in runs if not run.configs]
        return f"nothing to compare: no measured cell in {', '.join(empty)}"
    per_run = [_dimension_values(run) for run in runs]
    lines = []
    for dimension in DIMENSIONS:
        sets = [values[dimension] for values in per_run]
        if all(s == sets[0] for s in sets):
            continue
        disjoint = not set(sets[0]).intersection(*map(set, sets[1:]))
        lines.append(
            f"  {dimension}{' (no value in common)' if disjoint else ''}: "
            + "; ".join(f"{run.name} has {', '.join(s)}" for run, s in zip(runs, sets, strict=True))
        )
    if not lines:
        lines.append(
            "  every dimension has the same values, but no combination of them is in every run"
        )
    return "the runs share no configuration (mode, replicas, load, ...):\n" + "\n".join(lines)


def differences(runs: Sequence[Run], keys: Sequence[Key]) -> list[Difference]:
    return [
        Difference(
            key, figure, tuple(spread([figure.read(r) for r in run.configs[key]]) for run in runs)
        )
        for key in keys
        for figure in FIGURES
    ]


def setting_differences(runs: Sequence[Run]) -> list[str]:
    """What differs between the runs besides the matrix: protocol, commit, versions, machine."""
    probes: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("git commit", lambda m: str(m.get("git", {}).get("commit", ""))[:12]
         + (" (dirty)" if m.get("git", {}).get("dirty") else "")),
        ("target", lambda m: m.get("settings", {}).get("target", "local")),
        ("cpu", lambda m: f"{m.get('machine', {}).get('cpu_model', '?')} "
         f"x{m.get('machine', {}).get('logical_cpus', '?')}"),
        ("host", lambda m: m.get("machine", {}).get("hostname", "")),
    ]  # fmt: skip
    for section in ("protocol",):
        names: set[str] = set()
        for run in runs:
            names |= set(run.manifest.get("settings", {}).get(section, {}))
        for name in sorted(names):
            probes.append(
                (f"{section}.{name}",
                 lambda m, s=section, n=name: m.get("settings", {}).get(s, {}).get(n))  # type: ignore[misc]
            )  # fmt: skip
    versions: set[str] = set()
    for run in runs:
        versions |= set(run.manifest.get("versions", {}))
    for name in sorted(versions):
        probes.append((f"version of {name}", lambda m, n=name: m.get("versions", {}).get(n)))  # type: ignore[misc]
    out = []
    for label, probe in probes:
        values = [probe(run.manifest) for run in runs]
        if any(v != values[0] for v in values):
            out.append(
                f"{label}: "
                + "; ".join(f"{run.name}: {v}" for run, v in zip(runs, values, strict=True))
            )
    return out


# --- charts ----------------------------------------------------------------------------
def _panels(keys: Sequence[Key]) -> list[tuple[str, str, str, str, int]]:
    """The chart panels: everything of a configuration but mode and replicas (the lines
    and the x axis)."""
    seen: dict[tuple[str, str, str, str, int], None] = {}
    for _mode, _replicas, load, alg, store, cpus, pad in keys:
        seen.setdefault((load, alg, store, cpus, pad), None)
    return list(seen)


def _panel_title(panel: tuple[str, str, str, str, int], many_algs: bool) -> str:
    load, alg, store, cpus, pad = panel
    parts = [f"load {load}"]
    if many_algs:
        parts.append(alg)
    if store != "direct":
        parts.append(store)
    if cpus != "uncapped":
        parts.append(f"Redis {cpus}")
    if pad:
        parts.append(f"pad {pad} B")
    return ", ".join(parts)


def _in_panel(key: Key, panel: tuple[str, str, str, str, int]) -> bool:
    return (key[2], key[3], key[4], key[5], key[6]) == panel


def _legend(fig: Any, runs: Sequence[Run], mode_keys: Sequence[str]) -> float:
    """One legend below the panels: the runs' line styles (black) and the modes' colours,
    in as many columns as the figure's width holds (a one-panel chart is narrow, and run
    names are long), so no entry is cut off at the edges. Returns the share of the
    figure's height the legend takes at the bottom (tight_layout's rect)."""
    handles = [
        Line2D([], [], color="black", linestyle=RUN_STYLES[i % len(RUN_STYLES)],
               marker=RUN_MARKERS[i % len(RUN_MARKERS)], label=f"run {run.name}")
        for i, run in enumerate(runs)
    ]  # fmt: skip
    handles += [
        Line2D([], [], color=modes.color(m), linewidth=6, label=modes.label(m)) for m in mode_keys
    ]
    width_in, height_in = fig.get_size_inches()
    # 9-pt text is about 0.075 inch a character; the handle and the gaps about 0.9 inch
    entry_in = 0.9 + 0.075 * max(len(str(h.get_label())) for h in handles)
    ncol = max(1, min(len(handles), 4, int((width_in - 0.3) // entry_in)))
    rows = math.ceil(len(handles) / ncol)
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=ncol,
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    return float(min(0.5, (0.3 + 0.25 * rows) / height_in))


def _draw_by_replicas(
    runs: Sequence[Run],
    keys: Sequence[Key],
    figures: Sequence[Figure],
    path: Path,
    ylabel: Callable[[Figure], str],
    scale: float = 1.0,
) -> None:
    panels = _panels(keys)
    many_algs = len({k[3] for k in keys}) > 1
    mode_keys = list(dict.fromkeys(k[0] for k in keys))
    nrows, ncols = len(panels), len(figures)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.2 * ncols, 3.9 * nrows + 0.6), squeeze=False)
    for row_index, panel in enumerate(panels):
        in_panel = [k for k in keys if _in_panel(k, panel)]
        for col, figure in enumerate(figures):
            ax = axes[row_index][col]
            for run_index, run in enumerate(runs):
                for mode in mode_keys:
                    points = sorted((k for k in in_panel if k[0] == mode), key=lambda k: k[1])
                    if not points:
                        continue
                    xs = [float(k[1]) for k in points]
                    spreads = [spread([figure.read(r) for r in run.configs[k]]) for k in points]
                    ys = [s.median / scale for s in spreads]
                    low = [max(0.0, y - s.low / scale) if s.n > 1 else 0.0
                           for y, s in zip(ys, spreads, strict=True)]  # fmt: skip
                    high = [max(0.0, s.high / scale - y) if s.n > 1 else 0.0
                            for y, s in zip(ys, spreads, strict=True)]  # fmt: skip
                    # runs side by side at each replica count, so their bars do not hide
                    offset = 0.06 * (run_index - (len(runs) - 1) / 2)
                    ax.errorbar(
                        [x + offset for x in xs], ys, yerr=[low, high],
                        color=modes.color(mode), linestyle=RUN_STYLES[run_index % len(RUN_STYLES)],
                        marker=RUN_MARKERS[run_index % len(RUN_MARKERS)], capsize=3, linewidth=1.8,
                        markersize=5,
                    )  # fmt: skip
            replicas = sorted({k[1] for k in in_panel})
            ax.set_xticks(replicas)
            ax.set_xlim(min(replicas) - 0.5, max(replicas) + 0.5)
            ax.set_xlabel("resource replicas")
            ax.set_ylabel(ylabel(figure))
            ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
            ax.grid(True, alpha=0.3)
            ax.set_title(f"{figure.label}, {_panel_title(panel, many_algs)}", fontsize=10)
    fig.tight_layout(rect=(0, _legend(fig, runs, mode_keys), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def chart_throughput(runs: Sequence[Run], keys: Sequence[Key], path: Path) -> None:
    figure = next(f for f in FIGURES if f.key == "read_rps")
    _draw_by_replicas(
        runs, keys, [figure], path, lambda f: "reads/s (median; bars: min-max of repeats)"
    )


def chart_latency(runs: Sequence[Run], keys: Sequence[Key], path: Path) -> None:
    figures = [f for f in FIGURES if f.key in ("read_p50_us", "read_p99_us")]
    coarse = [run.name for run in runs if ms_resolution(run.rows)]
    # which runs have only Locust's 1-ms buckets is said under the chart in report.html
    unit = "ms (some runs: 1-ms buckets)" if coarse else "ms (µs resolution)"
    _draw_by_replicas(runs, keys, figures, path, lambda f: unit, scale=1000.0)


def chart_redis(runs: Sequence[Run], keys: Sequence[Key], path: Path) -> None:
    """Redis commands/s against all requests/s, every shared configuration a point; a
    line per mode and run through its points in order of throughput."""
    mode_keys = list(dict.fromkeys(k[0] for k in keys))
    fig, ax = plt.subplots(figsize=(9, 5.4))
    for run_index, run in enumerate(runs):
        for mode in mode_keys:
            points = []
            for key in keys:
                if key[0] != mode:
                    continue
                rows = run.configs[key]
                x = spread([r.rps for r in rows]).median
                y = spread([r.redis_ops_s for r in rows]).median
                if not (math.isnan(x) or math.isnan(y)):
                    points.append((x, y))
            points.sort()
            ax.plot(
                [p[0] for p in points], [p[1] for p in points],
                color=modes.color(mode), linestyle=RUN_STYLES[run_index % len(RUN_STYLES)],
                marker=RUN_MARKERS[run_index % len(RUN_MARKERS)], linewidth=1.5,
            )  # fmt: skip
    ax.set_xlim(0, ax.get_xlim()[1] * 1.05)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    ax.set_xlabel("throughput, all requests per second (median of repeats)")
    ax.set_ylabel("Redis commands per second")
    ax.grid(True, alpha=0.3)
    ax.set_title(
        "Redis commands/s vs throughput (each point: one shared configuration)", fontsize=10
    )
    fig.tight_layout(rect=(0, _legend(fig, runs, mode_keys), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def rtt_of(store: str) -> float:
    """The RTT of a key's store text: NaN for `direct`, else the link's ms (proxy, netem)."""
    parts = store.split()
    return float(parts[1]) if len(parts) == 3 and parts[0] in DISTANT else math.nan


def distance_keys(keys: Sequence[Key]) -> list[Key]:
    """The keys of the store-distance axis: every store setting of a (mode, replicas, load,
    algorithm, quota, padding) that was measured through the proxy too."""
    proxied = {(k[0], k[1], k[2], k[3], k[5], k[6]) for k in keys if k[4] != "direct"}
    chosen = [k for k in keys if (k[0], k[1], k[2], k[3], k[5], k[6]) in proxied]
    # Redis uncapped and tokens unpadded where the run has those: one line per mode
    plain = [k for k in chosen if k[5] == "uncapped" and not k[6]]
    return plain or chosen


def chart_distance(runs: Sequence[Run], keys: Sequence[Key], path: Path) -> bool:
    """Read p50 against the store's round trip (direct drawn left of 0 ms), colour per mode,
    style per run; False (nothing drawn) when no shared configuration went through the
    proxy."""
    chosen = distance_keys(keys)
    if not chosen:
        return False
    mode_keys = list(dict.fromkeys(k[0] for k in chosen))
    fig, ax = plt.subplots(figsize=(9, 5.4))
    ticks: set[float] = set()
    for run_index, run in enumerate(runs):
        lines: dict[tuple[Any, ...], list[Key]] = {}
        for k in chosen:
            lines.setdefault((k[0], k[1], k[2], k[3], k[5], k[6]), []).append(k)
        for line_keys in lines.values():
            points = sorted(
                ((-0.6 if math.isnan(rtt_of(k[4])) else rtt_of(k[4]), k) for k in line_keys),
                key=lambda p: p[0],
            )
            xs = [x for x, _ in points]
            ticks.update(xs)
            spreads = [spread([_P50.read(r) for r in run.configs[k]]) for _, k in points]
            ys = [s.median / 1000 for s in spreads]
            low = [y - s.low / 1000 if s.n > 1 else 0.0 for y, s in zip(ys, spreads, strict=True)]
            high = [s.high / 1000 - y if s.n > 1 else 0.0 for y, s in zip(ys, spreads, strict=True)]
            ax.errorbar(
                xs, ys, yerr=[low, high], color=modes.color(line_keys[0][0]),
                linestyle=RUN_STYLES[run_index % len(RUN_STYLES)],
                marker=RUN_MARKERS[run_index % len(RUN_MARKERS)], capsize=3, linewidth=1.6,
            )  # fmt: skip
    ax.set_xticks(sorted(ticks))
    ax.set_xticklabels(["direct" if t < 0 else f"{t:g}" for t in sorted(ticks)])
    ax.set_xlabel("round trip added to the store (ms)")
    ax.set_ylabel("read p50, ms (median; bars: min-max of repeats)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    ax.grid(True, alpha=0.3)
    ax.set_title("Read p50 vs the store's round trip, per run", fontsize=10)
    fig.tight_layout(rect=(0, _legend(fig, runs, mode_keys), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# --- the folder ------------------------------------------------------------------------
def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return ""
    digits = 0 if abs(value) >= 100 or unit == "µs" else (2 if abs(value) < 10 else 1)
    return f"{value:,.{digits}f}"


def _spread_text(s: Spread, unit: str) -> str:
    if s.n == 0:
        return "n/a"
    if s.n == 1:
        return f"{_fmt(s.median, unit)} (1)"
    return f"{_fmt(s.median, unit)} ({_fmt(s.low, unit)}-{_fmt(s.high, unit)}, {s.n})"


def write_csv(path: Path, runs: Sequence[Run], diffs: Sequence[Difference]) -> None:
    columns = ["mode", "replicas", "load", "jwt_alg", "store", "redis_cpus", "token_bytes",
               "figure", "unit", "run", "repeats", "median", "min", "max", "stdev",
               "diff_from_first", "diff_pct", "verdict", "chance_if_equal"]  # fmt: skip
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for d in diffs:
            for index, (run, s) in enumerate(zip(runs, d.spreads, strict=True)):
                cells: list[Any] = [*d.key, d.figure.key, d.figure.unit, run.name, s.n]
                cells += [
                    "" if math.isnan(v) else round(v, 3) for v in (s.median, s.low, s.high, s.stdev)
                ]
                if index == 0:
                    cells += ["", "", "baseline", ""]
                else:
                    cells += [
                        "" if math.isnan(d.diff(index)) else round(d.diff(index), 3),
                        "" if math.isnan(d.diff_pct(index)) else round(d.diff_pct(index), 1),
                        d.verdict(index),
                        "" if math.isnan(d.chance(index)) else round(d.chance(index), 3),
                    ]
                writer.writerow(cells)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.table-wrap{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.8em}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f4f4f4} td.t{text-align:left} td.beyond{background:#fff4e0;font-weight:bold}
img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
"""


def _difference_table(runs: Sequence[Run], diffs: Sequence[Difference], figure: Figure) -> str:
    head = ["configuration", *(f"{run.name}" for run in runs)]
    head += [f"{run.name} - {runs[0].name}" for run in runs[1:]]
    rows = []
    for d in diffs:
        if d.figure is not figure:
            continue
        cells = [f'<td class="t">{html.escape(key_text(d.key))}</td>']
        cells += [f"<td>{html.escape(_spread_text(s, figure.unit))}</td>" for s in d.spreads]
        for index in range(1, len(runs)):
            verdict = d.verdict(index)
            pct = d.diff_pct(index)
            text = (
                f"{_fmt(d.diff(index), figure.unit)}"
                + ("" if math.isnan(pct) else f" ({pct:+.0f}%)")
                + f", {verdict}"
                + ("" if math.isnan(d.chance(index)) else f" (chance {d.chance(index):.2g})")
            )
            css = ' class="beyond"' if verdict == "beyond spread" else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f"<div class='table-wrap'><table><tr>{header}</tr>{''.join(rows)}</table></div>"


def _matrix(run: Run) -> Any:
    return run.manifest.get("settings", {}).get("matrix", {})


def render(out_dir: Path) -> Path:
    """Draw a compare folder's charts, compare.csv and report.html from its manifest's
    runs (their own files are the only input); return the report."""
    out_dir = Path(out_dir)
    manifest: dict[str, Any] = json.loads((out_dir / "manifest.json").read_text())
    runs = [Run.load((out_dir / p).resolve()) for p in manifest["runs"]]
    keys = shared_keys(runs)
    diffs = differences(runs, keys)
    write_csv(out_dir / "compare.csv", runs, diffs)
    # the replica charts over the cells at Redis direct; the distance axis has its own
    direct = [k for k in keys if k[4] == "direct"] or list(keys)
    chart_throughput(runs, direct, out_dir / "compare_throughput.png")
    chart_latency(runs, direct, out_dir / "compare_latency.png")
    chart_redis(runs, keys, out_dir / "compare_redis.png")
    charts = list(CHARTS)
    if chart_distance(runs, keys, out_dir / "compare_distance.png"):
        charts.append(DISTANCE_CHART)

    only = []
    for run in runs:
        extra = sorted(set(run.configs) - set(keys), key=lambda k: (modes.rank(k[0]), k[1:]))
        if extra:
            only.append(f"only in {run.name}: " + "; ".join(key_text(k) for k in extra))
    coarse = [run.name for run in runs if ms_resolution(run.rows)]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>authbench compare {html.escape(str(manifest.get('run_id', '')))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{len(runs)} bench runs compared</h1>",
        "<h2>Runs</h2><ul>",
        *(
            f"<li><b>{html.escape(run.name)}</b> ({'baseline, ' if i == 0 else ''}line style "
            f"{html.escape(str(RUN_STYLES[i % len(RUN_STYLES)]))}, marker "
            f"{RUN_MARKERS[i % len(RUN_MARKERS)]}): "
            f"<a href='{html.escape(p)}/report.html'>{html.escape(p)}</a>, started "
            f"{html.escape(str(run.manifest.get('started_utc', '?')))}, "
            f"{len(run.rows)} cells, matrix "
            f"<code>{html.escape(json.dumps(_matrix(run)))}</code></li>"
            for i, (run, p) in enumerate(zip(runs, manifest["runs"], strict=True))
        ),
        "</ul>",
        f"<p>Compared: the {len(keys)} configuration(s) every run measured. "
        + html.escape(" ".join(s + "." for s in only))
        + "</p>",
        "<h2>What differs besides the matrix</h2><ul>",
        *(
            f"<li>{html.escape(line)}</li>"
            for line in setting_differences(runs) or ["nothing recorded"]
        ),
        "</ul>",
    ]
    if coarse:
        parts.append(
            f"<p>Read latency of {html.escape(', '.join(coarse))} comes from Locust's 1-ms "
            "buckets (those runs predate the µs HdrHistograms): differences below about 1 ms "
            "are rounding there.</p>"
        )
    parts.append(
        "<h2>Charts</h2><p>Colour: mode; line style and marker: run. Bars: min-max over a "
        "run's repeats (none for a single repeat). Runs are drawn side by side at each "
        "replica count.</p>"
    )
    for name, title in charts:
        data = base64.b64encode((out_dir / name).read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(title)}</h3><p><a href='{name}'>{name}</a></p>"
            f"<img alt='{html.escape(title)}' data-file='{name}' "
            f"src='data:image/png;base64,{data}'>"
        )
    parts.append(
        "<h2>Differences</h2><p>Each cell: median (min-max, repeats) per run; then each run "
        f"minus the first ({html.escape(runs[0].name)}), with a verdict: <b>beyond spread</b> "
        "when the two runs' min-max ranges do not overlap (highlighted), <b>within spread</b> "
        "when they do, <b>one repeat</b> when a run has a single repeat, so its spread is "
        "unknown and the difference may be noise. <i>chance</i>: how often two runs of the "
        "same system would still land beyond spread with these repeat counts (1/3 with 2 "
        "repeats each, 1/10 with 3): few repeats make a weak verdict. More figures in "
        "<a href='compare.csv'>compare.csv</a>.</p>"
    )
    for figure in FIGURES:
        if figure.headline:
            parts.append(f"<h3>{html.escape(figure.label)} ({html.escape(figure.unit)})</h3>")
            parts.append(_difference_table(runs, diffs, figure))
    parts += [
        "<details><summary>Manifest</summary>",
        f"<pre>{html.escape(json.dumps(manifest, indent=2))}</pre></details>",
        "</body></html>",
    ]
    out = out_dir / "report.html"
    out.write_text("\n".join(parts))
    return out


def compare(run_dirs: Sequence[Path], results_dir: Path, run_id: str = "") -> Path:
    """Compare bench runs into `results_dir/compare-<time>/`; return its report.html.

    ValueError (NoOverlap among them) before anything is written when the runs cannot be
    compared."""
    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two runs")
    resolved = [Path(d).resolve() for d in run_dirs]
    twice = sorted({str(d) for d in resolved if resolved.count(d) > 1})
    if twice:
        raise ValueError(f"the same run given twice: {', '.join(twice)}")
    runs = [Run.load(Path(d)) for d in run_dirs]
    shared_keys(runs)  # refuse before writing anything
    run_id = run_id or new_run_id("compare")
    out_dir = Path(results_dir) / run_id
    out_dir.mkdir(parents=True, exist_ok=False)
    manifest = run_head("compare", run_id)
    manifest["runs"] = [os.path.relpath(Path(d).resolve(), out_dir.resolve()) for d in run_dirs]
    manifest["run_ids"] = [run.name for run in runs]
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return render(out_dir)
