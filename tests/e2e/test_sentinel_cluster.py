"""`--store sentinel` end to end: the whole cluster on a primary, a replica and three
Sentinels, through a failover of the primary (real processes, the deployment interface)."""

from __future__ import annotations

import time

import pytest
import redis

from authbench.targets import DeploymentSpec, open_deployment
from authbench.targets.base import SENTINEL, StoreTopology
from authbench.targets.compose import ComposeTarget
from tests.client import bearer, login, request, session_cookie
from tests.conftest import ClusterFactory


def test_store_topology_parses_sentinel_and_refuses_what_is_not_built() -> None:
    assert StoreTopology.parse("sentinel") == SENTINEL
    assert str(SENTINEL) == "sentinel"
    with pytest.raises(ValueError, match="choose from single, sentinel"):
        StoreTopology.parse("sentinel:3")
    # Compose runs it as its profile `sentinel`, the services told where the Sentinels are.
    compose = open_deployment("compose", DeploymentSpec(replicas=1, store=SENTINEL))
    assert isinstance(compose, ComposeTarget) and compose.store == SENTINEL
    assert compose.env["REDIS_SENTINELS"] == "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379"
    with pytest.raises(ValueError, match="--target local and compose"):
        open_deployment("swarm", DeploymentSpec(replicas=1, store=SENTINEL))


def _until(check: object, timeout_s: float) -> float:
    """Seconds until `check()` is true (fails the test after `timeout_s`)."""
    started = time.monotonic()
    while not check():  # type: ignore[operator]
        assert time.monotonic() - started < timeout_s, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - started


def test_cluster_on_sentinels_keeps_sessions_and_serves_logins_after_a_failover(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(
        replicas=1,
        store=SENTINEL,
        sentinel_down_after_ms=300,
        sentinel_failover_timeout_ms=2000,
    )
    gateway = cluster.gateway_url
    assert cluster.sentinel_set is not None
    first = cluster.redis_address
    cookie = {"Cookie": session_cookie(login(gateway, 1, "session"))}
    assert request(gateway, "GET", "/api/me", headers=cookie).status == 200
    # Let the replica have the session (this test is about following the failover).
    replica = next(p for p in cluster.sentinel_set.ports if f":{p}" not in first)
    with redis.Redis(port=replica) as client:
        _until(lambda: bool(client.keys("s:*")), 5)

    old, _killed_at = cluster.kill_redis_primary()
    assert request(gateway, "GET", "/api/me", headers=cookie).status == 503
    _named_at, new = cluster.wait_redis_failover(old, 20)
    assert new == f"127.0.0.1:{replica}" and cluster.redis_address == new
    # The services find the new primary through the Sentinels, within a breaker cooldown.
    _until(lambda: request(gateway, "GET", "/api/me", headers=cookie).status == 200, 5)
    # The auth service too (its own breaker may have opened on a key-store poll meanwhile).
    _until(lambda: login(gateway, 2, "jwt").status == 200, 5)
    token = bearer(login(gateway, 2, "jwt"))
    assert request(gateway, "GET", "/api/me", headers=token).status == 200

    cluster.rejoin_redis()  # the old primary comes back as a replica of the new one
    with redis.Redis(port=int(old.rpartition(":")[2])) as client:
        assert client.info("replication")["role"] == "slave"
    assert {"sentinel-1", "sentinel-2", "sentinel-3", "redis-1", "redis-2"} <= set(
        cluster.cpu_seconds()
    )


def test_with_wait_a_login_the_partitioned_replica_cannot_hold_is_a_json_503(
    make_cluster: ClusterFactory,
) -> None:
    """What a client sees of REDIS_WAIT_REPLICAS=1 while the replica's link is cut (the
    failover-partition-wait scenario): not an acknowledgement a failover could take back,
    but a fast 503 with the contract's JSON error and Retry-After; and once healed,
    logins are acknowledged again."""
    cluster = make_cluster(
        replicas=1,
        store=SENTINEL,
        sentinel_partition_proxy=True,
        env={"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "100"},
    )
    gateway = cluster.gateway_url
    assert login(gateway, 1, "session").status == 200
    cut = cluster.cut_redis_replica_link()
    assert cluster.redis_replication()["through_proxy"] is True
    started = time.monotonic()
    refused = login(gateway, 2, "session")
    assert refused.status == 503, refused.status
    assert refused.json()["error"] == "redis_not_replicated"
    assert refused.headers.get("retry-after") == "1"
    assert time.monotonic() - started < 3.0  # WAIT's 100 ms plus an argon2 hash, not a hang
    assert cluster.sentinel_set is not None and cluster.sentinel_set.proxy is not None
    cluster.sentinel_set.proxy.delay(False)  # heal: the held stream reaches the replica
    _until(lambda: login(gateway, 3, "session").status == 200, 10)
    assert cut["proxy_port"] == cluster.redis_replication()["replica_master_port"]
