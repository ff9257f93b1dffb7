"""What the model reads of a bench run: one measured cell per summary.csv row.

`read_cells` is the one place that knows the file: it reads summary.csv by column name
until the harness's typed result row exists, then it becomes a mapping from that row.
Columns a run predates (the store-distance and store-capacity axes) read as their
defaults: no added RTT, an uncapped Redis.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class MeasuredCell:
    """One cell's measured figures, in SI units (seconds, fractions of one core)."""

    cell_id: str
    mode: str
    replicas: int
    users: int
    repeat: int
    closed_loop: bool  # True: users send back to back (no pacing)
    offered_rps: float  # users x rate for a paced load, 0 for closed loop
    rps: float  # all requests per second (logins, refreshes and logouts included)
    p50_s: float
    read_p50_s: float  # authenticated reads only: the µs histogram's p50 when the run has one
    redis_ops_s: float
    cpu_cores: dict[str, float]  # component -> cores used (1.0 = one full core)
    replica_cores: tuple[float, ...]  # each replica's cores
    store_rtt_s: float
    store_link: str  # "direct", or "proxy" (the delay proxy in the path, even at 0 ms)
    redis_cpus: float | None  # CPU quota of redis-server in cores, None when uncapped
    flags: tuple[str, ...]
    error: str

    @property
    def usable(self) -> bool:
        """Measured at all, with a throughput to divide by."""
        return not self.error and self.rps > 0


def _float(row: dict[str, str], name: str, default: float = 0.0) -> float:
    text = (row.get(name) or "").strip()
    try:
        value = float(text)
    except ValueError:
        return default
    return default if math.isnan(value) else value


def _cell(row: dict[str, str], manifest: dict[str, Any]) -> MeasuredCell:
    load = row.get("load", "")
    # Every process the bench samples has a cpu_<name>_pct column (a store-delay proxy too,
    # once a run has one); Redis's own INFO figure is preferred to its process sample.
    cores = {
        name[len("cpu_") : -len("_pct")]: _float(row, name) / 100.0
        for name in row
        if name.startswith("cpu_") and name.endswith("_pct") and name != "cpu_each_replica_pct"
    }
    cores["redis"] = _float(row, "redis_cpu_pct", cores.get("redis", 0.0) * 100.0) / 100.0
    each = tuple(
        float(x) / 100.0 for x in (row.get("cpu_each_replica_pct") or "").split(";") if x.strip()
    )
    cap = _float(row, "redis_cpus", 0.0)
    settings = manifest.get("settings", {})
    rtt_ms = _float(row, "store_rtt_ms", float(settings.get("store_rtt_ms", 0.0) or 0.0))
    return MeasuredCell(
        cell_id=row.get("cell_id", ""),
        mode=row.get("mode", ""),
        replicas=int(_float(row, "replicas", 1)),
        users=int(_float(row, "users")),
        repeat=int(_float(row, "repeat", 1)),
        closed_loop="@" not in load and _float(row, "offered_rps") == 0.0,
        offered_rps=_float(row, "offered_rps"),
        rps=_float(row, "rps"),
        p50_s=_float(row, "p50_ms") / 1000.0,
        read_p50_s=_float(row, "read_p50_us", _float(row, "read_p50_ms", math.nan) * 1000.0) / 1e6,
        redis_ops_s=_float(row, "redis_ops_s"),
        cpu_cores=cores,
        replica_cores=each,
        store_rtt_s=rtt_ms / 1000.0,
        store_link=(row.get("store_link") or "direct").strip() or "direct",
        redis_cpus=cap if cap > 0 else None,
        flags=tuple(f for f in (row.get("flags") or "").split(";") if f),
        error=(row.get("error") or "").strip(),
    )


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest.json ({} when it has none)."""
    path = run_dir / "manifest.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def read_cells(run_dir: Path) -> list[MeasuredCell]:
    """Every row of `run_dir/summary.csv` as a MeasuredCell (raises OSError if missing)."""
    manifest = read_manifest(run_dir)
    with (run_dir / "summary.csv").open(newline="") as handle:
        return [_cell(row, manifest) for row in csv.DictReader(handle)]
