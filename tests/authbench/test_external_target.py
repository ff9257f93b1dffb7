"""`--target external`: a deployment something else runs, measured by URL, never changed.

The "something else" is a real LocalCluster started by the test (as `authbench up` would),
on a free port block; the harness is given only its gateway URL and Redis address.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from authbench.process import PROJECT_ROOT
from authbench.targets import DeploymentSpec, open_deployment
from authbench.targets.base import DeploymentError, NotSupported
from authbench.targets.external import Endpoints, ExternalTarget, check_modes, uncontrolled
from authbench.targets.local import LocalCluster
from tests.conftest import ClusterFactory


def authbench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authbench", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("gateway", "redis_address"),
    [("127.0.0.1:8080", None), ("ftp://host", None), ("http://h:1", "nohost"), ("http://h", ":1")],
)
def test_endpoints_refuse_what_is_not_an_address(gateway: str, redis_address: str | None) -> None:
    with pytest.raises(ValueError):
        Endpoints(gateway, redis_address=redis_address)


def test_the_uncontrolled_list_says_when_redis_is_not_sampled() -> None:
    without = uncontrolled(Endpoints("http://127.0.0.1:1"))
    with_redis = uncontrolled(Endpoints("http://127.0.0.1:1", redis_address="127.0.0.1:2"))
    assert any("Redis INFO" in note for note in without)
    assert not any("Redis INFO" in note for note in with_redis)
    assert any("replica count" in note for note in with_redis)


def test_bench_cli_refuses_external_without_a_gateway_and_flags_without_external() -> None:
    done = authbench("bench", "--target", "external", "--replicas", "1", timeout=30)
    assert done.returncode == 2 and "--gateway-url" in done.stderr
    done = authbench("bench", "--redis", "127.0.0.1:1", timeout=30)
    assert done.returncode == 2 and "only with --target external" in done.stderr
    done = authbench(
        "bench", "--target", "external", "--gateway-url", "http://127.0.0.1:1",
        "--replicas", "1,2", timeout=30,
    )  # fmt: skip
    assert done.returncode == 2 and "cannot scale" in done.stderr
    done = authbench("chaos", "--target", "external", timeout=30)
    assert done.returncode == 2 and "cannot break" in done.stderr


def test_a_deployment_that_does_not_answer_is_refused_at_start() -> None:
    target = ExternalTarget(Endpoints("http://127.0.0.1:9"), ready_timeout_s=1.0)
    with pytest.raises(DeploymentError, match="not ready"):
        target.start()


def test_it_measures_a_running_cluster_and_changes_nothing(make_cluster: ClusterFactory) -> None:
    cluster: LocalCluster = make_cluster(replicas=2, env={"JWT_REVOCATION": "denylist"})
    pids = {child.name: child.pid for child in cluster.all_children()}
    endpoints = Endpoints(cluster.gateway_url, redis_address=cluster.redis_address)
    spec = DeploymentSpec(replicas=2, external=endpoints)
    target = open_deployment("external", spec)
    assert isinstance(target, ExternalTarget)
    with target:
        # Probed from behaviour, not read from a configuration it cannot see.
        assert target.settings == {"JWT_REVOCATION": "denylist"}
        info = target.redis_info()
        assert int(info["total_commands_processed"]) > 0
        for fault in ("kill_redis", "pause_redis", "start_redis", "slow_redis", "scale"):
            assert not target.supports(fault)
        with pytest.raises(NotSupported):
            target.kill_redis()
        with pytest.raises(NotSupported):
            target.scale(3)
        assert target.cpu_seconds() == {} and target.replica_urls() == []
    # stop() stopped nothing: every process is the same, still alive, still ready.
    assert all(child.alive() for child in cluster.all_children())
    assert {child.name: child.pid for child in cluster.all_children()} == pids
    # A mode whose JWT_REVOCATION differs from what the deployment runs is refused.
    assert check_modes(endpoints, ["session", "jwt+denylist"]) == {"JWT_REVOCATION": "denylist"}
    with pytest.raises(ValueError, match=r"JWT_REVOCATION=denylist.*cannot be measured as jwt"):
        check_modes(endpoints, ["session", "jwt"])
    # Without a Redis address, INFO is not supported (and the sampler leaves it empty).
    with ExternalTarget(Endpoints(cluster.gateway_url)) as bare:
        with pytest.raises(NotSupported):
            bare.redis_info()


@pytest.mark.timeout(180)
def test_bench_target_external_measures_a_running_cluster(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = make_cluster(replicas=2, env={"JWT_REVOCATION": "denylist"})
    pids = {child.name: child.pid for child in cluster.all_children()}
    done = authbench(
        "bench", "--target", "external", "--gateway-url", cluster.gateway_url,
        "--redis", cluster.redis_address, "--modes", "session,jwt+denylist",
        "--replicas", "2", "--loads", "4@10", "--warmup", "1", "--capture", "3",
        "--rest", "0", "--accounts", "20", "--results-dir", str(tmp_path),
        "--run-id", "ext", "--no-report", "--no-locust-html",
        timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "ext"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    external = manifest["settings"]["external"]
    assert external["gateway_url"] == cluster.gateway_url
    assert external["redis_address"] == cluster.redis_address
    assert any("replica count" in note for note in external["uncontrolled"])
    with (run_dir / "summary.csv").open(newline="") as f:
        rows = {row["mode"]: row for row in csv.DictReader(f)}
    for mode in ("session", "jwt+denylist"):
        row = rows[mode]
        assert not row["error"], row["error"]
        assert int(row["requests"]) > 0 and int(row["failures"]) == 0, row
        # INFO through the given address: sessions and the denylist both hit Redis.
        assert float(row["redis_ops_s"]) > 0, row
    # The deployment runs the denylist: a `jwt` (no revocation) run is refused up front,
    # not measured under a false label.
    refused = authbench(
        "bench", "--target", "external", "--gateway-url", cluster.gateway_url,
        "--modes", "jwt", "--replicas", "2", "--results-dir", str(tmp_path), timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "cannot be measured as jwt" in refused.stderr
    assert {child.name: child.pid for child in cluster.all_children()} == pids
    assert all(child.alive() for child in cluster.all_children())
