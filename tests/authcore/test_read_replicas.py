"""Read replicas (issue 17 item 6) against a real primary and real `replicaof` replicas:
session reads are served by the replicas, the idle TTL is renewed on the primary at most
once per SESSION_RENEW_INTERVAL_S, a logout is refused once it has replicated (and not
before: the lag is the price), and a dead replica costs nothing but its capacity."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from authbench.process import free_port_block
from authbench.stores.replicas import ReplicaSet, ReplicaStoreError
from authcore.config import Settings
from authcore.errors import ConfigError, InvalidCredential
from authcore.redis_store import RedisStore
from authcore.sessions import SessionStore


@pytest.fixture(scope="module")
def replica_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaSet]:
    base = free_port_block(3)
    store = ReplicaSet(ports=(base, base + 1, base + 2), workdir=tmp_path_factory.mktemp("rs"))
    store.start()
    yield store
    store.stop()


def _settings(replicas: ReplicaSet, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "REDIS_URL": f"redis://127.0.0.1:{replicas.primary_port}/0",
            "REDIS_READ_REPLICAS": replicas.replicas_setting,
            "SESSION_IDLE_S": "30",
            "SESSION_RENEW_INTERVAL_S": "10",
            **extra,
        }
    )


@pytest.fixture
async def sessions(replica_set: ReplicaSet) -> AsyncIterator[SessionStore]:
    settings = _settings(replica_set)
    store = RedisStore(settings)
    yield SessionStore(store, settings)
    await store.close()


def _node(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=2.0)


def _calls(port: int, command: str) -> int:
    with _node(port) as node:
        stats = node.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _reset_stats(replica_set: ReplicaSet) -> None:
    for port in replica_set.ports:
        with _node(port) as node:
            node.config_resetstat()


def _replicated(replica_set: ReplicaSet) -> None:
    """Until every replica has acknowledged every write the primary took so far."""
    with _node(replica_set.primary_port) as primary:
        acked = primary.execute_command("WAIT", len(replica_set.replica_ports), 2000)
    assert acked == len(replica_set.replica_ports)


async def test_session_reads_go_to_the_replicas_in_turn_not_to_the_primary(
    replica_set: ReplicaSet, sessions: SessionStore
) -> None:
    session_id = await sessions.create("alice")
    _replicated(replica_set)
    _reset_stats(replica_set)
    for _ in range(10):
        assert (await sessions.validate(session_id)).user == "alice"
    primary, first, second = replica_set.ports
    # Round robin: five GETs on each replica; the primary saw no read at all (with the
    # default renewal policy it would have taken ten GETEX).
    assert (_calls(first, "get"), _calls(second, "get")) == (5, 5)
    assert _calls(primary, "get") == 0 and _calls(primary, "getex") == 0
    assert _calls(primary, "eval") == 0  # a fresh session is not due for renewal


async def test_the_default_policy_still_renews_on_every_read_on_the_primary(
    replica_set: ReplicaSet,
) -> None:
    settings = Settings.from_env({"REDIS_URL": f"redis://127.0.0.1:{replica_set.primary_port}/0"})
    store = RedisStore(settings)
    try:
        sessions = SessionStore(store, settings)
        session_id = await sessions.create("bob")
        _reset_stats(replica_set)
        for _ in range(4):
            await sessions.validate(session_id)
    finally:
        await store.close()
    assert _calls(replica_set.primary_port, "getex") == 4
    assert sum(_calls(port, "get") for port in replica_set.replica_ports) == 0


async def test_the_idle_ttl_is_renewed_on_the_primary_at_most_once_per_interval(
    replica_set: ReplicaSet,
) -> None:
    # Idle 2 s, renewed once at least 0.5 s have passed since the last renewal.
    settings = _settings(replica_set, SESSION_IDLE_S="2", SESSION_RENEW_INTERVAL_S="0.5")
    stores = [RedisStore(settings) for _ in range(3)]  # three processes reading one session
    try:
        readers = [SessionStore(store, settings) for store in stores]
        session_id = await readers[0].create("carol")
        _replicated(replica_set)
        _reset_stats(replica_set)
        # Not due yet: thirty concurrent reads renew nothing.
        await asyncio.gather(*(r.validate(session_id) for r in readers for _ in range(10)))
        assert _calls(replica_set.primary_port, "pexpire") == 0
        # Due: thirty concurrent reads, all of which see a due TTL on the replicas, renew
        # it exactly once (the script checks the TTL again on the primary).
        await asyncio.sleep(0.6)
        started = time.monotonic()
        await asyncio.gather(*(r.validate(session_id) for r in readers for _ in range(10)))
        assert _calls(replica_set.primary_port, "pexpire") == 1
        # Read every 0.1 s for longer than the idle timeout: the session lives on, renewed
        # about every 0.5 s and never more often.
        reads = 0
        while time.monotonic() - started < 2.5:
            await asyncio.sleep(0.1)
            assert (await readers[0].validate(session_id)).user == "carol"
            reads += 1
        elapsed = time.monotonic() - started
        renewals = _calls(replica_set.primary_port, "pexpire")
        assert 2 <= renewals <= elapsed / 0.5 + 1, (renewals, elapsed)
        assert sum(_calls(port, "get") for port in replica_set.replica_ports) == 60 + reads
    finally:
        for store in stores:
            await store.close()


async def test_a_logout_is_refused_once_it_replicated_and_served_until_then(
    replica_set: ReplicaSet, sessions: SessionStore
) -> None:
    session_id = await sessions.create("dave")
    _replicated(replica_set)
    await sessions.validate(session_id)
    # Detach both replicas: the logout on the primary cannot reach them (the lag, made
    # as long as we like), and they go on serving the session they hold.
    for port in replica_set.replica_ports:
        with _node(port) as node:
            node.execute_command("REPLICAOF", "NO", "ONE")
    try:
        await sessions.delete(session_id, "dave")
        with _node(replica_set.primary_port) as primary:
            assert primary.exists(f"s:{_hash(session_id)}") == 0
        assert (await sessions.validate(session_id)).user == "dave"  # stale, by design
    finally:
        for port in replica_set.replica_ports:
            with _node(port) as node:
                node.execute_command("REPLICAOF", "127.0.0.1", replica_set.primary_port)
        _wait_synced(replica_set)
    for _ in range(4):  # every replica now refuses it
        with pytest.raises(InvalidCredential):
            await sessions.validate(session_id)


async def test_a_session_the_replicas_do_not_have_yet_is_read_on_the_primary(
    replica_set: ReplicaSet, sessions: SessionStore
) -> None:
    # Detached replicas stand for a lag of any length: a login, then its first request.
    for port in replica_set.replica_ports:
        with _node(port) as node:
            node.execute_command("REPLICAOF", "NO", "ONE")
    try:
        session_id = await sessions.create("frank")
        with _node(replica_set.primary_port) as primary:
            primary.config_resetstat()
        assert (await sessions.validate(session_id)).user == "frank"
        assert _calls(replica_set.primary_port, "get") == 1  # the replica missed, then this
        with pytest.raises(InvalidCredential):  # unknown everywhere: still refused
            await sessions.validate("x" * 43)
    finally:
        for port in replica_set.replica_ports:
            with _node(port) as node:
                node.execute_command("REPLICAOF", "127.0.0.1", replica_set.primary_port)
        _wait_synced(replica_set)


async def test_a_dead_replica_sends_its_reads_elsewhere(tmp_path: Path) -> None:
    base = free_port_block(2)
    with ReplicaSet(ports=(base, base + 1), workdir=tmp_path) as replica_set:
        settings = _settings(replica_set)
        store = RedisStore(settings)
        try:
            sessions = SessionStore(store, settings)
            session_id = await sessions.create("erin")
            _replicated(replica_set)
            replica = replica_set.nodes[1].proc
            assert replica is not None
            replica.kill()
            replica.wait()
            with _node(replica_set.primary_port) as primary:
                primary.config_resetstat()
            for _ in range(5):  # the replica's breaker opens; the primary answers
                assert (await sessions.validate(session_id)).user == "erin"
            assert _calls(replica_set.primary_port, "get") >= 4
        finally:
            await store.close()


def test_the_read_lag_of_a_delete_is_measured_on_every_replica(replica_set: ReplicaSet) -> None:
    lags = replica_set.read_lag_ms(6)
    assert len(lags) == 6 and all(0 < lag < 1000 for lag in lags)
    with _node(replica_set.primary_port) as primary:
        assert primary.keys("authbench:read-lag:*") == []  # nothing left behind


def test_replica_settings_are_refused_with_a_clear_reason() -> None:
    with pytest.raises(ConfigError, match="REDIS_READ_REPLICAS needs SESSION_RENEW_INTERVAL_S"):
        Settings.from_env({"REDIS_READ_REPLICAS": "127.0.0.1:7001"})
    with pytest.raises(ConfigError, match="REDIS_READ_REPLICAS: 'nohost' is no host:port"):
        Settings.from_env({"REDIS_READ_REPLICAS": "nohost", "SESSION_RENEW_INTERVAL_S": "5"})
    with pytest.raises(ConfigError, match="not with REDIS_CLUSTER_NODES"):
        Settings.from_env(
            {"REDIS_READ_REPLICAS": "127.0.0.1:7001", "SESSION_RENEW_INTERVAL_S": "5",
             "REDIS_CLUSTER_NODES": "127.0.0.1:7002"}
        )  # fmt: skip
    for bad in ("-1", "1800", "nan"):
        with pytest.raises(ConfigError, match="SESSION_RENEW_INTERVAL_S"):
            Settings.from_env({"SESSION_RENEW_INTERVAL_S": bad})
    assert Settings.from_env({}).session_renew_interval_s == 0  # default: GETEX as before


def test_a_replica_set_refuses_shared_ports(tmp_path: Path) -> None:
    with pytest.raises(ReplicaStoreError, match="a port each"):
        ReplicaSet(ports=(7000, 7000), workdir=tmp_path)
    with pytest.raises(ReplicaStoreError, match="0 to 8 read replicas"):
        ReplicaSet(ports=tuple(range(7000, 7010)), workdir=tmp_path)


def _hash(session_id: str) -> str:
    import hashlib

    return hashlib.sha256(session_id.encode()).hexdigest()


def _wait_synced(replica_set: ReplicaSet, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    for port in replica_set.replica_ports:
        with _node(port) as node:
            while node.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, f"replica {port} did not resync"
                time.sleep(0.05)
    _replicated(replica_set)


async def test_the_capacity_study_drives_reads_through_the_replicas(
    replica_set: ReplicaSet,
) -> None:
    from authbench.bench.replica_capacity import _drive, _login

    ids = await _login(_settings(replica_set), 5)
    _replicated(replica_set)
    _reset_stats(replica_set)
    result = await _drive(_settings(replica_set), 0.3, 4, ids)
    assert result["reads"] > 0 and result["errors"] == 0 and result["teardown_stuck"] == 0
    assert sum(_calls(port, "get") for port in replica_set.replica_ports) >= result["reads"]
    assert _calls(replica_set.primary_port, "get") == 0


def test_the_capacity_study_refuses_bad_options_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from authbench.bench.replica_capacity import main

    assert main(["--topologies", "getex,sentinel"]) == 2
    assert "expected getex, replicas:N or cluster:N" in capsys.readouterr().err
    assert main(["--cores", "0.001"]) == 2
    assert "--cores" in capsys.readouterr().err


def test_the_capacity_study_spreads_a_cluster_round_over_every_shard(tmp_path: Path) -> None:
    # cluster:N beside the replicas: the same driver, every shard capped and serving reads.
    from authbench.bench.replica_capacity import measure

    result = measure("cluster:2", 0.5, 0.5, 4, 40, tmp_path, processes=1)
    assert result["reads"] > 0 and result["errors"] == 0, result
    assert len(result["cpu_pct_per_node"]) == 2
    assert len(result["throttled_periods_pct"]) == 2  # one quota per shard
    assert len(result["driver_cpu_pct"]) == 1 and result["driver_cpu_pct"][0] > 0
    assert len(result["driver_runqueue_wait_pct"]) == 1
