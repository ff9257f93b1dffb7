"""`--store replicas:N` end to end (issue 17 item 6): the whole stack on a primary and
real `replicaof` read replicas. Session reads through the gateway are served by the
replicas (and the bench's INFO sampling sees them there), a logout is refused once it
has replicated, and `--redis-cpus` would cap every redis-server of the topology."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import redis

from authbench.bench.axes import _redis_pids
from authbench.bench.protocol import _cpu_figures, _redis_figures
from authbench.bench.samplers import ProcessCpuSampler, RedisSampler, Sampling
from authbench.bench.summary import SummaryRow
from authbench.chaos import read_replica
from authbench.process import free_port_block
from authbench.targets.base import StoreTopology
from authbench.targets.local import ClusterError, LocalCluster, Ports
from tests.client import SessionReader, login, request, session_cookie
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.slow


def _gets(port: int) -> int:
    with redis.Redis(port=port, socket_timeout=2.0) as node:
        stats = node.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def test_session_reads_through_the_gateway_are_served_by_the_replicas(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(replicas=1, store=StoreTopology.parse("replicas:2"))
    store = cluster.replica_store
    assert store is not None and len(store.replica_ports) == 2
    env = cluster.child("resource-1").env
    assert env["REDIS_READ_REPLICAS"] == store.replicas_setting
    assert env["SESSION_RENEW_INTERVAL_S"] == "60"  # the topology's default policy
    gateway = cluster.gateway_url

    cookie = {"Cookie": session_cookie(login(gateway, 1, "session"))}
    time.sleep(0.2)  # the new session replicates (microseconds on loopback)
    sampling = Sampling(cluster, None)
    start, cpu_start = sampling.redis(), sampling.cpu()
    primary_before = _gets(store.primary_port)
    replicas_before = sum(_gets(port) for port in store.replica_ports)
    for _ in range(10):
        assert request(gateway, "GET", "/api/me", headers=cookie).status == 200
    assert sum(_gets(port) for port in store.replica_ports) - replicas_before == 10
    assert _gets(store.primary_port) == primary_before

    # The bench samples every node, so its rows show the reads on the replicas: the sums
    # in redis_ops_s / redis_cpu_pct / cpu_redis_pct, each node (primary first) beside.
    window = RedisSampler.window(start, sampling.redis())
    assert window is not None
    assert set(window.nodes) == {"redis-primary", "redis-replica-1", "redis-replica-2"}
    replica_gets = [window.nodes[f"redis-replica-{i}"].per_command.get("get", 0) for i in (1, 2)]
    assert sum(replica_gets) == 10 and min(replica_gets) >= 4  # round-robin over both
    assert window.nodes["redis-primary"].per_command.get("get", 0) == 0
    assert window.per_command.get("get", 0) == 10
    row = SummaryRow(mode="session", replicas=1, users=1, requests=20)
    _redis_figures(row, window, window.seconds)
    _cpu_figures(row, ProcessCpuSampler.window(cpu_start, sampling.cpu()))
    each = [float(v) for v in row.redis_ops_each_shard.split(";")]
    assert len(each) == 3 and each[1] > 0 and each[2] > 0
    assert row.redis_ops_s == pytest.approx(sum(each), abs=0.2)
    assert len(row.redis_cpu_each_shard.split(";")) == 3
    assert not math.isnan(row.cpu_redis_pct)  # the three redis-servers, not a missing "redis"
    sampling.close()

    # Logout on the primary: refused as soon as the DEL reached the replicas.
    assert request(gateway, "POST", "/auth/logout", headers=cookie).status == 204
    deadline = time.monotonic() + 2.0
    while request(gateway, "GET", "/api/me", headers=cookie).status != 401:
        assert time.monotonic() < deadline, "the logout never reached the read replicas"
        time.sleep(0.01)
    assert [request(gateway, "GET", "/api/me", headers=cookie).status for _ in range(4)] == [
        401
    ] * 4

    # --redis-cpus caps the primary and each replica; CPU sampling sees all three.
    assert len(_redis_pids(cluster)) == 3
    assert {"redis-primary", "redis-replica-1", "redis-replica-2"} <= set(cluster.cpu_seconds())


def test_a_killed_or_paused_read_replica_costs_no_session_read(
    make_cluster: ClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-replica chaos scenarios' fault and figures (authbench.chaos.read_replica)
    on real processes: with one of two read replicas killed, then paused, every session
    read still answers 200 (its breaker opens, the other replica takes its reads); back,
    it serves reads again."""
    monkeypatch.setattr(read_replica, "RATE_WINDOW_S", 0.5)  # CI time; a run counts 1 s
    cluster = make_cluster(replicas=1, store=StoreTopology.parse("replicas:2"))
    gateway = cluster.gateway_url
    cookies = [{"Cookie": session_cookie(login(gateway, i, "session"))} for i in range(1, 5)]
    time.sleep(0.2)  # replicated
    reader = SessionReader(gateway, cookies[0])
    reader.start()
    try:
        for pause in (False, True):
            events: dict[str, float] = {}
            window, figures = read_replica.inject(
                cluster, pause, gateway, cookies[1:], 1.0, events, lambda _msg: None
            )
            assert figures["fault"] == ("pause" if pause else "kill")
            assert figures["victim"] == "redis-replica-2"
            assert figures["reads"] >= 3 * 2 and figures["reads_failed"] == 0, figures
            before, outage, after = (
                figures["reads_per_s"][p] for p in ("before", "outage", "after")
            )
            assert before["redis-replica-1"] and before["redis-replica-2"]  # both in turn
            assert outage["redis-replica-2"] is None  # not answering INFO: down or frozen
            assert outage["redis-replica-1"] and outage["redis-replica-1"] > 0
            assert figures["rejoined_s"] is not None and figures["rejoined_s"] < 3.0
            assert after["redis-replica-2"] and after["redis-replica-2"] > 0  # reads are back
            assert figures["after_ok"] == 3
            assert figures["slowest_read_ms"] < 1000  # a frozen replica costs a timeout, no hang
            assert window.fault_at < window.restore_at <= window.back_at == events["back_at"]
    finally:
        reader.done.set()
        reader.join(5)
    assert len(reader.statuses) > 100 and set(reader.statuses) == {200}


def test_more_replicas_than_the_port_block_holds_are_refused(tmp_path: Path) -> None:
    cluster = LocalCluster(
        replicas=1, ports=Ports.block(free_port_block()), workdir=tmp_path,
        store=StoreTopology("replicas", read_replicas=10),
    )  # fmt: skip
    with pytest.raises(ClusterError, match="room for 9 read replicas"):
        cluster.start()
