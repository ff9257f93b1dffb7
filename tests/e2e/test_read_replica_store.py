"""`--store replicas:N` end to end (issue 17 item 6): the whole stack on a primary and
real `replicaof` read replicas. Session reads through the gateway are served by the
replicas, a logout is refused once it has replicated, and `--redis-cpus` would cap every
redis-server of the topology."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from authbench.bench.axes import _redis_pids
from authbench.process import free_port_block
from authbench.targets.base import StoreTopology
from authbench.targets.local import ClusterError, LocalCluster, Ports
from tests.client import login, request, session_cookie
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
    primary_before = _gets(store.primary_port)
    replicas_before = sum(_gets(port) for port in store.replica_ports)
    for _ in range(10):
        assert request(gateway, "GET", "/api/me", headers=cookie).status == 200
    assert sum(_gets(port) for port in store.replica_ports) - replicas_before == 10
    assert _gets(store.primary_port) == primary_before

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


def test_more_replicas_than_the_port_block_holds_are_refused(tmp_path: Path) -> None:
    cluster = LocalCluster(
        replicas=1, ports=Ports.block(free_port_block()), workdir=tmp_path,
        store=StoreTopology("replicas", read_replicas=10),
    )  # fmt: skip
    with pytest.raises(ClusterError, match="room for 9 read replicas"):
        cluster.start()
