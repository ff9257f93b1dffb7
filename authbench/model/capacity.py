"""The capacity model: demands from measured cells, validation here, projection beyond.

1. Demands (utilisation law, D = U / X): for every measured cell, each component's CPU
   seconds per request, and Redis commands per request.
2. Fit: per mode, the median demand over the runs' reference cells (closed loop, uncapped
   Redis, no added store RTT; paced cells when a mode has no closed-loop cell).
3. Validation on this machine: every component shares the machine's cores, so the model is
   one multi-server CPU station (all demands together, `logical_cpus` servers), a capped
   Redis as a station of its own (demand / cap), and the store RTT as a delay. Closed-loop
   cells are solved with exact MVA at their user count; paced cells get the open-loop
   bound min(offered, 1 / D_max). Each prediction's error is reported; beyond
   `FLAG_PCT` it is flagged.
4. Projection: R replicas each on its own core, one Redis on its own core, the store RTT as
   a delay per Redis command, exact MVA at `users_per_replica` x R users.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from authbench import modes
from authbench.bench.axes import DIRECT
from authbench.model.mva import Bounds, MvaResult, Station, bounds, solve_closed
from authbench.model.rows import MeasuredCell, read_cells, read_manifest

FLAG_PCT = 15.0  # a prediction further off than this is flagged, never hidden
REPLICAS = tuple(range(1, 65))
RTTS_S = (0.0, 0.001)
SATURATED = 0.9  # Redis counts as saturated from this utilisation on
# A mode that sends no Redis command on a read still sends a few (logins, refreshes,
# logouts): GET stands for them.
OTHER_COMMAND = "GET"


def read_command(mode: str) -> str:
    """The Redis command one authenticated read of `mode` sends ("" for none), from the
    mode registry."""
    record = modes.find(mode)
    return record.read_command if record is not None else ""


def store_modes(names: Iterable[str]) -> list[str]:
    """Of `names`, the modes that put the central store on every read, in report order."""
    return sorted((n for n in names if read_command(n)), key=modes.rank)


@dataclass(frozen=True)
class CellDemands:
    """Service demands of one measured cell (seconds of CPU per request)."""

    cell: MeasuredCell
    run: str
    demand_s: dict[str, float]  # component -> CPU seconds per request
    redis_cmds_per_req: float

    @property
    def total_s(self) -> float:
        return sum(self.demand_s.values())


def demands_of(cell: MeasuredCell, run: str = "") -> CellDemands:
    """D_k = U_k / X for every component the cell sampled."""
    x = cell.rps
    return CellDemands(
        cell=cell,
        run=run,
        demand_s={name: cores / x for name, cores in sorted(cell.cpu_cores.items())},
        redis_cmds_per_req=cell.redis_ops_s / x,
    )


@dataclass(frozen=True)
class ModeDemands:
    """One mode's fitted demands: medians over its reference cells."""

    mode: str
    demand_s: dict[str, float]
    redis_cmds_per_req: float
    cells: tuple[str, ...]
    basis: str  # which cells: "closed-loop" or "paced"
    replica_range_s: tuple[float, float] = (math.nan, math.nan)  # min, max over the cells

    @property
    def total_s(self) -> float:
        return sum(self.demand_s.values())


def _reference(d: CellDemands) -> bool:
    """Measured with Redis uncapped and reached directly: the plain system."""
    c = d.cell
    direct = c.store_link == DIRECT and c.store_rtt_s == 0
    return c.usable and c.redis_cpus is None and direct


def _chosen(pool: Sequence[CellDemands]) -> tuple[list[CellDemands], str]:
    """The cells a mode's demands come from, best first: closed loop (demands at
    saturation) before paced, and cells without flags before flagged ones. A flag (the
    generator saturated, the pacing slipped, failures) says the cell is no clean ceiling;
    its CPU per request is still a measurement, so it is used when nothing else exists."""
    for closed, clean in ((True, True), (True, False), (False, True), (False, False)):
        cells = [d for d in pool if d.cell.closed_loop == closed and (not d.cell.flags) == clean]
        if cells:
            load = "closed-loop" if closed else "paced"
            return cells, load if clean else f"{load}, flagged cells only"
    return [], ""


