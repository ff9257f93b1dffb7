"""The spectrum: each mode's revocation window against what it costs the store per read.

Read from committed run folders only, nothing is measured here:

- bench runs (`authbench bench`): per cell, the Redis commands of the capture window
  (`cell.json`'s INFO commandstats delta, the harness's own INFO/PING left out) and the
  authenticated reads Locust made in it (`locust_histogram.json`, `GET /api/*`): **store
  calls per read**, all of the mode's Redis work divided by its reads, so a mode whose
  reads never touch Redis but that refreshes (jwt-short) pays its refreshes here. Run the
  bench with `--relogin-prob 0 --refresh-prob 0` so logins and random refreshes add
  nothing the mode does not need. Where the run has cells at `--store-rtt 1`, their read
  p50 is the second panel.
- revocation-window runs (`authbench revocation-window`): the measured p99 window per mode.
  A mode that never revoked there (pure JWTs) is placed at its token lifetime, JWT_TTL_S of
  the cell's deployment: it is revoked by expiry (jwt at its TTL, jwt-short at each TTL of
  the `--jwt-ttl` axis). That x is the setting, not a measurement, and the table says so.

It also draws jwt-short's price: **refresh cost per user-hour** against its revocation
window, one point per TTL. Refreshes per user per hour is the measured refresh rate of the
cell (refreshes / users / capture seconds) times 3600: arithmetic on a measured rate.
Redis commands per refresh are the cell's commands, less the same run's background rate (the
fewest commands/s of a cell without refreshes: e.g. key-store polling), over its refreshes
(its reads send none); auth CPU per refresh is the auth service's CPU over the window, less
the same run's lowest auth CPU in a cell without refreshes (its idle baseline), over the
refreshes.

Modes come from the registry (`authbench.modes`): a new mode appears as soon as a run
holds its cells, with its colour and label.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from authbench import modes
from authbench.bench import axes
from authbench.bench import revocation_window as rw
from authbench.bench.summary import READ_PREFIX, SummaryRow, read_summary

REFRESH_ENTRY = "POST /auth/refresh"
# Commands the harness itself sends to Redis inside the window (the sampler's INFO); every
# other command is the deployment's: reads, refreshes, and background work such as a
# replica's keepalive PINGs or the auth service's key-store polling.
HARNESS_COMMANDS = ("info",)
STORE_RTT_PANEL_MS = 1.0


@dataclass(frozen=True)
class CellCost:
    """What one bench cell says about a mode's store traffic and refreshes."""

    run: str
    cell_id: str
    mode: str
    ttl_s: int  # JWT_TTL_S of the cell's deployment
    users: int
    capture_s: float
    reads: int
    refreshes: int
    redis_commands: int
    cpu_auth_pct: float
    store_rtt_ms: float
    store_link: str
    read_p50_ms: float
    validate_at: str = "replica"  # where the credential was checked (--validate-at)

    @property
    def store_calls_per_read(self) -> float:
        return self.redis_commands / self.reads if self.reads else math.nan

    @property
    def refreshes_per_user_hour(self) -> float:
        if not self.users or self.capture_s <= 0:
            return math.nan
        return self.refreshes / self.users / self.capture_s * 3600.0


def _mode_commands(per_command: dict[str, int]) -> int:
    return sum(
        int(calls)
        for name, calls in per_command.items()
        if name.split("|", 1)[0].lower() not in HARNESS_COMMANDS
    )


def _ttl_of(cell: dict[str, Any], manifest: dict[str, Any]) -> int:
    """The access-token lifetime the cell's deployment ran with."""
    if cell.get("jwt_ttl_s"):
        return int(cell["jwt_ttl_s"])
    env = manifest.get("settings", {}).get("cluster_env", {}) or {}
    mode = modes.find(str(cell.get("mode", "")))
    settings = dict(mode.settings) if mode is not None else {}
    return int(env.get(modes.TTL_SETTING) or settings.get(modes.TTL_SETTING) or 0)


