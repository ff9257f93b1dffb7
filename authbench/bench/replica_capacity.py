"""The session-read ceiling of a capped store with and without read replicas, the services
left out (issue 17 item 6).

The capped-store bench (`authbench bench --store replicas:N --redis-cpus C`) measures the
whole stack, and on this 2-core machine the services run out of CPU at about the rate a
0.01-core Redis serves, so it cannot show how far the store's own ceiling moves. This
study drives the store alone, through the services' own code (authcore's RedisStore and
SessionStore.validate, `--processes` driver processes with `--concurrency` reads in flight
each), for each topology in turn, every redis-server held to `--cores` in a cgroup of its
own:

- `getex`: a primary alone, the default policy (every read a GETEX on the primary);
- `replicas:0`: a primary alone, SESSION_RENEW_INTERVAL_S set (every read GET + PTTL);
- `replicas:N`: the same reads spread over N read replicas;
- `cluster:N`: the sessions spread over N shards of a Redis Cluster (issue 17 item 5),
  every read a GETEX on its key's shard. The capped-shard bench hits the same machine
  wall; here the store's own ceiling shows, `cluster:1` against `cluster:N`.

Rounds alternate the topologies (ABCABC...), so the machine's load falls on each alike.
Writes `results/replica-capacity-<UTC>/` (manifest.json, rounds.json, README.md):

    python -m authbench.bench.replica_capacity --cores 0.01 --topologies getex,replicas:0,replicas:2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import redis

from authbench import cgroups, process
from authbench.process import PROJECT_ROOT
from authbench.provenance import new_run_id, run_head
from authbench.stores.cluster import ShardedCluster
from authbench.stores.node import NodeSet
from authbench.stores.replicas import ReplicaSet
from authbench.targets.base import StoreTopology
from authcore.config import Settings
from authcore.errors import AuthbenchError
from authcore.redis_store import RedisStore
from authcore.sessions import SessionStore

TOPOLOGIES = ("getex", "replicas:0", "replicas:2")
RENEW_INTERVAL_S = "60"  # sessions younger than this are never renewed during a round
START_MARGIN_S = 5.0  # for the driver processes to start (spawn, imports) on a busy machine


def _parse(topology: str) -> StoreTopology:
    if topology == "getex":
        return StoreTopology("replicas", read_replicas=0)
    store = StoreTopology.parse(topology)
    if store.kind not in ("replicas", "cluster"):
        raise ValueError(f"{topology!r}: expected getex, replicas:N or cluster:N")
    return store


def _start(topology: str, workdir: Path) -> tuple[NodeSet, dict[str, str]]:
    """The store of `topology`, started, and the settings that reach it."""
    shape = _parse(topology)
    if shape.kind == "cluster":
        base = process.free_port_block(2 * shape.shards)
        cluster = ShardedCluster(
            ports=tuple(base + i for i in range(shape.shards)),
            bus_ports=tuple(base + shape.shards + i for i in range(shape.shards)),
            workdir=workdir,
        )
        cluster.start()
        env = {
            "REDIS_URL": f"redis://127.0.0.1:{cluster.ports[0]}/0",
            "REDIS_CLUSTER_NODES": cluster.nodes_setting,
        }
        return cluster, env
    base = process.free_port_block(shape.read_replicas + 1)
    replicas = ReplicaSet(
        ports=tuple(base + i for i in range(shape.read_replicas + 1)), workdir=workdir
    )
    replicas.start()
    env = {"REDIS_URL": f"redis://127.0.0.1:{replicas.primary_port}/0"}
    if topology != "getex":
        env |= {
            "REDIS_READ_REPLICAS": replicas.replicas_setting,
            "SESSION_RENEW_INTERVAL_S": RENEW_INTERVAL_S,
        }
    return replicas, env


async def _login(settings: Settings, sessions: int) -> list[str]:
    """Create `sessions` sessions (user0, user1, ...) through SessionStore.create."""
    store = RedisStore(settings)
    try:
        store_sessions = SessionStore(store, settings)
        return [await store_sessions.create(f"user{i}") for i in range(sessions)]
    finally:
        await store.close()


def _runqueue_wait_s() -> float:
    """Seconds this (single-threaded) process has spent ready to run but waiting for a CPU
    (/proc/self/schedstat, second field, ns); 0 where the kernel does not say."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _drive_process(
    env: dict[str, str], seconds: float, concurrency: int, ids: list[str], start_at: float
) -> dict[str, Any]:
    """One driver process (a ProcessPoolExecutor job): `_drive` on its own event loop."""
    settings = Settings.from_env(env)
    return asyncio.run(_drive(settings, seconds, concurrency, ids, start_at))