def proxy_cost_per_command(all_demands: Sequence[CellDemands]) -> float:
    """The delay proxy's CPU per Redis command it relays (median over proxied cells; 0
    when no cell had a proxy). It is one more process on this machine's cores."""
    per = [
        d.demand_s["proxy"] / d.redis_cmds_per_req
        for d in all_demands
        if d.cell.store_link != DIRECT and "proxy" in d.demand_s and d.redis_cmds_per_req > 0
    ]
    return statistics.median(per) if per else 0.0


def fit(all_demands: Sequence[CellDemands]) -> dict[str, ModeDemands]:
    """Per mode, the median of each demand over its reference cells."""
    fitted: dict[str, ModeDemands] = {}
    for mode in sorted({d.cell.mode for d in all_demands}):
        chosen, basis = _chosen([d for d in all_demands if d.cell.mode == mode and _reference(d)])
        if not chosen:
            continue
        names = sorted({n for d in chosen for n in d.demand_s})
        fitted[mode] = ModeDemands(
            mode=mode,
            demand_s={n: statistics.median(d.demand_s.get(n, 0.0) for d in chosen) for n in names},
            redis_cmds_per_req=statistics.median(d.redis_cmds_per_req for d in chosen),
            cells=tuple(f"{d.run}/{d.cell.cell_id}" for d in chosen),
            basis=basis,
            replica_range_s=(
                min(d.demand_s.get("replicas", 0.0) for d in chosen),
                max(d.demand_s.get("replicas", 0.0) for d in chosen),
            ),
        )
    return fitted


# ---------------------------------------------------------------------------- this machine


def machine_stations(
    fitted: ModeDemands,
    cores: int,
    redis_cpus: float | None,
    store_rtt_s: float,
    proxy_s_per_cmd: float = 0.0,
    pinned: tuple[int, int] | None = None,
) -> list[Station]:
    """This machine: every component on `cores` shared cores (the delay proxy too, when the
    cell had one), or with --pin the generator on its CPUs and the rest on theirs; a capped
    Redis on its own; the store RTT as a delay."""
    proxy = proxy_s_per_cmd * fitted.redis_cmds_per_req
    if pinned is None:
        stations = [Station("machine CPU", fitted.total_s + proxy, servers=cores)]
    else:
        generator = fitted.demand_s.get("loadgen", 0.0)
        stations = [
            Station("generator CPU", generator, servers=pinned[0]),
            Station("system CPU", fitted.total_s - generator + proxy, servers=pinned[1]),
        ]
    if redis_cpus is not None:
        stations.append(Station("redis (capped)", fitted.demand_s.get("redis", 0.0) / redis_cpus))
    if store_rtt_s > 0:
        rtt = fitted.redis_cmds_per_req * store_rtt_s
        stations.append(Station("store RTT", rtt, delay=True))
    return stations


@dataclass(frozen=True)
class Validation:
    """One measured cell against the model's prediction of it."""

    run: str
    cell_id: str
    mode: str
    replicas: int
    users: int
    closed_loop: bool
    redis_cpus: float | None
    store_rtt_ms: float
    store_link: str
    method: str
    measured_rps: float
    predicted_rps: float
    schedule_position: int | None
    cell_flags: tuple[str, ...]

    @property
    def error_pct(self) -> float:
        return (self.predicted_rps - self.measured_rps) / self.measured_rps * 100.0

    @property
    def flagged(self) -> bool:
        return abs(self.error_pct) > FLAG_PCT

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "cell_id": self.cell_id,
            "mode": self.mode,
            "replicas": self.replicas,
            "users": self.users,
            "load": "closed loop" if self.closed_loop else "paced",
            "redis_cpus": self.redis_cpus,
            "store_rtt_ms": self.store_rtt_ms,
            "store_link": self.store_link,
            "method": self.method,
            "measured_rps": round(self.measured_rps, 1),
            "predicted_rps": round(self.predicted_rps, 1),
            "error_pct": round(self.error_pct, 1),
            "flagged": self.flagged,
            "schedule_position": self.schedule_position,
            "cell_flags": list(self.cell_flags),
        }


