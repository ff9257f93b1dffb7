"""The store axes end to end: real clusters, the real delay proxy, a real cgroup quota on
redis-server, real Locust; figures read back from summary.csv."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from authbench import cgroups
from authbench.bench import axes
from authbench.bench.summary import SummaryRow, read_summary
from authbench.process import PROJECT_ROOT, free_port_block


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authbench", "bench", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def tiny(results: Path, run_id: str, *extra: str, timeout: float = 150) -> Path:
    done = bench(
        "--replicas", "1", "--warmup", "1.5", "--capture", "3", "--rest", "0",
        "--accounts", "10", "--no-report", "--no-locust-html",
        "--port-base", str(free_port_block()), "--results-dir", str(results),
        "--run-id", run_id, *extra,
        timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return results / run_id


def by(rows: list[SummaryRow], mode: str, link: str, rtt: float) -> SummaryRow:
    found = [r for r in rows if r.mode == mode and r.store_link == link and r.store_rtt_ms == rtt]
    assert len(found) == 1, [(r.mode, r.store_link, r.store_rtt_ms) for r in rows]
    return found[0]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_4ms_store_puts_4ms_on_every_session_read_and_none_on_jwt(tmp_path: Path) -> None:
    run = tiny(tmp_path, "rtt", "--modes", "session,jwt", "--loads", "4@10", "--store-rtt", "4")
    rows = read_summary(run / "summary.csv")
    assert len(rows) == 2 * 3  # direct, the link at 0 ms (the control), the link at 4 ms
    for row in rows:
        assert not row.error, row.error
        assert row.read_p50_us > 0 and row.read_p999_us >= row.read_p50_us  # µs columns
    manifest = json.loads((run / "manifest.json").read_text())
    # The link --store-link auto chose: the proxy here, netem where the kernel has it.
    via = manifest["settings"]["store_link_via"]
    session, jwt = by(rows, "session", via, 4.0), by(rows, "jwt", via, 4.0)
    assert session.read_p50_us >= jwt.read_p50_us + 3000, (session.read_p50_us, jwt.read_p50_us)
    assert session.store_ping_us >= 4000  # the distance as the services' own path sees it
    assert by(rows, "session", "direct", 0.0).store_ping_us < 2000
    assert by(rows, "session", "direct", 0.0).store_link == "direct"
    if via == "proxy":
        assert session.cpu_proxy_pct > 0 and "proxy" in manifest["settings"]["store_link"]
    assert manifest["settings"]["matrix"]["store_rtt_ms"] == ["direct", "rtt0ms", "rtt4ms"]


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_a_capped_redis_is_never_measured_above_its_cap(tmp_path: Path) -> None:
    try:
        cgroups.detect()
    except cgroups.CgroupError as err:
        pytest.skip(str(err))
    cap = 0.02  # below what Redis wants at this load even on a busy machine: it must bind
    run = tiny(tmp_path, "cap", "--modes", "session", "--loads", "16", "--redis-cpus", "0.02,none")
    rows = {r.redis_cpus == cap: r for r in read_summary(run / "summary.csv")}
    capped, free = rows[True], rows[False]
    for row in (capped, free):
        assert not row.error, row.error
    # Both the process's CPU (psutil) and Redis's own INFO stay within 10% of a core of it,
    # and INFO (getrusage, µs precise) within 1.5% of a core.
    assert capped.cpu_redis_pct <= 100 * (cap + 0.10), capped.cpu_redis_pct
    assert capped.redis_cpu_pct <= 100 * (cap + 0.10), capped.redis_cpu_pct
    assert capped.redis_cpu_pct <= 100 * cap + 1.5, capped.redis_cpu_pct
    assert capped.redis_throttled_pct > 0  # the quota really held Redis back
    assert math.isnan(free.redis_throttled_pct)  # and the uncapped cell had none
    assert not list(Path("/sys/fs/cgroup/cpu").glob("authbench-cap-*"))  # groups removed


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--store-rtt", "-1", "--store-rtt: a round trip is 0 to"),
        ("--redis-cpus", "0", "--redis-cpus: a CPU quota must be more than 0 cores"),
        ("--token-bytes", "-5", "--token-bytes: 0 to"),
    ],
)
def test_a_bad_flag_is_one_clear_line_naming_it(flag: str, value: str, message: str) -> None:
    done = bench(flag, value, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_no_cgroup_is_a_clear_error_naming_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    def nothing_writable() -> cgroups.Hierarchy:
        raise cgroups.CgroupError("--redis-cpus needs a writable cgroup CPU controller")

    monkeypatch.setattr(cgroups, "detect", nothing_writable)
    with pytest.raises(ValueError, match="--redis-cpus"):
        axes.check_redis_cpus_possible("local", [0.05])
    assert axes.check_redis_cpus_possible("local", [None]) == "none"  # uncapped needs none
