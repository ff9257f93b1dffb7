"""The report's findings: plain sentences, each computed from the measurements.

One small function per finding. Each takes the `RunView` (the rows, the aggregated
configurations and the manifest, with the few selections every finding shares) and
returns its sentences (none when the run has nothing to say on it). `findings()` lists
them in the report's order; nothing here is typed in by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from authbench import modes
from authbench.bench.aggregate import (
    Config,
    cell_json,
    mode_validation,
    series_of,
    signs,
    stateless_jwt,
)
from authbench.bench.charts import short_name
from authbench.bench.statistics import bucket_quantile
from authbench.bench.summary import SummaryRow
from authbench.modes import Login

CPU_COLUMNS = (
    "cpu_redis_pct",
    "cpu_auth_pct",
    "cpu_gateway_pct",
    "cpu_replicas_pct",
    "cpu_loadgen_pct",
)


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


@dataclass
class RunView:
    """What the findings read, and the selections they share."""

    rows: Sequence[SummaryRow]
    configs: Sequence[Config]  # not empty
    manifest: dict[str, Any]
    run_dir: Path
    _cells: dict[str, dict[str, Any]] = field(default_factory=dict)

    @cached_property
    def top(self) -> int:
        """The most replicas measured."""
        return max(c.replicas for c in self.configs)

    @cached_property
    def low(self) -> int:
        return min(c.replicas for c in self.configs)

    @cached_property
    def load(self) -> str:
        """The load level the findings quote (the first)."""
        return sorted({c.load for c in self.configs})[0]

    @cached_property
    def primary(self) -> list[Config]:
        """One configuration per mode, replicas and load: the first JWT algorithm's."""
        matrix = self.manifest.get("settings", {}).get("matrix", {})
        algs = matrix.get("jwt_algs") or [self.configs[0].alg]
        return [c for c in self.configs if not signs(c.mode) or c.alg == algs[0]]

    @cached_property
    def at_low(self) -> list[Config]:
        """The primary configurations at the fewest replicas and the quoted load."""
        return [c for c in self.primary if c.replicas == self.low and c.load == self.load]

    @cached_property
    def at_top(self) -> dict[str, Config]:
        """Mode -> its configuration at the most replicas and the quoted load."""
        return {c.mode: c for c in self.primary if c.replicas == self.top and c.load == self.load}

    def cell(self, cell_id: str) -> dict[str, Any]:
        if cell_id not in self._cells:
            self._cells[cell_id] = cell_json(self.run_dir, cell_id)
        return self._cells[cell_id]


def redis_cost(run: RunView) -> list[str]:
    cost = [
        f"{mode} {_f(c.median('redis_cmds_per_req'), 2)} Redis commands per request "
        f"({_f(c.median('redis_ops_s'), 0)} ops/s) and {_f(c.median('redis_cpu_pct'))}% of a "
        "core in Redis"
        for mode, c in run.at_top.items()
    ]
    if not cost:
        return []
    return [f"At {run.top} replica(s) and load {run.load}: " + "; ".join(cost) + "."]


def top_redis_command(run: RunView) -> list[str]:
    tops = []
    for mode, c in run.at_top.items():
        name, share = c.top_command()
        if name:
            tops.append(f"{mode}: {name} ({_f(100 * share, 0)}% of its Redis commands)")
    if not tops:
        return []
    return ["The Redis command sent most, per mode: " + "; ".join(tops) + "."]


def read_latency(run: RunView) -> list[str]:
    lat = [
        f"{mode} {_f(c.read_percentile(0.5), 0)} / {_f(c.read_percentile(0.99), 0)} ms"
        for mode, c in run.at_top.items()
    ]
    if not lat:
        return []
    where = f"at {run.top} replica(s), load {run.load}"
    return [f"Read latency p50 / p99 {where}: " + ", ".join(lat) + "."]


def validation_time(run: RunView) -> list[str]:
    validation = mode_validation(run.configs)
    if not validation:
        return []
    parts = [
        f"{label} p50 {_f(bucket_quantile(b, 0.5) * 1e6, 0)} µs, p99 "
        f"{_f(bucket_quantile(b, 0.99) * 1e6, 0)} µs"
        for label, b in validation.items()
    ]
    out = ["Server-side, validating one credential took: " + "; ".join(parts) + "."]
    mode_of = {s.label: s.mode for s in series_of(run.configs)}
    session = next((b for lb, b in validation.items() if not signs(mode_of[lb])), None)
    jwt = next((b for lb, b in validation.items() if stateless_jwt(mode_of[lb])), None)
    if session and jwt:
        ratio = bucket_quantile(session, 0.5) / max(1e-9, bucket_quantile(jwt, 0.5))
        out.append(f"The median session check took {_f(ratio, 1)}x the median JWT check.")
    return out


def scaling(run: RunView) -> list[str]:
    """Per load level (a paced one says whether each mode kept up, a closed-loop one where
    its ceiling went): read throughput from the fewest replicas to the most."""
    if run.top <= run.low:
        return []
    out = []
    for load in sorted({c.load for c in run.primary}):
        scale = []
        for mode in dict.fromkeys(c.mode for c in run.primary):
            a, b = (
                next(
                    (
                        c
                        for c in run.primary
                        if c.mode == mode and c.replicas == n and c.load == load
                    ),
                    None,
                )
                for n in (run.low, run.top)
            )
            if a and b and a.median("read_rps") > 0:
                change = 100 * (b.median("read_rps") / a.median("read_rps") - 1)
                doubtful = any(r.flags for r in (*a.rows, *b.rows))
                scale.append(
                    f"{mode} {a.median('read_rps'):.0f} to {b.median('read_rps'):.0f} reads/s "
                    f"({change:+.0f}%{', a flagged cell' if doubtful else ''})"
                )
        if not scale:
            continue
        offered = max((c.median("offered_rps") for c in run.configs if c.load == load), default=0.0)
        note = (
            f" (every cell was offered {offered:.0f} reads/s: a flat line means the mode kept up)"
            if offered > 0
            else " (closed loop: each mode ran as fast as answers came back, its ceiling here)"
        )
        out.append(
            f"From {run.low} to {run.top} replicas at load {load}, read throughput went: "
            + ", ".join(scale)
            + note
            + "."
        )
    return out