@dataclass(frozen=True)
class LatencyCheck:
    """A store-distance cell: its read p50 against the direct cell's plus the model's delay."""

    run: str
    cell_id: str
    mode: str
    base_cell_id: str
    store_rtt_ms: float
    read_cmds: float  # Redis round trips on one read's path
    base_p50_us: float
    measured_p50_us: float
    predicted_p50_us: float
    ping_us: float  # the store PING measured over the same path (context, not an input)
    store_link: str = "proxy"  # what made the distance: the delay proxy, or netem

    @property
    def error_pct(self) -> float:
        return (self.predicted_p50_us - self.measured_p50_us) / self.measured_p50_us * 100.0

    @property
    def flagged(self) -> bool:
        return abs(self.error_pct) > FLAG_PCT

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "cell_id": self.cell_id,
            "mode": self.mode,
            "store_rtt_ms": self.store_rtt_ms,
            "base_cell_id": self.base_cell_id,
            "read_redis_round_trips": self.read_cmds,
            "base_read_p50_us": round(self.base_p50_us, 1),
            "measured_read_p50_us": round(self.measured_p50_us, 1),
            "predicted_read_p50_us": round(self.predicted_p50_us, 1),
            "error_pct": round(self.error_pct, 1),
            "flagged": self.flagged,
            "measured_store_ping_us": None if math.isnan(self.ping_us) else round(self.ping_us),
        }


def check_latency(
    runs: Sequence[tuple[str, list[CellDemands], dict[str, Any]]], proxy_s_per_cmd: float
) -> list[LatencyCheck]:
    """Paced cells through the delay proxy: a constant delay shifts every percentile by the
    same amount. A cell at RTT r is predicted from the proxy-at-0 control cell of the same
    mode, replicas, load, repeat and Redis cap (same proxy, measured next to it) plus round
    trips x r; the control cell itself from the direct cell plus round trips x the proxy's
    CPU per command. Where a run has no control cell, the direct cell is the base."""
    out: list[LatencyCheck] = []
    for run, cells, _ in runs:
        paced = [d.cell for d in cells if not d.cell.closed_loop]

        def key(c: MeasuredCell) -> tuple[Any, ...]:
            return (c.mode, c.replicas, c.users, c.repeat, c.redis_cpus)

        direct = {key(c): c for c in paced if c.store_link == DIRECT}
        control = {key(c): c for c in paced if c.store_link != DIRECT and c.store_rtt_s == 0}
        for c in paced:
            if c.store_link == DIRECT:
                continue
            base = control.get(key(c)) if c.store_rtt_s > 0 else None
            base = base or direct.get(key(c))
            if base is None or not (math.isfinite(c.read_p50_s) and math.isfinite(base.read_p50_s)):
                continue
            trips = 1.0 if read_command(c.mode) else 0.0
            # The proxy's own CPU per command, when the base has no proxy and the cell has
            # one (netem costs no process of its own).
            proxy = (
                proxy_s_per_cmd if base.store_link == DIRECT and c.store_link == "proxy" else 0.0
            )
            added = trips * (c.store_rtt_s - base.store_rtt_s + proxy)
            out.append(
                LatencyCheck(
                    run=run,
                    cell_id=c.cell_id,
                    mode=c.mode,
                    base_cell_id=base.cell_id,
                    store_rtt_ms=c.store_rtt_s * 1000.0,
                    read_cmds=trips,
                    base_p50_us=base.read_p50_s * 1e6,
                    measured_p50_us=c.read_p50_s * 1e6,
                    predicted_p50_us=(base.read_p50_s + added) * 1e6,
                    ping_us=c.store_ping_s * 1e6,
                    store_link=c.store_link,
                )
            )
    return out


def _schedule_positions(manifest: dict[str, Any]) -> dict[str, int]:
    positions: dict[str, int] = {}
    for i, group in enumerate(manifest.get("schedule", []), start=1):
        for cell_id in group if isinstance(group, list) else [group]:
            positions[str(cell_id)] = i
    return positions


