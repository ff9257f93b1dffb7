"""A cgroup CPU quota on a real CPU-burning process, measured from the cgroup's own
accounting; the clear errors where no cgroup can be made; core pinning."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authbench import cgroups

BURN = "while True: pass"


def _cgroup_or_skip() -> cgroups.Hierarchy:
    try:
        return cgroups.detect()
    except cgroups.CgroupError as err:
        pytest.skip(str(err))


@pytest.fixture
def burner() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", BURN])
    yield process
    process.kill()
    process.wait()


def _cores_used(quota: cgroups.CpuQuota, seconds: float) -> float:
    before, started = quota.usage_s(), time.monotonic()
    time.sleep(seconds)
    return (quota.usage_s() - before) / (time.monotonic() - started)


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_a_burner_capped_at_a_fifth_of_a_core_uses_no_more(
    burner: subprocess.Popen[bytes],
) -> None:
    hierarchy = _cgroup_or_skip()
    with cgroups.CpuQuota.create(f"authbench-test-{os.getpid()}", 0.2, hierarchy) as quota:
        quota.attach(burner.pid)
        assert quota.pids() == [burner.pid]
        capped = _cores_used(quota, 3.0)
        throttled = quota.throttling()
        # The cap, from the cgroup's own accounting: 0.2 core, with 0.1 core of slack.
        assert 0.0 < capped <= 0.2 + 0.1, capped
        assert throttled["throttled_periods"] > 0  # the kernel really held it back
        # Measured as the share of CFS periods throttled: under the 0.2 cap nearly every
        # period is. Lifted to two cores, which one thread cannot use (at exactly one core
        # the short CFS periods still throttle it now and then: half the periods were, once).
        capped_share = throttled["throttled_periods"] / max(1.0, throttled["periods"])
        quota.set_cores(2.0)
        before = quota.throttling()
        _cores_used(quota, 1.5)
        after = quota.throttling()
        periods = max(1.0, after["periods"] - before["periods"])
        lifted_share = (after["throttled_periods"] - before["throttled_periods"]) / periods
        assert capped_share > 0.5, capped_share
        assert lifted_share < capped_share / 4, (lifted_share, capped_share)
        directory = quota.cpu_dir
    assert not directory.exists()  # removed, and the burner is back where it came from
    assert burner.poll() is None


def test_no_writable_cgroup_is_a_clear_error_naming_the_flag(tmp_path: Path) -> None:
    mounts = f"cgroup {tmp_path}/cpu cgroup rw,relatime,cpu 0 0\n"
    (tmp_path / "cpu").mkdir()  # no cpu.cfs_quota_us: not a real controller
    with pytest.raises(cgroups.CgroupError, match="--redis-cpus") as err:
        cgroups.detect(mounts, "1:cpu:/\n")
    assert "cpu.cfs_quota_us" in str(err.value)
    with pytest.raises(cgroups.CgroupError, match=r"--redis-cpus.*no cgroup file system"):
        cgroups.detect("proc /proc proc rw 0 0\n", "0::/\n")


def test_v2_without_the_cpu_controller_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    mounts = f"cgroup2 {tmp_path} cgroup2 rw 0 0\n"
    with pytest.raises(cgroups.CgroupError, match=r"v2 .* no writable cpu controller"):
        cgroups.detect(mounts, "0::/\n")


def test_v2_with_cpu_is_chosen(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "cgroup.controllers").write_text("cpu memory\n")
    found = cgroups.detect(f"cgroup2 {tmp_path} cgroup2 rw 0 0\n", "0::/bench\n")
    assert found.version == 2 and found.cpu_parent == tmp_path / "bench"


@pytest.mark.parametrize("cores", [0.0, -0.5, 0.001])
def test_a_zero_negative_or_tiny_quota_is_refused_naming_the_flag(cores: float) -> None:
    with pytest.raises(ValueError, match="--redis-cpus"):
        cgroups.validate_cores(cores)


def test_pin_moves_every_thread_of_a_process_tree(burner: subprocess.Popen[bytes]) -> None:
    cpus = cgroups.available_cpus()
    target = [cpus[-1]]
    assert burner.pid in cgroups.pin([burner.pid], target)
    assert cgroups.affinity(burner.pid) == target


def test_the_period_is_as_short_as_the_kernels_minimum_quota_allows() -> None:
    assert cgroups.period_us(0.05) == 20_000  # 1 ms of every 20 ms: stalls of 19 ms at most
    assert cgroups.period_us(0.01) == 100_000
    assert cgroups.period_us(0.5) == 10_000 and cgroups.period_us(4.0) == 10_000
