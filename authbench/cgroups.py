"""CPU for one process, on purpose: a cgroup CPU quota (`--redis-cpus`) and core pinning
(`--pin`).

A quota makes the store's capacity an axis of the bench: redis-server capped at 0.05 core
saturates at a rate a 2-core machine can offer, so its ceiling can be measured, not just
guessed. Either cgroup version works:

- v1: the `cpu` controller's `cpu.cfs_quota_us` / `cpu.cfs_period_us` (its usage from the
  `cpuacct` controller, mounted with it or on its own);
- v2: `cpu.max` (usage from `cpu.stat`'s `usage_usec`).

    with CpuQuota.create("bench-20261201-redis", cores=0.05) as quota:
        quota.attach(redis_pid)
        ...                       # quota.usage_s() and quota.throttling() as data
    # the group is removed; its processes are back in the group they came from

Where neither version is writable, CgroupError says so and names `--redis-cpus`.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_PERIOD_US = 100_000  # the kernel's default CFS period
MIN_PERIOD_US = 10_000
MIN_QUOTA_US = 1_000  # the kernel refuses less than 1 ms per period
FLAG = "--redis-cpus"


class CgroupError(RuntimeError):
    pass


def validate_cores(cores: float, flag: str = FLAG) -> float:
    """A quota in cores: more than 0 (0 would stop the process), at least 1 ms per period."""
    if not cores > 0:
        raise ValueError(f"{flag}: a CPU quota must be more than 0 cores, got {cores:g}")
    if cores * MAX_PERIOD_US < MIN_QUOTA_US:
        raise ValueError(f"{flag}: at least {MIN_QUOTA_US / MAX_PERIOD_US:g} core, got {cores:g}")
    return cores


def period_us(cores: float) -> int:
    """The shortest CFS period that still gives the kernel's minimum quota (1 ms), 10 to
    100 ms. A capped process runs its quota, then waits out the period: 0.05 core with
    the default 100 ms period would stall Redis 95 ms at a time, a stutter no slow core
    has; with 20 ms periods the same 0.05 core stalls at most 19 ms."""
    return int(min(MAX_PERIOD_US, max(MIN_PERIOD_US, MIN_QUOTA_US / cores)))


@dataclass(frozen=True)
class Hierarchy:
    """Where this machine lets us make a CPU-limited group."""

    version: int  # 1 or 2
    cpu_parent: Path  # the group new groups are made in (our own group)
    acct_parent: Path | None  # v1: the cpuacct group to account in (None: same as cpu)


def _mounts(mounts_text: str) -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of every cgroup mount."""
    found = []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
            found.append((parts[1], parts[2], set(parts[3].split(","))))
    return found


def _own_group(self_cgroup: str, controller: str) -> str:
    """Our group's path in one hierarchy ('' controller: the v2 unified one)."""
    for line in self_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller == "" and controllers == "") or controller in controllers.split(","):
            return path.lstrip("/")
    return ""


def detect(mounts_text: str | None = None, self_cgroup: str | None = None) -> Hierarchy:
    """The writable CPU controller, v1 first; CgroupError naming the flag when none is."""
    mounts_text = mounts_text if mounts_text is not None else Path("/proc/mounts").read_text()
    self_cgroup = self_cgroup if self_cgroup is not None else Path("/proc/self/cgroup").read_text()
    mounts = _mounts(mounts_text)
    tried: list[str] = []
    cpu_v1 = next((m for m in mounts if m[1] == "cgroup" and "cpu" in m[2]), None)
    if cpu_v1 is not None:
        parent = Path(cpu_v1[0]) / _own_group(self_cgroup, "cpu")
        acct = next((m for m in mounts if m[1] == "cgroup" and "cpuacct" in m[2]), None)
        acct_parent = Path(acct[0]) / _own_group(self_cgroup, "cpuacct") if acct else None
        if (parent / "cpu.cfs_quota_us").exists() and os.access(parent, os.W_OK):
            same = acct_parent is not None and acct_parent.resolve() == parent.resolve()
            return Hierarchy(1, parent, None if same else acct_parent)
        tried.append(f"cgroup v1 {parent} (cpu.cfs_quota_us) is not writable")
    for mount_point, fstype, _ in mounts:
        if fstype != "cgroup2":
            continue
        parent = Path(mount_point) / _own_group(self_cgroup, "")
        controllers = _read(parent / "cgroup.controllers").split()
        if "cpu" in controllers and os.access(parent, os.W_OK):
            return Hierarchy(2, parent, None)
        tried.append(f"cgroup v2 {parent} has no writable cpu controller")
    if not tried:
        tried.append("no cgroup file system is mounted")
    raise CgroupError(
        f"{FLAG} needs a writable cgroup CPU controller (v1 cpu.cfs_quota_us or v2 "
        f"cpu.max), usually as root; none here: {'; '.join(tried)}"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as err:
        raise CgroupError(f"{FLAG}: could not write {text.strip()!r} to {path}: {err}") from err


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)[:100]


