"""A whole bench run: clusters per group, cells in protocol order, progress, files.

Writes `results/<run-id>/` as the contract says: `manifest.json` (kind "bench", git commit,
versions, machine, every setting, the schedule and its seed), one folder per cell under
`cells/` with Locust's raw CSVs and HTML and `cell.json` (samplers' details), and
`summary.csv` with one row per cell. The report (charts, report.html) is drawn last from
those files alone, the same way `authbench report DIR` redraws it.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from authbench.bench import axes
from authbench.bench.axes import Placement
from authbench.bench.matrix import Cell, Matrix
from authbench.bench.protocol import CellResult, Protocol, Target, failed, measure
from authbench.bench.samplers import Sampling
from authbench.bench.summary import write_summary
from authbench.process import PORT_BLOCK, PROJECT_ROOT, PortsError, port_block_free
from authbench.provenance import new_run_id, run_head
from authbench.store_link import (
    NETEM,
    PROXY_LINK,
    LinkChoice,
    NetemError,
    NetemLink,
    redis_port,
)
from authbench.targets import DeploymentSpec, open_deployment
from authbench.targets.base import Deployment, DeploymentError, StoreTopology
from authbench.targets.external import Endpoints, uncontrolled


@dataclass
class BenchConfig:
    matrix: Matrix
    protocol: Protocol
    target: str = "local"  # local | compose
    port_base: int = 28000
    compose_project: str = "authbench"  # compose: the project the bench (re)configures
    results_dir: Path = PROJECT_ROOT / "results"
    run_id: str = ""
    settings_env: dict[str, str] = field(default_factory=dict)
    render_report: bool = True
    placement: Placement | None = None  # --pin: the generator's CPUs and the system's
    external: Endpoints | None = None  # --target external: where it answers
    # --store-link: what makes the store distance, and why (authbench.store_link.choose);
    # the matrix's distant cells carry the same `via` (Matrix.with_link).
    store_link: LinkChoice = PROXY_LINK

    def estimate_s(self) -> float:
        groups = sum(len(g) > 0 for g in self.matrix.schedule())
        startup = 6.0 if self.target == "local" else 25.0  # start (or recreate), seed, settle
        return self.matrix.cell_count * self.protocol.cell_seconds() + groups * startup


def build_manifest(config: BenchConfig, schedule: Sequence[Sequence[Cell]]) -> dict[str, Any]:
    return {
        **run_head("bench", config.run_id),
        "settings": {
            "target": config.target,
            "matrix": config.matrix.as_dict(),
            "protocol": asdict(config.protocol),
            "port_base": config.port_base if config.target == "local" else None,
            "compose_project": config.compose_project if config.target == "compose" else None,
            "cluster_env": config.settings_env,
            "store_link": config.store_link.reason,
            "store_link_via": config.store_link.via,
            "store": list(config.matrix.stores),
            "gateway": list(config.matrix.gateways),
            "placement": config.placement.as_dict() if config.placement else None,
            # --target external: its addresses and what the harness could not control.
            "external": (
                {**config.external.as_dict(), "uncontrolled": uncontrolled(config.external)}
                if config.external is not None
                else None
            ),
        },
        "schedule": [[cell.cell_id for cell in group] for group in schedule],
        "cells": {},
    }


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """One line per cell with an ETA; a live status line when stdout is a terminal."""

    def __init__(self, total: int, estimate_s: float, out: Callable[[str], None]) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self.estimate_s = estimate_s
        self.out = out
        self.live = sys.stdout.isatty()

    def eta(self) -> float:
        elapsed = time.monotonic() - self.started
        if self.done == 0:
            return max(0.0, self.estimate_s - elapsed)
        return elapsed / self.done * (self.total - self.done)

    def cell_started(self, cell: Cell) -> Callable[[str], None]:
        label = f"[{self.done + 1}/{self.total}] {cell.cell_id}"
        if not self.live:
            self.out(f"{label} ... (ETA {_fmt_duration(self.eta())})")

        def tick(state: str) -> None:
            if self.live:
                sys.stdout.write(f"\r\033[K{label}: {state}  (ETA {_fmt_duration(self.eta())})")
                sys.stdout.flush()

        return tick

    def cell_done(self, result: CellResult) -> None:
        self.done += 1
        row = result.row
        if self.live:
            sys.stdout.write("\r\033[K")
        if result.error:
            text = f"FAILED: {result.error}"
        else:
            text = (
                f"{row.rps:.0f} req/s, reads p50 {row.read_p50_ms} ms p99 "
                f"{row.read_p99_ms} ms, {row.failures} failures, Redis "
                f"{row.redis_ops_s} ops/s, loadgen {row.cpu_loadgen_pct}% CPU"
            )
        flags = f"  [flags: {', '.join(result.flags)}]" if result.flags else ""
        self.out(f"[{self.done}/{self.total}] {result.cell.cell_id}: {text}{flags}")


def run(config: BenchConfig, say: Callable[[str], None] = print) -> Path:
    """Run the matrix and write the results directory; returns its path."""
    if config.target == "local" and not port_block_free(config.port_base):
        raise PortsError(
            f"ports {config.port_base}..{config.port_base + PORT_BLOCK - 1} are in use; pick "
            "another block with --port-base"
        )
    config.run_id = config.run_id or new_run_id("bench")
    run_dir = config.results_dir / config.run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    schedule = config.matrix.schedule()
    manifest = build_manifest(config, schedule)
    manifest_path = run_dir / "manifest.json"
    manifest_path.write_text(json.dumps(manifest, indent=2))
    progress = Progress(config.matrix.cell_count, config.estimate_s(), say)
    say(
        f"authbench bench: {config.matrix.cell_count} cells in {len(schedule)} cluster groups, "
        f"about {_fmt_duration(config.estimate_s())}; writing {run_dir}"
    )
    results: list[CellResult] = []
    interrupted = False
    try:
        for group in schedule:
            _run_group(config, group, run_dir, progress, say, results)
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: Locust and the cluster are already stopped by the finally
        # blocks below us; keep what was measured and say the run is incomplete.
        interrupted = True
        say("\ninterrupted: everything started was stopped; keeping the cells measured so far")
    finally:
        rows = [r.row for r in results]
        write_summary(run_dir / "summary.csv", rows)
        manifest["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        manifest["duration_s"] = round(time.monotonic() - progress.started, 1)
        manifest["machine"]["loadavg_at_end"] = list(os.getloadavg())
        manifest["cells"] = {
            r.cell.cell_id: {
                **r.cell.as_dict(),
                "dir": str(r.cell_dir.relative_to(run_dir)),
                "flags": r.flags,
                "error": r.error,
            }
            for r in results
        }
        manifest["complete"] = len(results) == config.matrix.cell_count
        manifest["interrupted"] = interrupted
        manifest_path.write_text(json.dumps(manifest, indent=2))
    if config.render_report:
        from authbench.bench import report

        report.render(run_dir)
    if interrupted:
        raise KeyboardInterrupt
    return run_dir


def wait_quiet(
    deployment: Deployment,
    component: str = "auth",
    below_pct: float = 15.0,
    window_s: float = 1.0,
    timeout_s: float = 120.0,
) -> float | None:
    """Wait until a component uses less than `below_pct` of a core; None once it does (or
    when its CPU cannot be measured), else the last reading when `timeout_s` ran out."""
    deadline = time.monotonic() + timeout_s
    before = deployment.cpu_seconds().get(component)
    while before is not None:
        time.sleep(window_s)
        after = deployment.cpu_seconds().get(component)
        if after is None:
            return None
        usage = 100.0 * (after - before) / window_s
        if usage < below_pct:
            return None
        if time.monotonic() > deadline:
            return usage
        before = after
    return None


def _group_axes(
    config: BenchConfig, group: Sequence[Cell], deployment: Deployment, say: Callable[[str], None]
) -> axes.CellAxes:
    """Pin the system and ready the Redis quota; each cell sets its own store distance
    and quota (CellAxes.before)."""
    first = group[0]
    netem = None
    if first.store.proxied and first.store.via == NETEM:
        try:
            netem = NetemLink(port=redis_port(deployment))
        except NetemError as err:
            raise DeploymentError(str(err)) from err
        say(f"  store link: netem on lo for Redis's port {netem.port} (set cell by cell)")
    elif first.store.proxied:
        say("  store link: through the delay proxy (its delay is set cell by cell)")
    if config.placement is not None:
        config.placement.pin_system(deployment)
    cap = None
    if any(cell.redis_cpus is not None for cell in group):
        cap = axes.RedisCap(deployment, f"authbench-{config.run_id}-{first.cell_id}")
    return axes.CellAxes(
        deployment,
        # The store PING runs from here: only where Redis is reachable from the harness.
        services_redis_url=(
            deployment.services_redis_url if deployment.redis_address is not None else None
        ),
        cap=cap,
        placement=config.placement,
        netem=netem,
    )


def deployment_for(config: BenchConfig, first: Cell) -> Deployment:
    """The deployment a group of cells runs on: the target's, with the group's settings."""
    settings = {
        "AUTH_SEED_USERS": str(max(config.protocol.accounts, 1)),
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "0",
        **config.settings_env,
        **axes.token_settings(first.token_bytes),
        **first.deployment,  # what the mode needs (authbench.modes): JWT_REVOCATION, ...
        "JWT_ALG": first.jwt_alg,
    }
    spec = DeploymentSpec(
        replicas=first.replicas,
        settings=settings,
        port_base=config.port_base,
        workdir=PROJECT_ROOT / ".authbench" / f"bench-{config.run_id}",
        project=config.compose_project,
        # The proxy sits in the path for the group's life; netem needs no process.
        redis_delay_ms=(
            first.store.one_way_ms if first.store.proxied and first.store.via != NETEM else None
        ),
        external=config.external,
        store=StoreTopology.parse(first.topology),
        gateway=first.gateway,
    )
    return open_deployment(config.target, spec)


def _run_group(
    config: BenchConfig,
    group: Sequence[Cell],
    run_dir: Path,
    progress: Progress,
    say: Callable[[str], None],
    results: list[CellResult],
) -> None:
    """Run one group's cells on one deployment, appending each result as soon as it exists."""
    first = group[0]
    deployment = deployment_for(config, first)
    say(
        f"  starting the {config.target} deployment: {first.replicas} replica(s), "
        f"JWT_REVOCATION={first.revocation}, JWT_ALG={first.jwt_alg}, gateway {first.gateway}"
    )
    try:
        deployment.start()
    except (DeploymentError, OSError) as err:  # start() leaves nothing running then
        say(f"  the deployment did not start: {err}")
        for cell in group:
            progress.cell_started(cell)
            error = f"{config.target} deployment did not start: {err}"
            result = failed(cell, run_dir / "cells" / cell.cell_id, "deployment", error)
            results.append(result)
            progress.cell_done(result)
        return
    cell_axes: axes.CellAxes | None = None
    try:
        # The auth service hashes the seeded passwords (argon2id) in the background after
        # it is ready; measuring before it is done would measure that, not the cell.
        busy = wait_quiet(deployment)
        if busy is not None:
            say(f"  note: the auth service was still busy ({busy:.0f}% CPU) after the wait")
        cell_axes = _group_axes(config, group, deployment, say)
        target = Target(
            host=deployment.gateway_url,
            replica_urls=tuple(deployment.replica_urls()),
            sampling=functools.partial(Sampling, deployment),
            axes=cell_axes,
        )
        for cell in group:
            tick = progress.cell_started(cell)
            cell_dir = run_dir / "cells" / cell.cell_id
            result = measure(cell, target, config.protocol, cell_dir, tick)
            results.append(result)
            progress.cell_done(result)
            time.sleep(config.protocol.rest_s)
    finally:
        if cell_axes is not None:
            cell_axes.close()  # lift Redis's quota and remove its cgroup
        try:
            deployment.stop()
        except DeploymentError as err:  # e.g. the engine went away: the cells are measured
            say(f"  note: stopping the {config.target} deployment failed: {err}")
