"""projection.png: the model's lines, with the measured cells drawn over them."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt

from authbench import modes
from authbench.model.capacity import FLAG_PCT, Model, Validation


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
    """Closed-loop cells here (Redis direct): measured points over the model's lines, one
    line per mode and Redis cap (solid uncapped, dashed capped)."""
    cells = [
        v
        for v in model.validations
        if v.method == "exact MVA" and v.store_rtt_ms == 0 and v.closed_loop
    ]
    if not cells:
        ax.text(0.5, 0.5, "no closed-loop cell in these runs", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    replicas = sorted({v.replicas for v in cells})
    slots = range(len(replicas))  # replica counts evenly spaced, whatever their values
    caps = sorted({v.redis_cpus for v in cells}, key=lambda c: -1.0 if c is None else c)
    names = [m for m in _modes(model) if any(v.mode == m for v in cells)]
    label_order = len(cells) <= 12  # beyond that, run-order labels would hide the points
    for index, mode in enumerate(names):
        dodge = (index - (len(names) - 1) / 2) * 0.1  # modes side by side at each count
        for cap in caps:
            mine = [v for v in cells if v.mode == mode and v.redis_cpus == cap]
            if not mine:
                continue
            x_model = statistics.median(v.predicted_rps for v in mine)
            ends = [-0.3, len(replicas) - 0.7]
            ax.plot(ends, [x_model] * 2, "-" if cap is None else "--", color=_color(mode))
            if cap is None:
                ax.fill_between(
                    ends,
                    x_model * (1 - FLAG_PCT / 100),
                    x_model * (1 + FLAG_PCT / 100),
                    color=_color(mode),
                    alpha=0.08,
                )
            xs = [replicas.index(v.replicas) + dodge for v in mine]
            ax.plot(
                xs,
                [v.measured_rps for v in mine],
                "o" if cap is None else "s",
                color=_color(mode),
                linestyle="none",
            )
            for x, v in zip(xs, mine if label_order else [], strict=False):
                if v.schedule_position is not None:
                    ax.annotate(
                        f"#{v.schedule_position}",
                        (x, v.measured_rps),
                        xytext=(5, 0),
                        textcoords="offset points",
                        fontsize=7,
                        color=_color(mode),
                        va="center",
                    )
    # One legend entry per colour and per style, not per combination.
    for mode in names:
        ax.plot([], [], "o", color=_color(mode), label=mode)
    ax.plot([], [], "-", color="black", label="model, Redis uncapped")
    ax.plot([], [], "o", color="black", label="measured, uncapped")
    for cap in (c for c in caps if c is not None):
        ax.plot([], [], "--", color="black", label=f"model, Redis {cap:g} core")
        ax.plot([], [], "s", color="black", label=f"measured, {cap:g} core")
    ax.set_xticks(list(slots), labels=[str(r) for r in replicas])
    ax.set_xlim(-0.5, len(replicas) - 0.5)
    order = "; #n: the order cells ran" if label_order else ""
    ax.set_xlabel(f"replicas (all on this machine's shared cores){order}")
    ax.set_ylabel("throughput, req/s")
    ax.set_ylim(bottom=0, top=max(max(v.measured_rps, v.predicted_rps) for v in cells) * 1.45)
    ax.set_title(
        f"This machine, closed loop: measured vs model ({model.cores_here} shared cores, "
        f"band ±{FLAG_PCT:g}%)",
        fontsize=10,
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper center", ncol=3)


KINDS = ("closed loop", "capped Redis", "paced (bound)", "distance latency")


def _kind(v: Validation) -> str:
    if v.redis_cpus is not None:
        return "capped Redis"
    return "closed loop" if v.closed_loop else "paced (bound)"


def _error_panel(model: Model, ax: Any) -> None:
    """Every prediction's error in %, by kind: throughput and latency alike."""
    points = [(_kind(v), v.mode, v.error_pct) for v in model.validations]
    points += [("distance latency", c.mode, c.error_pct) for c in model.latency_checks]
    if not points:
        ax.text(0.5, 0.5, "no measured cell to validate", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    kinds = [k for k in KINDS if any(p[0] == k for p in points)]
    ax.axhspan(-FLAG_PCT, FLAG_PCT, color="grey", alpha=0.15, label=f"within ±{FLAG_PCT:g}%")
    ax.axhline(0, color="black", linewidth=0.8)
    for i, kind in enumerate(kinds):
        mine = [p for p in points if p[0] == kind]
        for j, (_, mode, err) in enumerate(mine):
            # Spread a kind's points across its slot, in the order they were listed.
            x = i + (j + 0.5) / len(mine) * 0.8 - 0.4
            ax.plot(x, err, "o", color=_color(mode))
    for mode in sorted({p[1] for p in points}, key=lambda m: (modes.rank(m), m)):
        ax.plot([], [], "o", color=_color(mode), label=mode)  # legend entries in mode order
    flagged = sum(abs(p[2]) > FLAG_PCT for p in points)
    ax.set_xticks(
        range(len(kinds)), labels=[f"{k}\n({sum(p[0] == k for p in points)})" for k in kinds]
    )
    ax.set_xlim(-0.6, len(kinds) - 0.4)
    ax.set_ylabel("error of the prediction, % of measured")
    ax.set_title(
        f"Every prediction's error: {flagged} of {len(points)} beyond ±{FLAG_PCT:g}%", fontsize=10
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="best")


def draw(model: Model, path: Path) -> Path:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.5))
    _projection_panels(model, axes[0][0], axes[0][1])
    _machine_panel(model, axes[1][0])
    _error_panel(model, axes[1][1])
    fig.suptitle(
        "Capacity model: projected beyond this machine (top), checked against it (bottom)",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