def predict_here(
    fitted: ModeDemands, cell: MeasuredCell, cores: int, proxy_s_per_cmd: float = 0.0
) -> tuple[float, str]:
    """This machine's throughput for the cell's setting; the method used."""
    proxy = proxy_s_per_cmd if cell.store_link != DIRECT else 0.0
    stations = machine_stations(
        fitted, cores, cell.redis_cpus, cell.store_rtt_s, proxy, cell.pinned
    )
    if cell.closed_loop:
        return solve_closed(stations, max(cell.users, 1)).throughput, "exact MVA"
    ceiling = bounds(stations).max_throughput
    return min(cell.offered_rps, ceiling), "open-loop bound min(offered, 1/D_max)"


def validate(
    runs: Sequence[tuple[str, list[CellDemands], dict[str, Any]]],
    fitted: dict[str, ModeDemands],
    proxy_s_per_cmd: float = 0.0,
) -> list[Validation]:
    out: list[Validation] = []
    for run, cells, manifest in runs:
        cores = int(manifest.get("machine", {}).get("logical_cpus", 2) or 2)
        positions = _schedule_positions(manifest)
        for d in cells:
            c = d.cell
            if not c.usable or c.mode not in fitted:
                continue
            predicted, method = predict_here(fitted[c.mode], c, cores, proxy_s_per_cmd)
            out.append(
                Validation(
                    run=run,
                    cell_id=c.cell_id,
                    mode=c.mode,
                    replicas=c.replicas,
                    users=c.users,
                    closed_loop=c.closed_loop,
                    redis_cpus=c.redis_cpus,
                    store_rtt_ms=c.store_rtt_s * 1000.0,
                    store_link=c.store_link,
                    method=method,
                    measured_rps=c.rps,
                    predicted_rps=predicted,
                    schedule_position=positions.get(c.cell_id),
                    cell_flags=c.flags,
                )
            )
    return out


# ------------------------------------------------------------------------------ projection


@dataclass(frozen=True)
class RedisCore:
    """What one Redis core costs per command, and where the figure comes from."""

    cpu_s_per_cmd: dict[str, float]  # command -> CPU seconds per command
    source: str

    def per_request_s(self, mode: str, cmds_per_req: float) -> float:
        command = read_command(mode) or OTHER_COMMAND
        per_cmd = self.cpu_s_per_cmd.get(command) or statistics.median(self.cpu_s_per_cmd.values())
        return cmds_per_req * per_cmd


def redis_core_from_benchmark(data: dict[str, Any], path: str) -> RedisCore:
    per = {name: float(f["cpu_s_per_op"]) for name, f in data["commands"].items()}
    return RedisCore(per, f"redis-benchmark on this machine ({path}, {data['measured_utc']})")


def redis_core_from_cells(fitted: dict[str, ModeDemands]) -> RedisCore:
    """Redis CPU per command as measured in the bench cells (modes that use Redis)."""
    per: dict[str, float] = {}
    for mode in store_modes(fitted):
        f = fitted[mode]
        if f.redis_cmds_per_req > 0:
            per[read_command(mode)] = f.demand_s.get("redis", 0.0) / f.redis_cmds_per_req
    if per:
        per.setdefault(OTHER_COMMAND, statistics.median(per.values()))
    return RedisCore(per, "Redis CPU per command in the bench cells (INFO used_cpu)")


@dataclass(frozen=True)
class Projection:
    mode: str
    rtt_s: float
    replicas: int
    users: int
    mva: MvaResult
    bound: Bounds
    redis_utilisation: float


@dataclass
class Workload:
    """The projected load: closed loop, `users_per_replica` x R users, think time.

    48 users per replica is the committed closed-loop level; a 20 ms think time keeps a
    replica about half busy, so latency shows what the store adds rather than a queue of
    48 at every replica (at think time 0, latency is N / X whatever the RTT).
    """

    users_per_replica: int = 48
    think_s: float = 0.020
    pool_per_replica: int = 8  # authcore: max(8, 8 x cores) Redis connections, 1 core each


