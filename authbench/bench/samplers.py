"""What a cell records besides Locust: Redis INFO, process CPU, the replicas' /metrics.

Each sampler takes a snapshot at the start and at the end of the capture window; the
figures are the differences divided by the window, so warm-up and rest never leak in.
The figures come from the deployment (authbench.targets.base.Deployment: `redis_info`,
`cpu_seconds`, `metrics_pages`), so one `Sampling` serves every target; the load
generator, a local process, is measured here by PID.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from authbench.bench.statistics import Bucket, bucket_delta, merge_buckets
from authbench.process import tree_cpu_seconds
from authbench.targets.base import Deployment, DeploymentError

VALIDATION_METRIC = "authbench_credential_validation_seconds"


# --- Redis -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RedisSnapshot:
    at: float
    commands: int  # total_commands_processed
    cpu_s: float  # used_cpu_sys + used_cpu_user
    per_command: dict[str, int]  # calls per command, from commandstats
    # A store of several nodes (a Redis Cluster's shards): each node's own snapshot; the
    # fields above are their sums.
    nodes: dict[str, RedisSnapshot] = field(default_factory=dict)


@dataclass(frozen=True)
class RedisWindow:
    seconds: float
    commands: int
    ops_per_s: float
    cpu_pct: float  # percent of one core
    per_command: dict[str, int]
    nodes: dict[str, RedisWindow] = field(default_factory=dict)  # each node's own window


class RedisSampler:
    """Redis INFO snapshots (the deployment keeps one connection for its life where it
    can, so a window counts exactly one command of ours: the start snapshot's INFO,
    which `window` takes out)."""

    @staticmethod
    def snapshot(info: Mapping[str, Any]) -> RedisSnapshot | None:
        """A snapshot of `INFO all` as a flat dict (`cmdstat_*` values parsed by redis-py
        as dicts, or as redis-cli prints them: `calls=N,usec=...`)."""
        per_command = {}
        for key, value in info.items():
            if not key.startswith("cmdstat_"):
                continue
            if isinstance(value, str):
                value = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            per_command[key.removeprefix("cmdstat_")] = int(value.get("calls", 0))
        try:
            return RedisSnapshot(
                at=time.monotonic(),
                commands=int(info["total_commands_processed"]),
                cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                per_command=per_command,
            )
        except (KeyError, ValueError):
            return None

    @staticmethod
    def combine(nodes: Mapping[str, RedisSnapshot | None]) -> RedisSnapshot | None:
        """One snapshot of a store of several nodes: the sums, with each node's own
        (None when any node could not be read: a partial sum would understate the load)."""
        if not nodes or any(s is None for s in nodes.values()):
            return None
        found = {name: s for name, s in nodes.items() if s is not None}
        if len(found) == 1:
            return next(iter(found.values()))
        per_command: dict[str, int] = {}
        for snapshot in found.values():
            for name, calls in snapshot.per_command.items():
                per_command[name] = per_command.get(name, 0) + calls
        return RedisSnapshot(
            at=max(s.at for s in found.values()),
            commands=sum(s.commands for s in found.values()),
            cpu_s=sum(s.cpu_s for s in found.values()),
            per_command=per_command,
            nodes=found,
        )

    @staticmethod
    def window(start: RedisSnapshot | None, end: RedisSnapshot | None) -> RedisWindow | None:
        if start is None or end is None or end.at <= start.at:
            return None
        seconds = end.at - start.at
        # Each node's start INFO is counted in the window: take it out.
        ours = max(1, len(start.nodes))
        commands = max(0, end.commands - start.commands - ours)
        per_command = {
            name: calls - start.per_command.get(name, 0)
            for name, calls in end.per_command.items()
            if calls - start.per_command.get(name, 0) > 0
        }
        if per_command.get("info", 0) > 0:
            per_command["info"] -= min(ours, per_command["info"])
            if per_command["info"] == 0:
                del per_command["info"]
        nodes = {}
        for name, first in start.nodes.items():
            node = RedisSampler.window(first, end.nodes.get(name))
            if node is not None:
                nodes[name] = node
        return RedisWindow(
            seconds=seconds,
            commands=commands,
            ops_per_s=commands / seconds,
            cpu_pct=100.0 * max(0.0, end.cpu_s - start.cpu_s) / seconds,
            per_command=per_command,
            nodes=nodes,
        )


# --- process CPU -----------------------------------------------------------------------
@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    cpu_s: dict[str, float]  # group name -> user+system seconds of its process tree


class ProcessCpuSampler:
    """CPU of named process trees (a service and any workers it forked), from psutil.

    Children are included because the gateway may fork workers and Locust `--processes`
    forks generators; a tree is re-walked at every snapshot.
    """

    def __init__(self, roots: Mapping[str, int | None]) -> None:
        self._roots = {name: pid for name, pid in roots.items() if pid is not None}

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(
            at=time.monotonic(),
            cpu_s={name: tree_cpu_seconds(pid) for name, pid in self._roots.items()},
        )

    @staticmethod
    def window(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
        """Percent of one core used by each group during the window."""
        seconds = end.at - start.at
        if seconds <= 0:
            return {}
        return {
            name: 100.0 * max(0.0, end.cpu_s[name] - start.cpu_s.get(name, 0.0)) / seconds
            for name in end.cpu_s
        }


# --- server-side validation histogram ------------------------------------------------
@dataclass
class ValidationSnapshot:
    """Per (mode, outcome): cumulative buckets and sum, summed over the scraped replicas."""

    buckets: dict[tuple[str, str], list[Bucket]] = field(default_factory=dict)
    sums: dict[tuple[str, str], float] = field(default_factory=dict)
    scraped: int = 0


def parse_validation(text: str) -> ValidationSnapshot:
    """The credential-validation histogram of one /metrics page."""
    snapshot = ValidationSnapshot(scraped=1)
    raw: dict[tuple[str, str], dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != VALIDATION_METRIC:
            continue
        for sample in family.samples:
            key = (sample.labels.get("mode", ""), sample.labels.get("outcome", ""))
            if sample.name.endswith("_bucket"):
                raw.setdefault(key, {})[float(sample.labels["le"])] = float(sample.value)
            elif sample.name.endswith("_sum"):
                snapshot.sums[key] = float(sample.value)
    snapshot.buckets = {
        key: [Bucket(le, count) for le, count in sorted(bounds.items())]
        for key, bounds in raw.items()
    }
    return snapshot


def merge_validation(snapshots: Iterable[ValidationSnapshot]) -> ValidationSnapshot:
    merged = ValidationSnapshot()
    for snapshot in snapshots:
        merged.scraped += snapshot.scraped
        for key, buckets in snapshot.buckets.items():
            merged.buckets[key] = merge_buckets([merged.buckets.get(key, []), buckets])
        for key, total in snapshot.sums.items():
            merged.sums[key] = merged.sums.get(key, 0.0) + total
    return merged


def validation_delta(end: ValidationSnapshot, start: ValidationSnapshot) -> ValidationSnapshot:
    delta = ValidationSnapshot(scraped=min(end.scraped, start.scraped))
    for key, buckets in end.buckets.items():
        delta.buckets[key] = bucket_delta(buckets, start.buckets.get(key, []))
        delta.sums[key] = end.sums.get(key, 0.0) - start.sums.get(key, 0.0)
    return delta


# --- what a cell snapshots, from any deployment ---------------------------------------
class Sampling:
    """The three snapshots a cell takes at each end of its capture window."""

    def __init__(self, deployment: Deployment, loadgen_pid: int | None) -> None:
        self._deployment = deployment
        self._loadgen = ProcessCpuSampler({"loadgen": loadgen_pid})

    def redis(self) -> RedisSnapshot | None:
        """The store's INFO: of every node of a Redis Cluster, summed (and each kept)."""
        try:
            infos = self._deployment.redis_infos()
        except DeploymentError:
            return None
        return RedisSampler.combine(
            {name: RedisSampler.snapshot(info) for name, info in infos.items()}
        )

    def cpu(self) -> CpuSnapshot:
        """CPU per component (redis, auth, gateway, resource-N) and of the load generator."""
        try:
            groups = dict(self._deployment.cpu_seconds())
        except DeploymentError:
            groups = {}
        loadgen = self._loadgen.snapshot()
        groups.update(loadgen.cpu_s)
        return CpuSnapshot(at=loadgen.at, cpu_s=groups)

    def validation(self) -> ValidationSnapshot:
        pages: list[ValidationSnapshot] = []
        try:
            texts = self._deployment.metrics_pages()
        except DeploymentError:
            texts = []
        for text in texts:
            with contextlib.suppress(ValueError):
                pages.append(parse_validation(text))
        return merge_validation(pages)

    def close(self) -> None:
        self._deployment.close()