async def _drive(
    settings: Settings,
    seconds: float,
    concurrency: int,
    ids: list[str],
    start_at: float | None = None,
) -> dict[str, Any]:
    """Validate the sessions `ids` from `concurrency` tasks for `seconds`, after one
    second of warm-up that starts at wall time `start_at` (every driver process alike);
    reads and errors counted."""
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
    store = RedisStore(settings)
    store_sessions = SessionStore(store, settings)
    counting = stopping = False
    reads = errors = 0
    kinds: dict[str, int] = {}

    async def reader(offset: int) -> None:
        nonlocal reads, errors
        i = offset
        while not stopping:  # a flag, not cancel(): the reads must end, not be abandoned
            try:
                await store_sessions.validate(ids[i % len(ids)])
                reads += counting
            except AuthbenchError as err:
                errors += counting
                kinds[type(err).__name__] = kinds.get(type(err).__name__, 0) + 1
                # An open breaker fails without awaiting anything: yield, or this task
                # would hold the loop for good.
                await asyncio.sleep(0.01)
            i += 1

    stuck = 0
    try:
        tasks = [asyncio.create_task(reader(k)) for k in range(concurrency)]
        await asyncio.sleep(1.0)
        counting = True
        started, cpu_started = time.perf_counter(), time.process_time()
        waited_started = _runqueue_wait_s()
        await asyncio.sleep(seconds)
        counting = False
        elapsed = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
        waited_s = _runqueue_wait_s() - waited_started
        stopping = True
        stuck += len((await asyncio.wait(tasks, timeout=10.0))[1])
        for task in tasks:
            task.cancel()
    finally:
        try:
            await asyncio.wait_for(store.close(), timeout=5.0)
        except TimeoutError:
            stuck += 1
    return {
        "reads": reads,
        "errors": errors,
        "error_kinds": kinds,  # warm-up included
        "seconds": round(elapsed, 3),
        # This driver's own CPU while counting: near 100% of a core, the driver (not the
        # store) may be what limits the rate.
        "driver_cpu_pct": round(100 * cpu_s / elapsed, 1),
        # ... and how long it was ready to run but waited for a CPU (the machine's load):
        # a driver that waits much drives the store less than it asks to.
        "driver_runqueue_wait_pct": round(100 * waited_s / elapsed, 1),
        "teardown_stuck": stuck,
    }


def measure(
    topology: str,
    cores: float,
    seconds: float,
    concurrency: int,
    sessions: int,
    workdir: Path,
    processes: int = 1,
) -> dict[str, Any]:
    """One round of one topology on a fresh, capped store, driven by `processes` driver
    processes with `concurrency` reads in flight each."""
    quotas: list[cgroups.CpuQuota] = []
    store, env = _start(topology, workdir)
    try:
        for name, pid in store.processes().items():
            quota = cgroups.CpuQuota.create(f"authbench-rc-{os.getpid()}-{name}", cores)
            quotas.append(quota)
            quota.attach(pid)
        env |= {
            "REDIS_POOL_SIZE": str(concurrency),
            "REDIS_TIMEOUT_MS": "2000",  # a capped Redis is slow, not down
        }
        settings = Settings.from_env(env)  # refused here, not in a driver, if ever wrong
        ids = asyncio.run(_login(settings, sessions))
        if isinstance(store, ReplicaSet):
            with redis.Redis(port=store.primary_port, socket_timeout=10.0) as primary:
                primary.wait(len(store.replica_ports), 10000)  # every replica has the logins
        pids = store.processes()
        cpu_before = {name: process.tree_cpu_seconds(pid) for name, pid in pids.items()}
        wall_before = time.monotonic()
        start_at = time.time() + START_MARGIN_S  # every driver starts reading together
        spawn = multiprocessing.get_context("spawn")  # no forked copy of this process
        with ProcessPoolExecutor(processes, mp_context=spawn) as pool:
            jobs = [
                pool.submit(_drive_process, env, seconds, concurrency, ids[k:] + ids[:k], start_at)
                for k in range(processes)
            ]
            parts = [job.result() for job in jobs]
        cpu_after = {name: process.tree_cpu_seconds(pid) for name, pid in pids.items()}
        wall_s = time.monotonic() - wall_before
        result = {
            "reads": sum(p["reads"] for p in parts),
            "errors": sum(p["errors"] for p in parts),
            "error_kinds": [p["error_kinds"] for p in parts],
            "seconds": max(p["seconds"] for p in parts),
            "teardown_stuck": sum(p["teardown_stuck"] for p in parts),
        }
        throttled = [q.throttling() for q in quotas]
    finally:
        for quota in quotas:
            quota.remove()
        store.stop()
    # CPU over the whole round (drivers' start-up, logins and warm-up included): a lower
    # bound on each node's share while measuring.
    window = wall_s
    return {
        "topology": topology,
        **result,
        "reads_per_s": round(sum(p["reads"] / p["seconds"] for p in parts), 1),
        "driver_cpu_pct": [p["driver_cpu_pct"] for p in parts],
        "driver_runqueue_wait_pct": [p["driver_runqueue_wait_pct"] for p in parts],
        "cpu_pct_per_node": {
            name: round(100 * (cpu_after[name] - cpu_before[name]) / window, 2) for name in pids
        },
        "throttled_periods_pct": [
            round(100 * t.get("throttled_periods", 0) / max(1.0, t.get("periods", 0)), 1)
            for t in throttled
        ],
    }