def projection_stations(
    fitted: ModeDemands, redis: RedisCore, replicas: int, rtt_s: float
) -> list[Station]:
    d = fitted.demand_s
    return [
        Station("replicas", d.get("replicas", 0.0), copies=replicas),
        Station("redis", redis.per_request_s(fitted.mode, fitted.redis_cmds_per_req)),
        # Provisioned to never queue (scaled out with the replicas): their time is latency.
        Station("gateway", d.get("gateway", 0.0), delay=True),
        Station("auth", d.get("auth", 0.0), delay=True),
        Station("store RTT", fitted.redis_cmds_per_req * rtt_s, delay=True),
    ]


def project(
    fitted: dict[str, ModeDemands], redis: RedisCore, workload: Workload
) -> list[Projection]:
    out: list[Projection] = []
    for mode, f in fitted.items():
        for rtt in RTTS_S:
            for r in REPLICAS:
                stations = projection_stations(f, redis, r, rtt)
                users = workload.users_per_replica * r
                result = solve_closed(stations, users, workload.think_s)
                out.append(
                    Projection(
                        mode,
                        rtt,
                        r,
                        users,
                        result,
                        bounds(stations, workload.think_s),
                        result.utilisation["redis"],
                    )
                )
    return out


@dataclass(frozen=True)
class Saturation:
    """Where one Redis core runs out for a mode at a store RTT."""

    mode: str
    rtt_ms: float
    redis_demand_us: float
    crossover_replicas: float  # D_replica / D_redis: the asymptotic bottleneck switch
    crossover_range: tuple[float, float]  # the same over the reference cells' D_replica
    redis_ceiling_rps: float  # 1 / D_redis
    first_saturated_replicas: int | None  # MVA: first projected R with U_redis >= SATURATED
    rps_there: float | None
    pool_ceiling_rps_per_replica: float | None  # pool / (cmds x RTT): RTT's throughput cap
    replica_capacity_rps: float  # 1 / D_replica: one replica on its own core
    pool_binding_rtt_ms: float  # the RTT from which the pool caps a replica below its CPU


def saturation(
    fitted: dict[str, ModeDemands],
    redis: RedisCore,
    projections: Sequence[Projection],
    workload: Workload,
) -> list[Saturation]:
    out: list[Saturation] = []
    for mode in store_modes(fitted):
        f = fitted[mode]
        d_redis = redis.per_request_s(mode, f.redis_cmds_per_req)
        for rtt in RTTS_S:
            series = [p for p in projections if p.mode == mode and p.rtt_s == rtt]
            first = next((p for p in series if p.redis_utilisation >= SATURATED), None)
            cmds_rtt = f.redis_cmds_per_req * rtt
            out.append(
                Saturation(
                    mode=mode,
                    rtt_ms=rtt * 1000.0,
                    redis_demand_us=d_redis * 1e6,
                    crossover_replicas=f.demand_s.get("replicas", 0.0) / d_redis,
                    crossover_range=(
                        f.replica_range_s[0] / d_redis,
                        f.replica_range_s[1] / d_redis,
                    ),
                    redis_ceiling_rps=1.0 / d_redis,
                    first_saturated_replicas=first.replicas if first else None,
                    rps_there=first.mva.throughput if first else None,
                    pool_ceiling_rps_per_replica=(
                        workload.pool_per_replica / cmds_rtt if cmds_rtt > 0 else None
                    ),
                    replica_capacity_rps=1.0 / f.demand_s.get("replicas", math.inf),
                    pool_binding_rtt_ms=1000.0
                    * workload.pool_per_replica
                    * f.demand_s.get("replicas", 0.0)
                    / f.redis_cmds_per_req,
                )
            )
    return out


# ---------------------------------------------------------------------------- the document


@dataclass
class Model:
    """Everything model.json holds."""

    runs: list[str]
    load_average: dict[str, list[Any]]  # run -> the machine's 1-min load at start and end
    redis: RedisCore
    alt_redis: RedisCore | None
    workload: Workload
    cell_demands: list[CellDemands]
    fitted: dict[str, ModeDemands]
    validations: list[Validation]
    projections: list[Projection]
    saturations: list[Saturation]
    alt_saturations: list[Saturation]
    cores_here: int
    proxy_s_per_cmd: float = 0.0
    latency_checks: list[LatencyCheck] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)


