"""`--store cluster:N` end to end (issue 17): the whole stack on N real Redis Cluster
primaries. Sessions, refresh rotation with reuse detection, logout and the denylist work
unchanged; sessions spread over every shard; the keys one operation touches together
share a slot (a Redis Cluster refuses anything else with CROSSSLOT, so the flows passing
is itself the check)."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis

from authbench import cgroups
from authbench.bench.axes import RedisCap
from authbench.process import PROJECT_ROOT, free_port_block
from authbench.stores.cluster import ShardedCluster, slot_ranges
from authbench.targets.base import StoreTopology
from authbench.targets.local import ClusterError, LocalCluster, Ports
from authcore.sessions import session_key
from tests.client import bearer, login, request, session_cookie
from tests.conftest import ClusterFactory

pytestmark = pytest.mark.slow


def test_slot_ranges_cover_every_slot_once() -> None:
    for shards in range(1, 9):
        ranges = slot_ranges(shards)
        assert ranges[0][0] == 0 and ranges[-1][1] == 16383
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))


def test_a_single_shard_cluster_starts_and_serves(tmp_path: Path) -> None:
    base = free_port_block(2)
    with ShardedCluster(ports=(base,), bus_ports=(base + 1,), workdir=tmp_path) as store:
        with redis.RedisCluster(host="127.0.0.1", port=base) as client:
            client.set("k", "v")
            assert client.get("k") == b"v"
        assert store.keys_per_node() == {base: 1}


def test_shards_beyond_the_port_block_are_refused(tmp_path: Path) -> None:
    cluster = LocalCluster(
        replicas=1, ports=Ports.block(free_port_block()), workdir=tmp_path,
        store=StoreTopology("cluster", 11),
    )  # fmt: skip
    with pytest.raises(ClusterError, match="room for 10 shards"):
        cluster.start()


def test_the_whole_stack_runs_on_three_shards(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(
        replicas=1, env={"JWT_REVOCATION": "denylist"}, store=StoreTopology.parse("cluster:3")
    )
    store = cluster.cluster_store
    assert store is not None and len(store.ports) == 3
    assert cluster.child("auth").env["REDIS_CLUSTER_NODES"] == store.nodes_setting
    gateway = cluster.gateway_url

    # Sessions: many logins spread over every shard (the session ceiling's point).
    cookies = []
    for i in range(30):
        answer = login(gateway, i % 19 + 1, "session")
        assert answer.status == 200, answer.body
        cookies.append({"Cookie": session_cookie(answer)})
    for cookie in cookies:
        assert request(gateway, "GET", "/api/me", headers=cookie).status == 200
    per_shard = {}
    for port in store.ports:
        with redis.Redis(port=port) as node:
            per_shard[port] = sum(1 for _ in node.scan_iter("s:*"))
    assert sum(per_shard.values()) == 30 and all(n > 0 for n in per_shard.values()), per_shard
    # Logout ends the session at once.
    assert request(gateway, "POST", "/auth/logout", headers=cookies[0]).status == 204
    assert request(gateway, "GET", "/api/me", headers=cookies[0]).status == 401

    # Refresh: rotation, then reuse of a spent token revokes the family.
    first = login(gateway, 3, "jwt").json()
    rotated = request(
        gateway, "POST", "/auth/refresh", body={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status == 200, rotated.body
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    reused = request(
        gateway, "POST", "/auth/refresh", body={"refresh_token": first["refresh_token"]}
    )
    assert reused.status == 401
    after = request(
        gateway, "POST", "/auth/refresh", body={"refresh_token": second["refresh_token"]}
    )
    assert after.status == 401  # the successor went with its family
    # ...and the denylist revokes the family's access tokens too (rfr: on its shard).
    assert request(gateway, "GET", "/api/me", headers={
        "Authorization": f"Bearer {second['access_token']}"}).status == 401  # fmt: skip

    # Denylist: a logged-out JWT is refused at once; another one still works.
    token = bearer(login(gateway, 4, "jwt"))
    other = bearer(login(gateway, 5, "jwt"))
    assert request(gateway, "GET", "/api/me", headers=token).status == 200
    assert request(gateway, "POST", "/auth/logout", headers=token).status == 204
    assert request(gateway, "GET", "/api/me", headers=token).status == 401
    assert request(gateway, "GET", "/api/me", headers=other).status == 200

    # Log out everywhere: the user's sessions sit on several shards, the index on one.
    mine = [{"Cookie": session_cookie(login(gateway, 19, "session"))} for _ in range(4)]
    out = request(gateway, "POST", "/auth/logout?scope=all", headers=mine[0])
    assert out.status == 204
    assert [request(gateway, "GET", "/api/me", headers=c).status for c in mine] == [401] * 4
    # ...and a JWT user's: every family and every access token (rb:, rfr: on their shards).
    jwts = [login(gateway, 18, "jwt").json() for _ in range(2)]
    all_out = {"Authorization": f"Bearer {jwts[0]['access_token']}"}
    assert request(gateway, "POST", "/auth/logout?scope=all", headers=all_out).status == 204
    for tokens in jwts:
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert request(gateway, "GET", "/api/me", headers=headers).status == 401
        body = {"refresh_token": tokens["refresh_token"]}
        assert request(gateway, "POST", "/auth/refresh", body=body).status == 401

    assert {"redis-shard-1", "redis-shard-2", "redis-shard-3"} <= set(cluster.cpu_seconds())


def test_opaque_tokens_and_the_pushed_list_on_two_shards(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(
        replicas=1, env={"JWT_REVOCATION": "pushlist"}, store=StoreTopology.parse("cluster:2")
    )
    gateway = cluster.gateway_url
    # Mode opaque: tokens and each user's index on the shards, introspection per read.
    opaque = [bearer(login(gateway, 2, "opaque")) for _ in range(3)]
    assert all(request(gateway, "GET", "/api/me", headers=h).status == 200 for h in opaque)
    assert request(gateway, "POST", "/auth/logout", headers=opaque[0]).status == 204
    assert request(gateway, "GET", "/api/me", headers=opaque[0]).status == 401
    assert request(gateway, "POST", "/auth/logout?scope=all", headers=opaque[1]).status == 204
    assert request(gateway, "GET", "/api/me", headers=opaque[2]).status == 401
    # JWT_REVOCATION=pushlist: the replicas tail the stream on its shard.
    token = bearer(login(gateway, 3, "jwt"))
    assert request(gateway, "GET", "/api/me", headers=token).status == 200
    assert request(gateway, "POST", "/auth/logout", headers=token).status == 204
    deadline = time.monotonic() + 2.0
    while request(gateway, "GET", "/api/me", headers=token).status != 401:
        assert time.monotonic() < deadline, "the logout never reached the replica"
        time.sleep(0.02)

    # A dead shard: what needs it answers 503 (store unavailable), never a 500.
    assert cluster.cluster_store is not None
    victim = cluster.cluster_store.nodes[1].proc
    assert victim is not None
    victim.kill()
    victim.wait()
    statuses = {login(gateway, 4 + i % 10, "session").status for i in range(10)}
    assert 503 in statuses and statuses <= {200, 503}, statuses


def test_redis_cpus_caps_every_shard_on_its_own(tmp_path: Path) -> None:
    try:
        cgroups.detect()
    except cgroups.CgroupError as err:
        pytest.skip(str(err))
    base = free_port_block(4)
    with ShardedCluster(ports=(base, base + 1), bus_ports=(base + 2, base + 3),
                        workdir=tmp_path) as store:  # fmt: skip
        deployment = SimpleNamespace(target="local", cluster_store=store)
        cap = RedisCap(deployment, f"authbench-test-shards-{os.getpid()}")  # type: ignore[arg-type]
        try:
            cap.apply(0.5)
            assert len(cap._quotas) == 2
            assert sorted(p for q in cap._quotas for p in q.pids()) == sorted(
                store.processes().values()
            )
            assert set(cap.throttling()) >= {"periods", "throttled_s"}
        finally:
            cap.release()
        assert cap._quotas == []


def test_up_runs_on_a_two_shard_cluster_and_stops_clean(tmp_path: Path) -> None:
    base = free_port_block()
    gateway = f"http://127.0.0.1:{base}"
    env = {**os.environ, "AUTH_SEED_USERS": "5", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authbench", "up", "--replicas", "1", "--store", "cluster:2",
         "--gateway-port", str(base), "--redis-port", str(base + 10)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while not any("Redis Cluster nodes:" in line for line in lines):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        assert f"127.0.0.1:{base + 10},127.0.0.1:{base + 12}" in lines[-1]
        token = bearer(login(gateway, 1, "jwt"))
        assert request(gateway, "GET", "/api/me", headers=token).status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_dead_shard_fails_only_the_sessions_on_it(make_cluster: ClusterFactory) -> None:
    """One of three shards SIGKILLed: the sessions whose keys it holds answer a JSON 503,
    every other session keeps answering 200, before and after the live shards mark it
    failed (cluster-node-timeout). On the store-wide breaker every session failed, and on
    shards with the default cluster-require-full-coverage the live ones refuse all."""
    cluster = make_cluster(replicas=1, store=StoreTopology.parse("cluster:3"))
    store = cluster.cluster_store
    assert store is not None
    gateway = cluster.gateway_url
    cookies = [session_cookie(login(gateway, i % 19 + 1, "session")) for i in range(24)]
    shard = store.shard_of([session_key(c.partition("=")[2]) for c in cookies])
    assert set(shard) == {0, 1, 2}, shard  # 24 sessions over 3 shards: each holds some

    store.kill(1)
    for wait_s in (0.0, store.node_timeout_ms / 1000 + 1.0):  # before and after FAIL
        time.sleep(wait_s)
        for rounds in range(2):  # the second round finds node 2's breaker open
            for cookie, on in zip(cookies, shard, strict=True):
                answer = request(gateway, "GET", "/api/me", headers={"Cookie": cookie})
                if on == 1:
                    assert answer.status == 503, answer.body
                    assert answer.json()["error"] == "redis_unavailable"
                else:
                    assert answer.status == 200, (wait_s, rounds, answer.body)
    # New logins land on the live shards or answer 503, never anything else.
    assert {login(gateway, 3, "session").status for _ in range(6)} <= {200, 503}

    store.restart(1)  # back with its slots and no data (no persistence)
    deadline = time.monotonic() + 5.0
    for cookie, on in zip(cookies, shard, strict=True):
        while True:
            answer = request(gateway, "GET", "/api/me", headers={"Cookie": cookie})
            if answer.status != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the node's breaker waits out its cooldown
        assert answer.status == (401 if on == 1 else 200), answer.body