def read_cells(run_dir: Path) -> list[CellCost]:
    """Every measured cell of a bench run folder."""
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    rows: dict[str, SummaryRow] = {r.cell_id: r for r in read_summary(run_dir / "summary.csv")}
    out: list[CellCost] = []
    for cell_id, cell in manifest.get("cells", {}).items():
        row = rows.get(cell_id)
        cell_dir = run_dir / str(cell.get("dir", f"cells/{cell_id}"))
        if row is None or cell.get("error") or not (cell_dir / "cell.json").exists():
            continue
        details = json.loads((cell_dir / "cell.json").read_text())
        try:
            hist = json.loads((cell_dir / "locust_histogram.json").read_text())
        except (OSError, ValueError):
            continue
        entries: dict[str, Any] = hist.get("entries", {})
        reads = sum(int(e["num_requests"]) for n, e in entries.items() if n.startswith(READ_PREFIX))
        refreshes = int(entries.get(REFRESH_ENTRY, {}).get("num_requests", 0))
        out.append(
            CellCost(
                run=run_dir.name,
                cell_id=cell_id,
                mode=row.mode,
                ttl_s=_ttl_of(cell, manifest),
                users=row.users,
                capture_s=row.capture_s,
                reads=reads,
                refreshes=refreshes,
                redis_commands=_mode_commands(details.get("redis_per_command", {})),
                # unrounded (summary.csv keeps 0.1 %: too coarse for a few ms per refresh)
                cpu_auth_pct=float(details.get("cpu_pct", {}).get("auth", row.cpu_auth_pct)),
                store_rtt_ms=row.store_rtt_ms,
                store_link=row.store_link,
                read_p50_ms=row.read_p50_ms,
                validate_at=row.validate_at or "replica",  # empty: a run before the column
            )
        )
    return out


def placed(mode: str, validate_at: str) -> str:
    """The key of a mode at a validation placement: the mode's own at the replicas (the
    default, and every run before the placement axis), `MODE at gateway` elsewhere."""
    return mode if validate_at in ("", "replica") else f"{mode} at {validate_at}"