@dataclass
class CpuQuota:
    """One child group with a CPU quota; remove() (or leaving `with`) deletes it."""

    hierarchy: Hierarchy
    name: str
    cores: float
    cpu_dir: Path = field(init=False)
    acct_dir: Path | None = field(init=False, default=None)

    @classmethod
    def create(cls, name: str, cores: float, hierarchy: Hierarchy | None = None) -> CpuQuota:
        validate_cores(cores)
        quota = cls(hierarchy or detect(), _safe(name), cores)
        quota._make()
        return quota

    def _make(self) -> None:
        self.cpu_dir = self.hierarchy.cpu_parent / self.name
        if self.hierarchy.version == 2:
            control = self.hierarchy.cpu_parent / "cgroup.subtree_control"
            if "cpu" not in _read(control).split():
                _write(control, "+cpu")
        try:
            self.cpu_dir.mkdir(exist_ok=True)
            if self.hierarchy.acct_parent is not None:
                self.acct_dir = self.hierarchy.acct_parent / self.name
                self.acct_dir.mkdir(exist_ok=True)
        except OSError as err:
            raise CgroupError(f"{FLAG}: could not create the group {self.name}: {err}") from err
        self.set_cores(self.cores)

    def set_cores(self, cores: float) -> None:
        validate_cores(cores)
        self.cores = cores
        period = period_us(cores)
        quota_us = round(cores * period)
        if self.hierarchy.version == 1:
            _write(self.cpu_dir / "cpu.cfs_quota_us", "-1")  # a period below the quota fails
            _write(self.cpu_dir / "cpu.cfs_period_us", str(period))
            _write(self.cpu_dir / "cpu.cfs_quota_us", str(quota_us))
        else:
            _write(self.cpu_dir / "cpu.max", f"{quota_us} {period}")

    def attach(self, pid: int) -> None:
        """Move a process (all its threads) into the group."""
        for directory in (self.cpu_dir, self.acct_dir):
            if directory is not None:
                _write(directory / "cgroup.procs", str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in _read(self.cpu_dir / "cgroup.procs").split()]

    def usage_s(self) -> float:
        """CPU seconds used by the group's processes since they joined it."""
        if self.hierarchy.version == 2:
            stat = _stat(self.cpu_dir / "cpu.stat")
            return stat.get("usage_usec", 0) / 1e6
        acct = self.acct_dir if self.acct_dir is not None else self.cpu_dir
        text = _read(acct / "cpuacct.usage").strip()
        return int(text) / 1e9 if text else float("nan")

    def throttling(self) -> dict[str, float]:
        """How often the quota held the group back (periods, throttled periods, seconds)."""
        stat = _stat(self.cpu_dir / "cpu.stat")
        throttled_s = (
            stat.get("throttled_usec", 0) / 1e6
            if self.hierarchy.version == 2
            else stat.get("throttled_time", 0) / 1e9
        )
        return {
            "periods": float(stat.get("nr_periods", 0)),
            "throttled_periods": float(stat.get("nr_throttled", 0)),
            "throttled_s": throttled_s,
        }

    def remove(self) -> None:
        """Give the processes back to the parent group and delete the group (idempotent)."""
        for directory, parent in (
            (self.cpu_dir, self.hierarchy.cpu_parent),
            (self.acct_dir, self.hierarchy.acct_parent),
        ):
            if directory is None or parent is None or not directory.exists():
                continue
            for pid in _read(directory / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    (parent / "cgroup.procs").write_text(pid)
            for _ in range(50):  # a process that just exited leaves the group a moment later
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)

    def __enter__(self) -> CpuQuota:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _stat(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in _read(path).splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


# --- core pinning (--pin) --------------------------------------------------------------
def available_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin(pids: Iterable[int], cpus: Iterable[int]) -> list[int]:
    """Restrict processes, every thread and child of them, to `cpus`; returns the pids set.

    Threads are set one by one (sched_setaffinity acts on one thread); threads and
    children started later inherit the mask of the thread that starts them.
    """
    import psutil

    mask = set(cpus)
    done: list[int] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in tree:
            with contextlib.suppress(psutil.Error, OSError):
                for thread in process.threads():
                    with contextlib.suppress(OSError):
                        os.sched_setaffinity(thread.id, mask)
                done.append(process.pid)
    return done


def affinity(pid: int) -> list[int]:
    return sorted(os.sched_getaffinity(pid))
