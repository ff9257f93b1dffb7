"""What the model reads of a bench run: one measured cell per summary.csv row.

`read_cells` is the one place that knows the file: it reads it through the harness's typed
result row (`authbench.bench.summary.SummaryRow`) and maps each row to the SI units the
model uses. Columns a run predates (the store-distance and store-capacity axes) read as
their defaults: the store direct, no added RTT, an uncapped Redis.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authbench.bench.axes import DIRECT
from authbench.bench.summary import COLUMNS, SummaryRow, read_summary


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
    store_ping_s: float  # the store's PING over the services' path, measured (NaN: none)
    store_link: str  # DIRECT, "proxy" or "netem" (a link in the path, even at 0 ms)
    redis_cpus: float | None  # CPU quota of redis-server in cores, None when uncapped
    pinned: tuple[int, int] | None  # --pin: (generator's CPUs, the system's CPUs), counted
    flags: tuple[str, ...]
    error: str

    @property
    def usable(self) -> bool:
        """Measured at all, with a throughput to divide by."""
        return not self.error and self.rps > 0


def _number(row: SummaryRow, name: str, default: float = math.nan) -> float:
    """A numeric column, `default` when it is empty or the schema has no such column yet."""
    if name not in COLUMNS:
        return default
    value = row.number(name)
    return default if math.isnan(value) else value


def _cell(row: SummaryRow) -> MeasuredCell:
    # Every process the bench samples has a cpu_<name>_pct column (the store-delay proxy
    # too); Redis's own INFO figure is preferred to its process sample.
    measured = {
        name[len("cpu_") : -len("_pct")]: _number(row, name)
        for name in COLUMNS
        if name.startswith("cpu_") and name.endswith("_pct") and name != "cpu_each_replica_pct"
    }
    # A process the cell did not have (no proxy on a direct cell) is no component of it.
    cores = {name: pct / 100.0 for name, pct in measured.items() if not math.isnan(pct)}
    cores["redis"] = _number(row, "redis_cpu_pct", cores.get("redis", 0.0) * 100.0) / 100.0
    each = tuple(float(x) / 100.0 for x in row.cpu_each_replica_pct.split(";") if x.strip())
    cap = _number(row, "redis_cpus", 0.0)
    link = str(getattr(row, "store_link", "") or DIRECT)
    read_p50_us = _number(row, "read_p50_us", _number(row, "read_p50_ms") * 1000.0)
    return MeasuredCell(
        cell_id=row.cell_id,
        mode=row.mode,
        replicas=row.replicas,
        users=row.users,
        repeat=row.repeat,
        closed_loop="@" not in row.load and _number(row, "offered_rps", 0.0) == 0.0,
        offered_rps=_number(row, "offered_rps", 0.0),
        rps=_number(row, "rps", 0.0),
        p50_s=_number(row, "p50_ms") / 1000.0,
        read_p50_s=read_p50_us / 1e6,
        redis_ops_s=_number(row, "redis_ops_s", 0.0),
        cpu_cores=cores,
        replica_cores=each,
        store_rtt_s=_number(row, "store_rtt_ms", 0.0) / 1000.0,
        store_ping_s=_number(row, "store_ping_us") / 1e6,
        store_link=link,
        redis_cpus=cap if cap > 0 else None,
        pinned=_placement(str(getattr(row, "pinned", ""))),
        flags=tuple(f for f in row.flags.split(";") if f),
        error=row.error.strip(),
    )


def _placement(text: str) -> tuple[int, int] | None:
    """`loadgen:1 system:0` (the row's `pinned`) as CPU counts; None when not pinned."""
    parts = dict(p.split(":", 1) for p in text.split() if ":" in p)
    if "loadgen" not in parts or "system" not in parts:
        return None
    return len(parts["loadgen"].split(",")), len(parts["system"].split(","))


def _check_axes(manifest: dict[str, Any], run_dir: Path) -> None:
    """A run whose matrix varies a store axis needs that axis's column in the schema:
    otherwise capped or distant cells would read as plain ones and corrupt the fit."""
    matrix = manifest.get("settings", {}).get("matrix", {})
    parts = [matrix, *matrix.get("also", [])]
    capped = any(v != "none" for p in parts for v in p.get("redis_cpus", []))
    distant = any(v != DIRECT for p in parts for v in p.get("store_rtt_ms", []))
    needed = [("redis_cpus", capped), ("store_link", distant), ("store_rtt_ms", distant)]
    for column, used in needed:
        if used and column not in COLUMNS:
            raise ValueError(
                f"{run_dir}: the run varies {column}, which SummaryRow has no "
                "column for; the model cannot tell those cells apart"
            )


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest.json ({} when it has none)."""
    path = run_dir / "manifest.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def read_cells(run_dir: Path) -> list[MeasuredCell]:
    """Every row of `run_dir/summary.csv`, read through the typed result row, as a
    MeasuredCell (raises OSError if the file is missing)."""
    manifest = read_manifest(run_dir)
    _check_axes(manifest, run_dir)
    return [_cell(row) for row in read_summary(run_dir / "summary.csv")]