def assumptions_of(model: Model) -> list[str]:
    w = model.workload
    return [
        "Utilisation law: a component's demand is its measured CPU (cores) divided by the "
        "cell's throughput (all requests, logins and logouts included); CPU that no sampled "
        "process accounts for (kernel, other tenants of the machine) is in no demand.",
        "Demands are per mode the median over the reference cells (uncapped Redis reached "
        "directly; closed loop before paced, unflagged before flagged, as each mode's "
        "'basis' says); measured demands fall with load (per-request "
        "overheads amortise), so demands from a saturated cell are used for saturation.",
        f"This machine: every process shares its {model.cores_here} cores, modelled as one "
        f"{model.cores_here}-server station holding all demands (generator included); with "
        "--pin, the generator's CPUs and the system's are two such stations. A Redis CPU "
        "quota F is a single-server station of demand D_redis / F (D_redis from uncapped "
        "cells); the fit itself uses unpinned cells as well as pinned ones.",
        "Store-distance cells (paced, through the delay proxy) check latency: the delay is "
        "constant, so it shifts every percentile alike. A cell at RTT r is predicted as the "
        "proxy-at-0 control cell's read p50 plus round trips per read x r; the control "
        "cell as the direct cell's plus round trips x the proxy's CPU per command. One "
        "round trip for a mode whose reads consult Redis, none otherwise.",
        "Closed-loop cells are solved with exact MVA (think time 0, the cell's user count); "
        "for them mean latency is N / X by Little's law, so only throughput is validated.",
        f"Projection: each replica is a single-threaded process on a core of its own; one "
        f"Redis on a core of its own; {w.users_per_replica} closed-loop users per replica, "
        f"think time {w.think_s * 1000:g} ms.",
        "Projection: the gateway and the auth service are scaled out with the replicas, so "
        "they add their service time to latency but never queue; the load generator is "
        "outside the system.",
        "Store RTT is a pure delay per Redis command (commands per request x RTT); it adds "
        "latency, and caps a replica's throughput only through its Redis connection pool "
        f"({w.pool_per_replica} connections: authcore's max(8, 8 x CPUs) where the replica "
        "sees one CPU; a container on a bigger host sees the host's CPUs and gets more), at "
        "pool / (commands x RTT) requests/s.",
        f"Redis CPU per command: {model.redis.source}. It falls as more connections send at "
        "once (Redis serves several per wake-up); a Redis near saturation serves many "
        "replicas' pools, so the benchmark's 50-client figure is used. The figure from the "
        "bench cells' own Redis CPU (few connections busy at once) is reported beside it as "
        "the pessimistic end.",
        "The delay proxy (store-distance cells) is one more process on this machine's cores: "
        "its CPU per relayed Redis command is the median over the proxied cells and is added "
        "to those cells' CPU demand; the projection has no proxy, only the RTT.",
        f"Redis counts as saturated from {SATURATED:.0%} utilisation; the asymptotic "
        "crossover D_replica / D_redis is where the replicas' combined capacity equals "
        "Redis's.",
        "Product-form assumptions: exponential-like service, no contention between stations "
        "except through the queues modelled; cache effects, GC pauses, the event loop's "
        "batching at high load and network bandwidth are not modelled.",
    ]


