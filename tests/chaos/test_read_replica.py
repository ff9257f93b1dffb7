"""The read-replica scenarios' pieces without processes: which deployments can run them,
reads per second from INFO counts, and the report section (the fault itself on real
processes: tests/e2e/test_read_replica_store.py; a run: committed in results/)."""

from __future__ import annotations

from pathlib import Path

from authbench.chaos import read_replica
from authbench.chaos.scenarios import ALL_SCENARIOS, SCENARIOS, cannot_run
from authbench.chaos.topology import ChaosCluster, ChaosPorts
from authbench.targets.base import StoreTopology


def _cluster(tmp_path: Path, store: str) -> ChaosCluster:
    return ChaosCluster(
        replicas=1, workdir=tmp_path, chaos_ports=ChaosPorts(20000),
        store=StoreTopology.parse(store),
    )  # fmt: skip


def test_the_read_replica_scenarios_need_a_store_with_read_replicas(tmp_path: Path) -> None:
    for name in ("read-replica-kill", "read-replica-pause"):
        scenario = ALL_SCENARIOS[name]
        assert name not in SCENARIOS  # run only when named
        assert cannot_run(scenario, _cluster(tmp_path, "single")) == (
            "it needs --store replicas:2; this deployment runs single"
        )
        assert cannot_run(scenario, _cluster(tmp_path, "cluster:3")) == (
            "it needs --store replicas:2; this deployment runs cluster:3"
        )
        assert cannot_run(scenario, _cluster(tmp_path, "replicas:0")) == (
            "it needs a read replica to break; this deployment runs replicas:0"
        )
        assert cannot_run(scenario, _cluster(tmp_path, "replicas:2")) is None
        assert cannot_run(scenario, _cluster(tmp_path, "replicas:1")) is None


def test_reads_per_second_leave_out_a_node_that_did_not_answer_or_restarted() -> None:
    start = {"redis-primary": 10, "redis-replica-1": 100, "redis-replica-2": 500}
    end = {"redis-primary": 10, "redis-replica-1": 300, "redis-replica-2": None}
    assert read_replica.rates(start, end, 2.0) == {
        "redis-primary": 0.0, "redis-replica-1": 100.0, "redis-replica-2": None
    }  # fmt: skip
    restarted = {"redis-primary": 10, "redis-replica-1": 300, "redis-replica-2": 3}
    assert read_replica.rates(start, restarted, 2.0)["redis-replica-2"] is None


def test_the_figures_and_the_report_section() -> None:
    sweeps = read_replica.Sweeps(statuses=[200] * 29 + [503], slowest_ms=262.4, count=10)
    figures = read_replica.summary(
        fault="pause", read_replicas=2, victim="redis-replica-2", probe_sessions=3,
        sweeps=sweeps,
        reads_per_s={
            "before": {"redis-primary": 0.0, "redis-replica-1": 50.0, "redis-replica-2": 49.0},
            "outage": {"redis-primary": 1.0, "redis-replica-1": 97.5, "redis-replica-2": None},
            "after": {"redis-primary": 0.0, "redis-replica-1": 51.0, "redis-replica-2": 48.0},
        },
        back_s=5.0123, rejoined_s=0.31, after=[200, 200, 401],
        timeouts={"REDIS_TIMEOUT_MS": "250", "REDIS_BREAKER_COOLDOWN_MS": "500"},
    )  # fmt: skip
    assert (figures["reads"], figures["reads_failed"], figures["statuses"]) == (30, 1, {"503": 1})
    assert (figures["after_ok"], figures["after_not_ok"], figures["back_s"]) == (2, 1, 5.012)
    figures["load"] = {"session": {"requests": 120, "failed": 0, "failed_share": 0.0}}
    page = read_replica.report_section(
        [{"read_replica": figures}, {"shard_kill": {}}], lambda h, rows: f"{h}{rows}"
    )
    assert page.count("<h3") == 1 and "One read replica SIGSTOPped" in page
    assert "1 of 30 reads failed (503: 1)" in page and "the slowest took 262 ms" in page
    assert "['redis-replica-2 (the fault)', '49.0', '-', '48.0']" in page
    assert "first read served 0.31 s after that" in page
    assert read_replica.report_section([{"figures": {}}], lambda h, rows: "") == ""
