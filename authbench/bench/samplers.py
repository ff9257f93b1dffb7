"""What a cell records besides Locust: Redis INFO, process CPU, the replicas' /metrics.

Each sampler takes a snapshot at the start and at the end of the capture window; the
figures are the differences divided by the window, so warm-up and rest never leak in.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

from authbench.bench.statistics import Bucket, bucket_delta, merge_buckets
from authbench.compose import ComposeError, ComposeTarget

VALIDATION_METRIC = "authbench_credential_validation_seconds"


# --- Redis -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RedisSnapshot:
    at: float
    commands: int  # total_commands_processed
    cpu_s: float  # used_cpu_sys + used_cpu_user
    per_command: dict[str, int]  # calls per command, from commandstats


@dataclass(frozen=True)
class RedisWindow:
    seconds: float
    commands: int
    ops_per_s: float
    cpu_pct: float  # percent of one core
    per_command: dict[str, int]


class RedisSampler:
    """Reads `INFO all` from the cluster's redis-server (one command per snapshot).

    One connection is kept for the sampler's life, so a window counts exactly one
    command of ours (the start snapshot's INFO), which `window` takes out.
    """

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def close(self) -> None:
        self._client.close()

    def snapshot(self) -> RedisSnapshot | None:
        try:
            info: dict[str, Any] = self._client.info("all")
        except redis.RedisError:
            return None
        per_command = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_") and isinstance(value, dict)
        }
        return RedisSnapshot(
            at=time.monotonic(),
            commands=int(info["total_commands_processed"]),
            cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            per_command=per_command,
        )

    @staticmethod
    def window(start: RedisSnapshot | None, end: RedisSnapshot | None) -> RedisWindow | None:
        if start is None or end is None or end.at <= start.at:
            return None
        seconds = end.at - start.at
        # The start snapshot's own INFO is counted in the window: take it out.
        commands = max(0, end.commands - start.commands - 1)
        per_command = {
            name: calls - start.per_command.get(name, 0)
            for name, calls in end.per_command.items()
            if calls - start.per_command.get(name, 0) > 0
        }
        if per_command.get("info", 0) > 0:
            per_command["info"] -= 1
            if per_command["info"] == 0:
                del per_command["info"]
        return RedisWindow(
            seconds=seconds,
            commands=commands,
            ops_per_s=commands / seconds,
            cpu_pct=100.0 * max(0.0, end.cpu_s - start.cpu_s) / seconds,
            per_command=per_command,
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
        # Keep psutil.Process objects so per-process CPU is read consistently.
        self._seen: dict[int, psutil.Process] = {}

    def _tree_cpu(self, pid: int) -> float:
        total = 0.0
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(
            at=time.monotonic(),
            cpu_s={name: self._tree_cpu(pid) for name, pid in self._roots.items()},
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


class MetricsScraper:
    """Scrapes every replica's /metrics directly (not through the gateway)."""

    def __init__(self, urls: Iterable[str]) -> None:
        self._urls = [url.rstrip("/") + "/metrics" for url in urls]

    def snapshot(self) -> ValidationSnapshot:
        pages: list[ValidationSnapshot] = []
        for url in self._urls:
            try:
                with urllib.request.urlopen(url, timeout=3.0) as resp:  # noqa: S310 - loopback
                    pages.append(parse_validation(resp.read().decode()))
            except (OSError, ValueError):
                continue
        return merge_validation(pages)


# --- one object per target: what a cell snapshots ------------------------------------
class Sampling:
    """The three snapshots a cell takes at each end of its capture window."""

    def redis(self) -> RedisSnapshot | None:
        raise NotImplementedError

    def cpu(self) -> CpuSnapshot:
        raise NotImplementedError

    def validation(self) -> ValidationSnapshot:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the default has none."""


class LocalSampling(Sampling):
    """Processes the bench started: Redis over TCP, psutil by PID, /metrics over HTTP."""

    def __init__(
        self, redis_url: str, processes: Mapping[str, int | None], replica_urls: Iterable[str]
    ) -> None:
        self._redis = RedisSampler(redis_url)
        self._cpu = ProcessCpuSampler(processes)
        self._metrics = MetricsScraper(replica_urls)

    def redis(self) -> RedisSnapshot | None:
        return self._redis.snapshot()

    def cpu(self) -> CpuSnapshot:
        return self._cpu.snapshot()

    def validation(self) -> ValidationSnapshot:
        return self._metrics.snapshot()

    def close(self) -> None:
        self._redis.close()


# Fetch /metrics from inside a replica container (its port is not published).
_METRICS_PROBE = (
    "import sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8101/metrics', timeout=5)"
    ".read().decode())"
)


class ComposeSampling(Sampling):
    """The compose stack: INFO through `redis-cli` in the redis container, CPU from the
    containers' cgroups, /metrics fetched inside each resource container; the load
    generator (a local process) by psutil."""

    def __init__(self, target: ComposeTarget, loadgen_pid: int | None) -> None:
        self._target = target
        self._loadgen = ProcessCpuSampler({"loadgen": loadgen_pid})

    def redis(self) -> RedisSnapshot | None:
        try:
            info = self._target.redis_info("all")
        except ComposeError:
            return None
        per_command = {}
        for key, value in info.items():
            if key.startswith("cmdstat_"):
                fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
                per_command[key.removeprefix("cmdstat_")] = int(fields.get("calls", 0))
        try:
            return RedisSnapshot(
                at=time.monotonic(),
                commands=int(info["total_commands_processed"]),
                cpu_s=float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                per_command=per_command,
            )
        except (KeyError, ValueError):
            return None

    def cpu(self) -> CpuSnapshot:
        groups: dict[str, float] = {}
        try:
            usage = self._target.cpu_seconds()
            containers = {c.name: c for c in self._target.containers()}
        except ComposeError:
            usage, containers = {}, {}
        for name, seconds in usage.items():
            container = containers.get(name)
            service = container.service if container else name
            if service == "resource":
                service = "resource-" + name.rsplit("-", 1)[-1]
            groups[service] = groups.get(service, 0.0) + seconds
        loadgen = self._loadgen.snapshot()
        groups.update(loadgen.cpu_s)
        return CpuSnapshot(at=loadgen.at, cpu_s=groups)

    def validation(self) -> ValidationSnapshot:
        pages: list[ValidationSnapshot] = []
        try:
            replicas = [c for c in self._target.containers("resource") if c.state == "running"]
        except ComposeError:
            replicas = []
        for container in replicas:
            try:
                done = subprocess.run(
                    ["docker", "exec", container.id, "python", "-S", "-c", _METRICS_PROBE],
                    capture_output=True, text=True, timeout=20, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0:
                with contextlib.suppress(ValueError):
                    pages.append(parse_validation(done.stdout))
        return merge_validation(pages)