def build(
    run_dirs: Sequence[Path],
    redis_capacity: dict[str, Any] | None = None,
    redis_capacity_path: str = "",
    workload: Workload | None = None,
) -> Model:
    """Read the runs, fit, validate and project."""
    workload = workload or Workload()
    runs: list[tuple[str, list[CellDemands], dict[str, Any]]] = []
    for run_dir in run_dirs:
        name = run_dir.name
        manifest = read_manifest(run_dir)
        cells = [demands_of(c, name) for c in read_cells(run_dir) if c.usable]
        runs.append((name, cells, manifest))
    all_demands = [d for _, cells, _ in runs for d in cells]
    fitted = fit(all_demands)
    if not fitted:
        raise ValueError(
            "no cell to fit: every row has an error or no throughput, or every measured "
            "cell had its Redis capped or behind the delay proxy"
        )
    from_cells = redis_core_from_cells(fitted)
    if redis_capacity is not None:
        redis = redis_core_from_benchmark(redis_capacity, redis_capacity_path)
        alt: RedisCore | None = from_cells if from_cells.cpu_s_per_cmd else None
    else:
        redis, alt = from_cells, None
    if not redis.cpu_s_per_cmd:
        raise ValueError("no Redis CPU figure: give --redis-capacity or runs with Redis modes")
    projections = project(fitted, redis, workload)
    sats = saturation(fitted, redis, projections, workload)
    alt_sats = saturation(fitted, alt, project(fitted, alt, workload), workload) if alt else []
    cores = max(int(m.get("machine", {}).get("logical_cpus", 2) or 2) for _, _, m in runs)
    proxy = proxy_cost_per_command(all_demands)
    model = Model(
        runs=[str(p) for p in run_dirs],
        load_average={
            name: [
                (m.get("machine", {}).get("loadavg_at_start") or [None])[0],
                (m.get("machine", {}).get("loadavg_at_end") or [None])[0],
            ]
            for name, _, m in runs
        },
        redis=redis,
        alt_redis=alt,
        workload=workload,
        cell_demands=all_demands,
        fitted=fitted,
        validations=validate(runs, fitted, proxy),
        projections=projections,
        saturations=sats,
        alt_saturations=alt_sats,
        cores_here=cores,
        proxy_s_per_cmd=proxy,
        latency_checks=check_latency(runs, proxy),
    )
    model.assumptions = assumptions_of(model)
    return model


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 2)


def _sat_dict(s: Saturation) -> dict[str, Any]:
    def r(v: float | None, digits: int = 1) -> float | None:
        return None if v is None or not math.isfinite(v) else round(v, digits)

    return {
        "mode": s.mode,
        "store_rtt_ms": s.rtt_ms,
        "redis_demand_us_per_request": round(s.redis_demand_us, 2),
        "redis_ceiling_rps": r(s.redis_ceiling_rps, 0),
        "crossover_replicas": r(s.crossover_replicas, 1),
        "crossover_replicas_range": [r(s.crossover_range[0], 1), r(s.crossover_range[1], 1)],
        "first_saturated_replicas": s.first_saturated_replicas,
        "rps_at_first_saturated": r(s.rps_there, 0),
        "pool_ceiling_rps_per_replica": r(s.pool_ceiling_rps_per_replica, 0),
        "replica_capacity_rps": r(s.replica_capacity_rps, 0),
        "pool_binds": (
            s.pool_ceiling_rps_per_replica is not None
            and s.pool_ceiling_rps_per_replica < s.replica_capacity_rps
        ),
        # From this RTT on, a replica's pool, not its CPU, limits it: pool / (cmds x X_rep).
        "rtt_ms_from_which_pool_binds": r(s.pool_binding_rtt_ms, 2),
    }


def medians_over_repeats(model: Model) -> list[dict[str, Any]]:
    """Each configuration's median measured and median predicted figure over its repeats
    (a run's repeats differ in the repeat number only): what a findings table quotes."""
    groups: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    for v in model.validations:
        what = "req/s (closed loop)" if v.closed_loop else "req/s (paced, bound)"
        k = (v.run, v.mode, v.replicas, v.users, v.redis_cpus, v.store_link, v.store_rtt_ms, what)
        groups.setdefault(k, []).append((v.measured_rps, v.predicted_rps))
    for c in model.latency_checks:
        k = (c.run, c.mode, 1, 0, None, c.store_link, c.store_rtt_ms, "read p50 µs (distance)")
        groups.setdefault(k, []).append((c.measured_p50_us, c.predicted_p50_us))
    out = []
    for (run, mode, replicas, users, cap, link, rtt, what), pairs in groups.items():
        measured = statistics.median(m for m, _ in pairs)
        predicted = statistics.median(p for _, p in pairs)
        error = (predicted - measured) / measured * 100.0 if measured else math.nan
        out.append(
            {
                "run": run,
                "mode": mode,
                "replicas": replicas,
                "users": users,
                "redis_cpus": cap,
                "store_link": link,
                "store_rtt_ms": rtt,
                "figure": what,
                "repeats": len(pairs),
                "measured_median": round(measured, 1),
                "predicted_median": round(predicted, 1),
                "measured_min": round(min(m for m, _ in pairs), 1),
                "measured_max": round(max(m for m, _ in pairs), 1),
                "error_pct": round(error, 1),
                "flagged": abs(error) > FLAG_PCT,
            }
        )
    return out


