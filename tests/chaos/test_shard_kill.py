"""The shard-kill scenario's pieces without processes: which deployments can run it, and
its figures, report section and chart from probe sessions (the run itself: committed in
results/, and tests/e2e/test_redis_cluster_store.py for the behaviour)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authbench.chaos import shard_kill
from authbench.chaos.scenarios import ALL_SCENARIOS, cannot_run
from authbench.chaos.shard_kill import Probe
from authbench.chaos.topology import ChaosCluster, ChaosPorts
from authbench.targets.base import StoreTopology


def test_shard_kill_needs_a_cluster_store(tmp_path: Path) -> None:
    scenario = ALL_SCENARIOS["shard-kill"]
    plain = ChaosCluster(replicas=1, workdir=tmp_path, chaos_ports=ChaosPorts(20000))
    assert cannot_run(scenario, plain) == "it needs --store cluster:3; this deployment runs single"
    sharded = ChaosCluster(
        replicas=1, workdir=tmp_path, chaos_ports=ChaosPorts(20000),
        store=StoreTopology.parse(scenario.store),
    )  # fmt: skip
    assert cannot_run(scenario, sharded) is None


def test_shard_kill_on_compose_needs_shards_on_fixed_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A compose cluster whose shards have no fixed address (started without
    docker-compose.cluster.yml) is refused before any load, with what to do; one whose
    shards all have one runs it. (What the engine reports is stood in for here.)"""
    from authbench.targets.compose import CLUSTER, ComposeTarget

    scenario = ALL_SCENARIOS["shard-kill"]
    unfixed = ComposeTarget(store=CLUSTER)
    monkeypatch.setattr(unfixed, "shard_addresses", lambda: ["172.31.250.11", None, None])
    why = cannot_run(scenario, unfixed)
    assert why is not None
    assert why.startswith("target compose cannot kill_shard, start_shard: redis-shard-2, ")
    assert "-f docker-compose.yml -f docker-compose.cluster.yml" in why
    fixed = ComposeTarget(store=CLUSTER)
    monkeypatch.setattr(fixed, "shard_addresses", lambda: ["172.31.250.11", "172.31.250.12", "x"])
    assert fixed.supports("kill_shard") and fixed.supports("start_shard")
    assert fixed.unsupported_why("kill_shard") == ""


def _probes() -> list[Probe]:
    found = []
    for i in range(12):
        shard = i % 3
        statuses = [503, 503] if shard == 2 else [200, 503 if i == 1 else 200]
        found.append(
            Probe({"Cookie": f"sid=secret{i}"}, shard, statuses, 401 if shard == 2 else 200)
        )
    return found


def test_the_figures_split_failures_by_where_each_key_lives(tmp_path: Path) -> None:
    figures = shard_kill.summary(_probes(), victim=2, shards=3, sweeps=2)
    assert figures["victim_slots"] == [10922, 16383]
    assert figures["expected_share"] == 0.3333 and figures["probe_sessions_on_victim"] == 4
    assert figures["failed_on_victim"] == 4 and figures["failed_elsewhere"] == 1
    assert (figures["reads_failed_elsewhere"], figures["reads_elsewhere"]) == (1, 16)
    assert figures["failed_share"] == round(5 / 12, 4)
    assert figures["statuses"] == {"503": 9}
    assert figures["after_restart"] == {
        "victim_lost": 4, "victim_other": 0, "elsewhere_ok": 8, "elsewhere_not_ok": 0
    }  # fmt: skip
    assert "secret" not in repr(figures)  # the session IDs are never written out
    figures["load"] = {"session": {"requests": 30, "failed": 10, "failed_share": 0.3333}}
    page = shard_kill.report_section([{"shard_kill": figures}], lambda h, rows: f"{h}{rows}")
    assert "expected share 33.3%" in page and "4 of 4 on the killed shard, 1 elsewhere" in page
    shard_kill.chart(figures, tmp_path / "shards.png")
    assert (tmp_path / "shards.png").read_bytes()[:4] == b"\x89PNG"
