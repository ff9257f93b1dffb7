"""`authbench soak`: the criteria on made-up series, and one short real soak (CI's).

The short soak runs the real command: a cluster of every mode, Locust, sampling every
5 s. Its bounds are wide except one that cannot be met, so the test sees both sides:
the criteria that pass, and a failing one that makes the command exit 1 and name it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from authbench.commands.soak import duration
from authbench.soak.criteria import Bounds, evaluate, failed, slope_per_hour
from authbench.soak.sampling import ProcessReading, RedisReading, Sample, key_prefix


def _sample(t: float, rss: float, fds: int, redis_mb: float, keys: int, events: int) -> Sample:
    return Sample(
        t_s=t,
        at_utc=t,
        processes={"auth": ProcessReading(rss, fds)},
        redis=RedisReading(redis_mb, keys, {"s:": keys}, 0, min(keys, 200)),
        auth_events=events,
    )


def test_a_flat_series_passes_and_each_kind_of_growth_fails_its_own_check() -> None:
    flat = [_sample(60.0 * i, 100.0, 40, 2.0, 50, 20 * i) for i in range(30)]
    assert not failed(evaluate(flat, 300, Bounds(), accounts=20, key_lifetime_s=120))

    leaking_rss = [_sample(60.0 * i, 100.0 + i, 40, 2.0, 50, 20 * i) for i in range(30)]
    names = [c.name for c in failed(evaluate(leaking_rss, 300, Bounds(), 20, 120))]
    assert names == ["rss slope auth"]  # 60 MB/h against 20

    leaking_fds = [_sample(60.0 * i, 100.0, 40 + i, 2.0, 50, 20 * i) for i in range(30)]
    assert [c.name for c in failed(evaluate(leaking_fds, 300, Bounds(), 20, 120))] == [
        "fd slope auth"
    ]

    # Keys that keep growing while the load's rate stays the same: past the bound of
    # 4 x 20 accounts + 3 x the events of the last two minutes (40 of them).
    leaking_keys = [_sample(60.0 * i, 100.0, 40, 2.0 + 0.01 * i, 50 + 10 * i, 20 * i)
                    for i in range(30)]  # fmt: skip
    assert [c.name for c in failed(evaluate(leaking_keys, 300, Bounds(), 20, 120))] == [
        "keys bounded by live credentials"
    ]


def test_a_key_without_ttl_fails() -> None:
    samples = [_sample(60.0 * i, 100.0, 40, 2.0, 50, 20 * i) for i in range(10)]
    samples[-1].redis = RedisReading(2.0, 50, {"s:": 50}, 1, 50)
    assert [c.name for c in failed(evaluate(samples, 60, Bounds(), 20, 120))] == [
        "keys without a TTL"
    ]


def test_too_few_samples_after_the_warm_up_is_a_failure_not_a_pass() -> None:
    samples = [_sample(10.0 * i, 100.0, 40, 2.0, 50, 0) for i in range(5)]
    assert [c.name for c in evaluate(samples, 35, Bounds(), 20, 120)] == ["samples after warm-up"]


def test_slope_is_least_squares_per_hour() -> None:
    assert slope_per_hour([(0, 1.0), (1800, 2.0), (3600, 3.0)]) == pytest.approx(2.0)
    assert slope_per_hour([(0, 1.0), (60, 2.0)]) is None


def test_prefixes_and_durations() -> None:
    assert key_prefix("s:" + "a" * 64) == "s:"
    assert key_prefix("lf:u:user1") == "lf:u:"
    assert key_prefix("us:user12") == "us:"
    assert key_prefix("plainkey") == "(none)"
    assert duration("30m") == 1800 and duration("1h30m") == 5400 and duration("90") == 90
    for bad in ("", "soon", "0s", "-5m"):
        with pytest.raises(Exception, match="duration"):
            duration(bad)


@pytest.mark.slow
def test_a_short_soak_samples_everything_and_names_the_failed_criterion(tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "authbench", "soak", "--duration", "30s", "--interval", "5s",
        "--warmup", "10s", "--lifetime", "5", "--users-per-mode", "2",
        "--results-dir", str(tmp_path),
        # Wide bounds: 30 s of samples make a slope mostly noise...
        "--max-rss-mb-per-h", "100000", "--max-redis-mb-per-h", "100000",
        # ...but this one no series can meet: the command must fail and say which.
        "--max-fds-per-h", "-1000000",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "soak FAILED" in done.stderr and "fd slope" in done.stderr
    assert "rss slope" not in done.stderr  # the others passed

    (run_dir,) = tmp_path.iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "soak" and manifest["passed"] is False
    checks = {c["name"]: c for c in manifest["checks"]}
    assert checks["keys without a TTL"]["passed"]
    assert checks["keys bounded by live credentials"]["passed"]
    assert checks["redis used_memory slope"]["passed"]
    for name in ("auth", "gateway", "redis", "resource-1"):
        assert not checks[f"fd slope {name}"]["passed"]
        assert checks[f"rss slope {name}"]["passed"]
    samples = json.loads((run_dir / "samples.json").read_text())
    assert len(samples) >= 6
    last = samples[-1]
    assert {"auth", "gateway", "redis", "resource-1", "loadgen"} <= set(last["processes"])
    assert all(p["rss_mb"] > 1 and p["fds"] > 0 for p in last["processes"].values())
    assert last["redis"]["used_memory_mb"] > 0 and last["auth_events"] > 0
    # Every mode's credentials are in Redis: sessions, refresh tokens, their indexes.
    assert {"s:", "us:", "rt:", "uf:"} <= set(last["redis"]["keys_by_prefix"])
    for mode in manifest["settings"]["modes"]:
        assert manifest["load"]["requests_per_mode"].get(mode, 0) > 0, mode
    for chart in ("rss.png", "fds.png", "redis_memory.png", "keys.png"):
        assert (run_dir / chart).stat().st_size > 5000