def read_windows(run_dirs: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """placed(mode, validate_at) -> its revocation-window summary (the last run given wins)."""
    found: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        for summary in rw.read_summary(run_dir):
            key = placed(str(summary["mode"]), str(summary.get("validate_at", "replica")))
            found[key] = {**summary, "run": run_dir.name}
    return found


@dataclass(frozen=True)
class Point:
    """One point of the spectrum: a mode (at one TTL where the TTL is its window)."""

    mode: str
    label: str
    window_s: float  # x
    window_basis: str  # "measured p99 (N logouts)" or "JWT_TTL_S (revoked by expiry)"
    store_calls_per_read: float  # y
    read_p50_ms_at_rtt1: float  # the second panel (NaN: no such cells)
    cells: int
    ttl_s: int
    validate_at: str = "replica"  # where the credential was checked (--validate-at)


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def points(cells: Sequence[CellCost], windows: dict[str, dict[str, Any]]) -> list[Point]:
    """One point per mode and validation placement (per TTL for modes revoked by expiry),
    medians over their cells."""
    out: list[Point] = []
    keys = sorted(
        {(c.mode, c.ttl_s, c.validate_at) for c in cells},
        key=lambda k: (modes.rank(k[0]), k[2] != "replica", k[2], k[1]),
    )
    for mode_key, ttl, place in keys:
        window = windows.get(placed(mode_key, place))
        measured = window is not None and window.get("verdict") != rw.NEVER
        mode = modes.find(mode_key)
        # Placed at its TTL only when a windows run saw it never revoke (never guessed).
        by_expiry = window is not None and not measured and mode is not None
        by_expiry = by_expiry and mode is not None and mode.login is modes.Login.JWT
        if measured:
            assert window is not None
            window_s = float(window["p99_ms"]) / 1000.0
            basis = f"measured p99 over {window['revoked']} logouts ({window['run']})"
        elif by_expiry and ttl > 0:
            window_s = float(ttl)
            basis = "JWT_TTL_S: revoked only by expiry (the setting, not measured here)"
        else:
            continue  # no window known for it: not placed rather than guessed
        mine = [
            c
            for c in cells
            if c.mode == mode_key and c.validate_at == place and (c.ttl_s == ttl or not by_expiry)
        ]
        direct = [c for c in mine if c.store_link not in axes.DISTANT]
        at_rtt1 = [c for c in mine if c.store_link in axes.DISTANT and c.store_rtt_ms == 1.0]
        label = modes.label(mode_key)
        if by_expiry and mode is not None and modes.TTL_SETTING in mode.deployment:
            label = f"{label} (TTL {ttl:g} s)"
        if place != "replica":
            label = f"{label}, at the {place}"
        out.append(
            Point(
                mode=mode_key,
                label=label,
                window_s=window_s,
                window_basis=basis,
                store_calls_per_read=round(
                    _median([c.store_calls_per_read for c in direct or mine]), 4
                ),
                read_p50_ms_at_rtt1=_median([c.read_p50_ms for c in at_rtt1]),
                cells=len(direct or mine),
                ttl_s=ttl,
                validate_at=place,
            )
        )
    # A mode measured in the windows run appears once even if its cells had several TTLs.
    unique: dict[tuple[str, str, float], Point] = {}
    for p in out:
        unique.setdefault((p.mode, p.validate_at, p.window_s), p)
    return list(unique.values())


@dataclass(frozen=True)
class RefreshCost:
    """jwt-short's price at one TTL."""

    mode: str
    ttl_s: int
    cells: int
    refreshes: int
    refreshes_per_user_hour: float
    redis_cmds_per_refresh: float
    auth_cpu_ms_per_refresh: float  # net of the run's idle auth baseline
    redis_cmds_per_user_hour: float
    auth_cpu_ms_per_user_hour: float
    capture_over_refresh_period: float  # how many refresh periods the capture spanned


def refresh_costs(cells: Sequence[CellCost]) -> list[RefreshCost]:
    """Per (mode, TTL) of the modes that refresh before expiry (their deployment sets the
    TTL: jwt-short); other modes' refreshes are the bench's --refresh-prob, not a price."""
    baseline: dict[str, float] = {}  # the auth service's idle CPU, per run
    background: dict[str, float] = {}  # Redis commands/s with no refresh and no store read
    for c in cells:
        if c.refreshes == 0 and not math.isnan(c.cpu_auth_pct):
            baseline[c.run] = min(baseline.get(c.run, math.inf), c.cpu_auth_pct)
        if c.refreshes == 0 and c.capture_s > 0:
            rate = c.redis_commands / c.capture_s
            background[c.run] = min(background.get(c.run, math.inf), rate)
    out: list[RefreshCost] = []
    keys = sorted({(c.mode, c.ttl_s) for c in cells if c.refreshes > 0})
    for mode_key, ttl in keys:
        mode = modes.find(mode_key)
        if mode is None or modes.TTL_SETTING not in mode.deployment:
            continue  # refreshes by chance (--refresh-prob), not the mode's own price
        mine = [c for c in cells if (c.mode, c.ttl_s) == (mode_key, ttl) and c.refreshes > 0]
        per_user_hour = _median([c.refreshes_per_user_hour for c in mine])
        cmds = _median(
            [
                max(0.0, c.redis_commands - background.get(c.run, 0.0) * c.capture_s) / c.refreshes
                for c in mine
            ]
        )
        cpu = _median(
            [
                max(0.0, c.cpu_auth_pct - baseline.get(c.run, 0.0)) / 100.0 * c.capture_s
                / c.refreshes * 1000.0
                for c in mine
            ]
        )  # fmt: skip
        period = _median([c.refreshes / c.users for c in mine if c.users])
        out.append(
            RefreshCost(
                mode=mode_key,
                ttl_s=ttl,
                cells=len(mine),
                refreshes=sum(c.refreshes for c in mine),
                refreshes_per_user_hour=round(per_user_hour, 1),
                redis_cmds_per_refresh=round(cmds, 2),
                auth_cpu_ms_per_refresh=round(cpu, 3),
                redis_cmds_per_user_hour=round(cmds * per_user_hour, 1),
                auth_cpu_ms_per_user_hour=round(cpu * per_user_hour, 1),
                capture_over_refresh_period=round(period, 1),
            )
        )
    return out


# --- drawing ---------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_spectrum(found: Sequence[Point], path: Path) -> None:
    plt = _plt()
    second = any(not math.isnan(p.read_p50_ms_at_rtt1) for p in found)
    fig, axes_ = plt.subplots(1, 2 if second else 1, figsize=(12 if second else 7.5, 4.8))
    panels = list(axes_) if second else [axes_]
    ys = [("store_calls_per_read", "Redis commands per authenticated read")]
    if second:
        ys.append(("read_p50_ms_at_rtt1", f"read p50 (ms) at --store-rtt {STORE_RTT_PANEL_MS:g}"))
    for ax, (attr, ylabel) in zip(panels, ys, strict=True):
        # Each label takes the first place (above, below, left-above, left-below) that no
        # close neighbour's label took, so points side by side keep readable labels.
        shown = [p for p in found if not math.isnan(getattr(p, attr))]
        span = max((getattr(p, attr) for p in shown), default=1.0) or 1.0
        # Several modes share y = 1 at windows of tens of ms: their labels are stacked in
        # rows of their own (a label spans about a decade of x), joined by a thin line.
        offsets = [(4, 8), (4, -16), (4, -28), (4, -40), (4, -52), (4, -64), (4, 20),
                   (4, -76), (-70, 8), (-70, -16)]  # fmt: skip
        taken: list[tuple[float, float, tuple[int, int]]] = []
        for p in sorted(shown, key=lambda p: p.window_s):
            y = getattr(p, attr)
            where = (math.log10(p.window_s), y / span)
            near = [o for (lx, ly, o) in taken
                    if abs(lx - where[0]) < 1.2 and abs(ly - where[1]) < 0.1]  # fmt: skip
            offset = next((o for o in offsets if o not in near), offsets[0])
            taken.append((*where, offset))
            hollow = "expiry" in p.window_basis
            ax.scatter(
                [p.window_s], [y], s=70, color=modes.color(p.mode),
                facecolors="none" if hollow else modes.color(p.mode), linewidths=2, zorder=3,
                marker="D" if p.validate_at != "replica" else "o",
            )  # fmt: skip
            far = abs(offset[1]) > 16
            ax.annotate(p.label, (p.window_s, y), textcoords="offset points",
                        xytext=offset, fontsize=8, va="center" if far else "baseline",
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#888888"}
                        if far else None)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("revocation window (s, log): logout to the last replica's 401, p99")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    panels[0].set_title(
        "The spectrum: staleness vs store work per read\n"
        "(filled: window measured; hollow: revoked only at expiry, x = JWT_TTL_S;\n"
        "diamond: validated at the gateway, which is asked; circle: at the replicas)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_refresh_cost(costs: Sequence[RefreshCost], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    right = ax.twinx()
    for mode_key in dict.fromkeys(c.mode for c in costs):
        mine = sorted((c for c in costs if c.mode == mode_key), key=lambda c: c.ttl_s)
        xs = [c.ttl_s for c in mine]
        name = modes.label(mode_key)
        ax.plot(
            xs, [c.redis_cmds_per_user_hour for c in mine], "o-",
            color=modes.color(mode_key), label=f"{name}: Redis commands",
        )  # fmt: skip
        right.plot(
            xs, [c.auth_cpu_ms_per_user_hour for c in mine], "s--",
            color="#555555", label=f"{name}: auth CPU ms",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    right.set_yscale("log")
    ax.set_xlabel("revocation window = access-token TTL (s, log)")
    ax.set_ylabel("Redis commands per user-hour (log)")
    right.set_ylabel("auth service CPU ms per user-hour (log)")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper right")
    ax.set_title(
        "Refresh cost per user-hour against the revocation window\n"
        "(measured refresh rate x 3600; per-refresh cost from the same cells)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- a spectrum folder -----------------------------------------------------------------
def _write_csv(path: Path, rows: Sequence[Any]) -> None:
    with path.open("w", newline="") as out:
        dicts = [asdict(r) for r in rows]
        writer = csv.DictWriter(out, fieldnames=list(dicts[0]) if dicts else ["empty"])
        writer.writeheader()
        for d in dicts:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v)
                             for k, v in d.items()})  # fmt: skip


def build(
    bench_dirs: Sequence[Path], window_dirs: Sequence[Path], out_dir: Path, head: dict[str, Any]
) -> Path:
    """Read the runs, write spectrum.csv/.png, refresh_cost.csv/.png, manifest, README."""
    cells = [c for d in bench_dirs for c in read_cells(d)]
    if not cells:
        raise ValueError("no measured bench cells in " + ", ".join(map(str, bench_dirs)))
    windows = read_windows(window_dirs)
    found = points(cells, windows)
    costs = refresh_costs(cells)
    out_dir.mkdir(parents=True, exist_ok=False)
    _write_csv(out_dir / "spectrum.csv", found)
    _write_csv(out_dir / "refresh_cost.csv", costs)
    draw_spectrum(found, out_dir / "spectrum.png")
    if costs:
        draw_refresh_cost(costs, out_dir / "refresh_cost.png")
    manifest = {
        **head,
        "inputs": {
            "bench": [str(d) for d in bench_dirs],
            "revocation_window": [str(d) for d in window_dirs],
        },
        "cells": [asdict(c) for c in cells],
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    (out_dir / "README.md").write_text(readme(found, costs, manifest))
    return out_dir


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}g}"