def revocation(run: RunView) -> list[str]:
    meaning = {"401": "refused at once", "200": "still accepted"}
    said = []
    for mode in sorted({r.mode for r in run.rows}, key=modes.rank):
        statuses = sorted(
            {
                str(r.after_logout_status)
                for r in run.rows
                if r.mode == mode and r.after_logout_status
            }
        )
        if statuses:
            said.append(
                f"{mode}: " + ", ".join(f"{s} ({meaning.get(s, 'other')})" for s in statuses)
            )
    if not said:
        return []
    return [
        "Logout, measured after each cell (log in, log out, present the old credential "
        "again): " + "; ".join(said) + ". A stateless JWT stays valid until it "
        "expires; the denylist and sessions end it at once."
    ]


def _total_cpu(row: SummaryRow) -> float:
    return sum(0.0 if math.isnan(v) else v for v in map(row.number, CPU_COLUMNS))


def machine_share(run: RunView) -> list[str]:
    machine = run.manifest.get("machine", {})
    cpus = machine.get("logical_cpus") or 0
    busiest = max((r for r in run.rows if not r.error), key=_total_cpu, default=None)
    if busiest is None or not cpus:
        return []
    loads = [machine.get(k, [math.nan])[0] for k in ("loadavg_at_start", "loadavg_at_end")]
    return [
        f"The busiest cell ({short_name(busiest)}) used {_f(_total_cpu(busiest), 0)}% of one core "
        f"in total (the system under test plus the load generator), of the {100 * cpus}% "
        f"this {cpus}-CPU machine has; all replicas share those cores, so adding replicas "
        "here spreads the same CPU rather than adding any. The machine's load average was "
        f"{_f(loads[0])} at the start and {_f(loads[-1])} at the end (other work adds noise)."
    ]


def failure_reasons(run: RunView) -> list[str]:
    reasons: dict[str, int] = {}
    for row in run.rows:
        for reason, count in run.cell(row.cell_id).get("failure_reasons", {}).items():
            cause = reason.split(": ", 1)[-1]  # drop the request name: group by cause
            reasons[cause] = reasons.get(cause, 0) + int(count)
    if not reasons:
        return []
    common = sorted(reasons.items(), key=lambda item: -item[1])[:4]
    return [
        f"{sum(reasons.values())} requests failed in all; why, most frequent first: "
        + "; ".join(f"{reason} x{count}" for reason, count in common)
        + " (per cell: locust_failures.csv)."
    ]


def flagged_cells(run: RunView) -> list[str]:
    flagged = [r for r in run.rows if r.flags]
    if not flagged:
        return ["No cell was flagged: the generator kept up and was not saturated."]
    saturated = any("generator-saturated" in r.flags for r in flagged)
    return [
        f"{len(flagged)} of {len(run.rows)} cells are flagged (see the table): "
        + ", ".join(f"{r.cell_id}: {r.flags}" for r in flagged[:8])
        + (" ..." if len(flagged) > 8 else "")
        + ". Read their figures with care"
        + (" (a saturated generator: raise --processes)." if saturated else ".")
    ]


def seed_claims(run: RunView) -> list[str]:
    """The seed document's claims: the store on every request's path, revocation."""
    jwt = next((c for mode, c in run.at_top.items() if stateless_jwt(mode)), None)
    central = [c for mode, c in run.at_top.items() if _store_on_read(mode)]
    if jwt is None or not central:
        return []
    others = " and ".join(f"{c.mode} {_f(c.median('redis_cmds_per_req'), 2)}" for c in central)
    where = " and with ".join(modes.get(c.mode).store_role for c in central)
    denylist = any(modes.get(c.mode).login is Login.JWT for c in central)
    return [
        "The seed doc's claims, measured: stateless JWTs needed "
        f"{_f(jwt.median('redis_cmds_per_req'), 2)} Redis commands per request (only "
        f"logins, refreshes and logouts touch Redis), against {others}: with {where}, the "
        "central store is on every request's path."
        + (
            " Revocation, 'hard for JWTs', is bought back by the denylist at that "
            "per-request Redis cost."
            if denylist
            else ""
        )
    ]


def _store_on_read(mode: str) -> bool:
    record = modes.find(mode)
    return record is not None and record.store_on_read


FINDINGS: tuple[Callable[[RunView], list[str]], ...] = (
    redis_cost,
    top_redis_command,
    read_latency,
    validation_time,
    scaling,
    revocation,
    machine_share,
    failure_reasons,
    flagged_cells,
    seed_claims,
)


def findings(
    rows: Sequence[SummaryRow], configs: Sequence[Config], manifest: dict[str, Any], run_dir: Path
) -> list[str]:
    """Every finding's sentences, in the report's order."""
    if not configs:
        return ["No cell produced measurements; see the errors below."]
    run = RunView(rows, configs, manifest, run_dir)
    return [sentence for finding in FINDINGS for sentence in finding(run)]
