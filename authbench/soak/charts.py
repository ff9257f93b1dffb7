"""The soak's charts: one PNG per series over time, the warm-up shaded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from authbench.soak.criteria import KEYS_PER_ACCOUNT, KEYS_PER_EVENT, events_within
from authbench.soak.sampling import ProcessReading, Sample

CHARTS = ("rss.png", "fds.png", "redis_memory.png", "keys.png")


def _axes(title: str, ylabel: str, warmup_s: float) -> tuple[Figure, Axes]:
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=90)
    ax.set_title(title)
    ax.set_xlabel("minutes since the load started")
    ax.set_ylabel(ylabel)
    ax.axvspan(0, warmup_s / 60, color="#dddddd", label="warm-up")
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Figure, ax: Axes, path: Path) -> None:
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _rss(reading: ProcessReading) -> float:
    return reading.rss_mb


def _fds(reading: ProcessReading) -> float:
    return float(reading.fds)


def draw_all(
    run_dir: Path,
    samples: Sequence[Sample],
    warmup_s: float,
    accounts: int,
    key_lifetime_s: float,
) -> list[Path]:
    minutes = [s.t_s / 60 for s in samples]
    names = sorted({n for s in samples for n in s.processes})
    out = []

    for filename, title, unit, value in (
        ("rss.png", "Resident memory per process", "MB", _rss),
        ("fds.png", "Open file descriptors per process", "descriptors", _fds),
    ):
        fig, ax = _axes(title, unit, warmup_s)
        for name in names:
            points = [(m, value(s.processes[name])) for m, s in zip(minutes, samples, strict=True)
                      if name in s.processes]  # fmt: skip
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=name)
        _save(fig, ax, run_dir / filename)
        out.append(run_dir / filename)

    with_redis = [(m, s) for m, s in zip(minutes, samples, strict=True) if s.redis is not None]
    fig, ax = _axes("Redis used_memory", "MB", warmup_s)
    ax.plot([m for m, _ in with_redis], [s.redis.used_memory_mb for _, s in with_redis if s.redis],
            marker=".", label="used_memory")  # fmt: skip
    _save(fig, ax, run_dir / "redis_memory.png")
    out.append(run_dir / "redis_memory.png")

    fig, ax = _axes("Redis keys per prefix", "keys", warmup_s)
    prefixes = sorted({p for _, s in with_redis if s.redis for p in s.redis.keys_by_prefix})
    for prefix in prefixes:
        ax.plot([m for m, _ in with_redis],
                [s.redis.keys_by_prefix.get(prefix, 0) for _, s in with_redis if s.redis],
                marker=".", label=prefix)  # fmt: skip
    ax.plot([m for m, _ in with_redis], [s.redis.keys_total for _, s in with_redis if s.redis],
            color="black", linewidth=2, label="all keys")  # fmt: skip
    bound = [KEYS_PER_ACCOUNT * accounts
             + KEYS_PER_EVENT * events_within(samples, s, key_lifetime_s)
             for _, s in with_redis]  # fmt: skip
    ax.plot([m for m, _ in with_redis], bound, color="red", linestyle="--",
            label="bound: live credentials")  # fmt: skip
    _save(fig, ax, run_dir / "keys.png")
    out.append(run_dir / "keys.png")
    return out