def readme(found: Sequence[Point], costs: Sequence[RefreshCost], manifest: dict[str, Any]) -> str:
    lines = [
        f"# Spectrum, {manifest.get('run_id', '')}",
        "",
        "Drawn from committed runs (nothing measured by this command):",
        "",
        "    " + rw.shown_command(manifest.get("command", [])),
        "",
        "Inputs: "
        + ", ".join(manifest["inputs"]["bench"] + manifest["inputs"]["revocation_window"]),
        "",
        "![spectrum](spectrum.png)",
        "",
        "| mode | revocation window | basis of the window | Redis commands per read | "
        "read p50 at rtt 1 ms | cells |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for p in found:
        window = f"{p.window_s * 1000:.3g} ms" if p.window_s < 1 else f"{p.window_s:g} s"
        lines.append(
            f"| {p.label} | {window} | {p.window_basis} | {_fmt(p.store_calls_per_read)} | "
            f"{_fmt(p.read_p50_ms_at_rtt1)} | {p.cells} |"
        )
    if costs:
        lines += [
            "",
            "## Refresh cost of short-lived tokens",
            "",
            "![refresh cost](refresh_cost.png)",
            "",
            "Per hour = the measured rate over the capture window x 3600 (arithmetic on a "
            "measured rate). `periods` = how many refresh periods the capture spanned per user "
            "(few periods: the rate is quantised by the users' phase).",
            "",
            "| mode | TTL s | refreshes | refreshes/user-hour | Redis cmds/refresh | "
            "auth CPU ms/refresh | Redis cmds/user-hour | auth CPU ms/user-hour | periods |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in costs:
            lines.append(
                f"| {modes.label(c.mode)} | {c.ttl_s} | {c.refreshes} | "
                f"{c.refreshes_per_user_hour:g} | {c.redis_cmds_per_refresh:g} | "
                f"{c.auth_cpu_ms_per_refresh:g} | {c.redis_cmds_per_user_hour:g} | "
                f"{c.auth_cpu_ms_per_user_hour:g} | {c.capture_over_refresh_period:g} |"
            )
    return "\n".join(lines) + "\n"
