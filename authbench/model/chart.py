"""projection.png: the model's lines, with the measured cells drawn over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt

from authbench import modes
from authbench.model.capacity import FLAG_PCT, ModeDemands, Model, Validation, machine_stations
from authbench.model.mva import solve_closed


def _color(mode: str) -> str:
    return modes.color(mode)  # the registry's colour, so every chart agrees


def _modes(model: Model) -> list[str]:
    return sorted(model.fitted, key=lambda m: (modes.rank(m), m))


def _projection_panels(model: Model, ax_x: Any, ax_r: Any) -> None:
    for mode in _modes(model):
        for rtt, style in ((0.0, "-"), (0.001, "--")):
            pts = [p for p in model.projections if p.mode == mode and p.rtt_s == rtt]
            xs = [p.replicas for p in pts]
            label = f"{mode}, RTT {rtt * 1000:g} ms"
            ax_x.plot(xs, [p.mva.throughput for p in pts], style, color=_color(mode), label=label)
            ax_r.plot(
                xs, [p.mva.response_s * 1000 for p in pts], style, color=_color(mode), label=label
            )
    ceilings = sorted(
        (s for s in model.saturations if s.rtt_ms == 0), key=lambda s: -s.redis_ceiling_rps
    )
    for i, s in enumerate(ceilings):
        ax_x.axhline(s.redis_ceiling_rps, color=_color(s.mode), linestyle=":", linewidth=1)
        # The highest ceiling labelled above its line, the next below its own: never stacked.
        ax_x.annotate(
            f"one Redis core, {s.mode}: {s.redis_ceiling_rps / 1000:.0f}k req/s",
            (1, s.redis_ceiling_rps),
            xytext=(0, 4 if i % 2 == 0 else -4),
            textcoords="offset points",
            fontsize=7,
            color=_color(s.mode),
            va="bottom" if i % 2 == 0 else "top",
        )
    w = model.workload
    for ax in (ax_x, ax_r):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8, 16, 32, 64], labels=["1", "2", "4", "8", "16", "32", "64"])
        ax.set_xlabel("replicas (one core each)")
        ax.grid(alpha=0.3)
    ax_x.set_yscale("log")
    ax_x.set_ylabel("throughput, req/s (log)")
    ax_x.set_title("Model only: throughput, one Redis core", fontsize=10)
    ax_r.set_ylabel("mean latency, ms")
    ax_r.set_title(
        f"Model only: mean latency ({w.users_per_replica} users/replica, "
        f"think {w.think_s * 1000:g} ms)",
        fontsize=10,
    )
    ax_x.legend(fontsize=7, loc="lower right")
    ax_r.legend(fontsize=7, loc="upper left")


def _machine_panel(model: Model, ax: Any) -> None:
    """Closed-loop cells here (uncapped, no RTT): measured points over the model's line."""
    cells = [
        v
        for v in model.validations
        if v.method == "exact MVA" and v.redis_cpus is None and v.store_rtt_ms == 0
    ]
    replicas = sorted({v.replicas for v in cells}) or [1]
    for index, mode in enumerate(_modes(model)):
        mine = [v for v in cells if v.mode == mode]
        if not mine:
            continue
        users = mine[0].users
        fitted: ModeDemands = model.fitted[mode]
        stations = machine_stations(fitted, model.cores_here, None, 0.0)
        x_model = solve_closed(stations, users).throughput
        ax.plot(
            replicas, [x_model] * len(replicas), "-", color=_color(mode), label=f"{mode}: model"
        )
        ax.fill_between(
            replicas,
            x_model * (1 - FLAG_PCT / 100),
            x_model * (1 + FLAG_PCT / 100),
            color=_color(mode),
            alpha=0.08,
        )
        ax.plot(
            [v.replicas for v in mine],
            [v.measured_rps for v in mine],
            "o",
            color=_color(mode),
            label=f"{mode}: measured",
        )
        for v in mine:
            if v.schedule_position is not None:
                ax.annotate(
                    f"#{v.schedule_position}",
                    (v.replicas, v.measured_rps),
                    # Alternate sides and heights per mode, so near points' labels never stack.
                    xytext=(6 if index % 2 == 0 else -18, 6 - 8 * index),
                    textcoords="offset points",
                    fontsize=7,
                    color=_color(mode),
                )
    ax.set_xticks(replicas)
    ax.set_xlabel("replicas (all on this machine's shared cores)")
    ax.set_ylabel("throughput, req/s")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"This machine, closed loop: measured vs model ({model.cores_here} shared cores, "
        f"band ±{FLAG_PCT:g}%; #n = order run)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)


def _kind(v: Validation) -> str:
    if v.redis_cpus is not None:
        return "capped Redis"
    return "closed loop" if v.closed_loop else "paced"


def _scatter_panel(model: Model, ax: Any) -> None:
    vals = model.validations
    if not vals:
        ax.text(0.5, 0.5, "no measured cell to validate", ha="center", transform=ax.transAxes)
        return
    top = max(max(v.measured_rps, v.predicted_rps) for v in vals) * 1.1
    ax.plot([0, top], [0, top], color="black", linewidth=0.8)
    ax.fill_between(
        [0, top],
        [0, top * (1 - FLAG_PCT / 100)],
        [0, top * (1 + FLAG_PCT / 100)],
        color="grey",
        alpha=0.15,
        label=f"±{FLAG_PCT:g}%",
    )
    for kind, marker in (("closed loop", "o"), ("paced", "^"), ("capped Redis", "s")):
        for mode in _modes(model):
            mine = [v for v in vals if v.mode == mode and _kind(v) == kind]
            if mine:
                ax.plot(
                    [v.predicted_rps for v in mine],
                    [v.measured_rps for v in mine],
                    marker,
                    color=_color(mode),
                    linestyle="none",
                    label=f"{mode}, {kind}",
                    markerfacecolor="none" if kind == "paced" else _color(mode),
                )
    flagged = sum(v.flagged for v in vals)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted req/s")
    ax.set_ylabel("measured req/s")
    ax.set_title(
        f"Every validated cell: {flagged} of {len(vals)} off by more than {FLAG_PCT:g}%",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2)


def draw(model: Model, path: Path) -> Path:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    _projection_panels(model, axes[0][0], axes[0][1])
    _machine_panel(model, axes[1][0])
    _scatter_panel(model, axes[1][1])
    fig.suptitle(
        "Capacity model: projected beyond this machine (top), checked against it (bottom)",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