def write(run_dir: Path, manifest: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (run_dir / "rounds.json").write_text(json.dumps(rounds, indent=2))
    topologies = manifest["settings"]["topologies"]
    medians = {
        t: statistics.median(r["reads_per_s"] for r in rounds if r["topology"] == t)
        for t in topologies
    }
    first = topologies[0]
    lines = [
        f"# Session-read ceiling of a capped store, run {manifest['run_id']}",
        "",
        "The store alone, through authcore's RedisStore and SessionStore.validate "
        f"({manifest['settings'].get('processes', 1)} driver processes, "
        f"{manifest['settings']['concurrency']} reads in flight each), every "
        f"redis-server held to {manifest['settings']['cores']:g} core; topologies "
        "alternated round by round. Command:",
        "",
        "    python -m authbench.bench.replica_capacity " + " ".join(manifest["command"][1:]),
        "",
        f"| topology | rounds: reads/s | median reads/s | vs {first} | errors | "
        "CPU % per node, whole last round | throttled % of periods, last round | "
        "driver CPU % of a core, each process, last round | "
        "driver waiting for a CPU, % of the time, last round |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in topologies:
        mine = [r for r in rounds if r["topology"] == t]
        last = mine[-1]
        each = ", ".join(f"{r['reads_per_s']:g}" for r in mine)
        cpu = ", ".join(f"{k} {v:g}" for k, v in last["cpu_pct_per_node"].items())
        throttled = ", ".join(f"{v:g}" for v in last["throttled_periods_pct"])
        drivers = ", ".join(f"{v:g}" for v in last.get("driver_cpu_pct", []))
        waits = ", ".join(f"{v:g}" for v in last.get("driver_runqueue_wait_pct", []))
        lines.append(
            f"| {t} | {each} | {medians[t]:g} | {medians[t] / medians[first]:.2f}x | "
            f"{sum(r['errors'] for r in mine)} | {cpu} | {throttled} | {drivers} | {waits} |"
        )
    start = manifest["machine"].get("loadavg_at_start")
    load = manifest["machine"].get("loadavg_at_end")
    lines += [
        "",
        f"Load average at the start: {', '.join(f'{v:.2f}' for v in start)}; "
        f"at the end: {', '.join(f'{v:.2f}' for v in load)} (2 logical CPUs).",
    ]
    git = manifest.get("git", {})
    lines += [f"Code: commit {git.get('commit', '?')}{' (dirty)' if git.get('dirty') else ''}."]
    (run_dir / "README.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbench.bench.replica_capacity",
        description="The session-read ceiling of a capped store (the services left out): "
        "getex, replicas:0, replicas:N and cluster:N, alternated round by round, every "
        "redis-server held to --cores.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES), help="comma-separated")
    parser.add_argument("--cores", type=float, default=0.01, help="CPU quota per redis-server")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every topology")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="reads in flight per driver process"
    )
    parser.add_argument(
        "--processes", type=int, default=3, help="driver processes (one alone tops out first)"
    )
    parser.add_argument("--sessions", type=int, default=200, help="sessions read in turn")
    parser.add_argument("--results-dir", default=str(PROJECT_ROOT / "results"))
    args = parser.parse_args(argv)
    topologies = [t.strip() for t in args.topologies.split(",") if t.strip()]
    try:
        for topology in topologies:
            _parse(topology)
        cgroups.validate_cores(args.cores, "--cores")
        if min(args.rounds, args.concurrency, args.sessions, args.processes) < 1 or not (
            args.seconds > 0
        ):
            raise ValueError(
                "--rounds, --seconds, --concurrency, --processes and --sessions must be positive"
            )
        cgroups.detect()
    except (ValueError, cgroups.CgroupError) as err:
        print(f"replica_capacity: {err}", file=sys.stderr)
        return 2
    run_id = new_run_id("replica-capacity")
    manifest = {
        **run_head("replica-capacity", run_id),
        "settings": {
            "topologies": topologies, "cores": args.cores, "seconds": args.seconds,
            "rounds": args.rounds, "concurrency": args.concurrency, "sessions": args.sessions,
            "processes": args.processes,
            "session_renew_interval_s": RENEW_INTERVAL_S,
        },
    }  # fmt: skip
    rounds = []
    workdir = PROJECT_ROOT / ".authbench" / run_id
    for i in range(args.rounds):
        for topology in topologies:
            result = measure(
                topology, args.cores, args.seconds, args.concurrency, args.sessions,
                workdir / f"{topology.replace(':', '-')}-{i}", args.processes,
            )  # fmt: skip
            result["round"] = i + 1
            rounds.append(result)
            print(
                f"round {i + 1} {topology}: {result['reads_per_s']} reads/s, "
                f"{result['errors']} errors, CPU {result['cpu_pct_per_node']}",
                flush=True,
            )
    manifest["machine"]["loadavg_at_end"] = list(os.getloadavg())
    run_dir = Path(args.results_dir) / run_id
    write(run_dir, manifest, rounds)
    print(f"\nresults: {run_dir}\n{(run_dir / 'README.md').read_text()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