def to_json(model: Model) -> dict[str, Any]:
    """The model as model.json's document."""
    flagged = [v for v in model.validations if v.flagged]
    flagged_latency = [v for v in model.latency_checks if v.flagged]
    errors = [abs(v.error_pct) for v in model.validations]
    errors += [abs(v.error_pct) for v in model.latency_checks]
    return {
        "kind": "capacity-model",
        "runs": model.runs,
        "load_average_at_start_and_end": model.load_average,
        "inputs": {
            "redis_cpu_us_per_command": {k: _us(v) for k, v in model.redis.cpu_s_per_cmd.items()},
            "redis_source": model.redis.source,
            "alt_redis_cpu_us_per_command": (
                {k: _us(v) for k, v in model.alt_redis.cpu_s_per_cmd.items()}
                if model.alt_redis
                else None
            ),
            "alt_redis_source": model.alt_redis.source if model.alt_redis else None,
            "cores_here": model.cores_here,
            "delay_proxy_cpu_us_per_command": _us(model.proxy_s_per_cmd),
            "workload": {
                "users_per_replica": model.workload.users_per_replica,
                "think_ms": model.workload.think_s * 1000.0,
                "redis_pool_per_replica": model.workload.pool_per_replica,
            },
            "flag_pct": FLAG_PCT,
            "saturated_at_utilisation": SATURATED,
        },
        "assumptions": model.assumptions,
        "demands": {
            "cells": [
                {
                    "run": d.run,
                    "cell_id": d.cell.cell_id,
                    "mode": d.cell.mode,
                    "replicas": d.cell.replicas,
                    "load": "closed loop" if d.cell.closed_loop else "paced",
                    "rps": d.cell.rps,
                    "demand_us": {k: _us(v) for k, v in d.demand_s.items()},
                    "total_us": _us(d.total_s),
                    "redis_cmds_per_req": round(d.redis_cmds_per_req, 3),
                }
                for d in model.cell_demands
            ],
            "fitted": {
                mode: {
                    "basis": f.basis,
                    "cells": list(f.cells),
                    "demand_us": {k: _us(v) for k, v in f.demand_s.items()},
                    "total_us": _us(f.total_s),
                    "redis_cmds_per_req": round(f.redis_cmds_per_req, 3),
                    "replica_us_range": [_us(f.replica_range_s[0]), _us(f.replica_range_s[1])],
                }
                for mode, f in model.fitted.items()
            },
        },
        "validation": {
            "cells": [v.as_dict() for v in model.validations],
            "latency": [v.as_dict() for v in model.latency_checks],
            "medians_over_repeats": medians_over_repeats(model),
            "flagged": len(flagged) + len(flagged_latency),
            "max_abs_error_pct": round(max(errors, default=0.0), 1),
        },
        "predictions": [
            {
                "mode": p.mode,
                "store_rtt_ms": p.rtt_s * 1000.0,
                "replicas": p.replicas,
                "users": p.users,
                "throughput_rps": round(p.mva.throughput, 1),
                "mean_latency_ms": round(p.mva.response_s * 1000.0, 3),
                "redis_utilisation": round(p.redis_utilisation, 3),
                "bound_rps": round(p.bound.max_throughput, 1),
                "bottleneck": p.bound.bottleneck,
            }
            for p in model.projections
        ],
        "saturation": [_sat_dict(s) for s in model.saturations],
        "saturation_from_cell_redis_cpu": [_sat_dict(s) for s in model.alt_saturations],
    }
