"""RedisStore behind real Sentinels: it follows a failover, and WAIT means on a replica.

Real processes only: two redis-servers (primary and replica) and three Sentinels
(authbench.stores.sentinel.SentinelSet), with a short down-after so a failover takes a
couple of seconds.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from authbench.process import free_port_block
from authbench.stores.sentinel import SentinelSet
from authcore.config import Settings
from authcore.errors import ConfigError, StoreNotReplicated, StoreUnavailable
from authcore.redis_store import SENTINEL_POLL_S, RedisStore
from authcore.sessions import SESSION_PREFIX, SessionStore, session_key

pytestmark = pytest.mark.slow


def _sentinel_set(workdir: Path) -> SentinelSet:
    base = free_port_block(5)
    return SentinelSet(
        ports=(base, base + 1),
        sentinel_ports=(base + 2, base + 3, base + 4),
        workdir=workdir,
        down_after_ms=300,
        failover_timeout_ms=2000,
    )


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    """A set of its own: the test fails it over."""
    with _sentinel_set(tmp_path) as started:
        yield started


@pytest.fixture(scope="module")
def steady_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """Shared by the tests that leave the primary where it is (start-up takes seconds:
    the Sentinels find each other through hello messages sent every 2 s)."""
    with _sentinel_set(tmp_path_factory.mktemp("sentinel")) as started:
        yield started


def _settings(store: SentinelSet, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "REDIS_URL": "redis://127.0.0.1:1/0",  # never used: the Sentinels name the primary
            "REDIS_SENTINELS": store.sentinel_addresses,
            "REDIS_TIMEOUT_MS": "200",
            "REDIS_BREAKER_COOLDOWN_MS": "200",
            **extra,
        }
    )


@pytest.fixture
async def redis_store(sentinels: SentinelSet) -> AsyncIterator[RedisStore]:
    store = RedisStore(_settings(sentinels))
    yield store
    await store.close()


def _keys_on(port: int) -> set[bytes]:
    with redis.Redis(port=port) as client:
        return set(client.keys(f"{SESSION_PREFIX}*"))


async def test_sessions_follow_the_sentinels_to_the_promoted_replica(
    sentinels: SentinelSet, redis_store: RedisStore
) -> None:
    sessions = SessionStore(redis_store, _settings(sentinels))
    first = sentinels.primary_port()
    session_id = await sessions.create("alice")
    assert (await sessions.validate(session_id)).user == "alice"
    # Replication is asynchronous: let the replica catch up before the kill, so this
    # test is about finding the new primary, not about loss.
    replica = next(p for p in sentinels.ports if p != first)
    for _ in range(100):
        if _keys_on(replica):
            break
        await asyncio.sleep(0.02)

    sentinels.kill_primary()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await sessions.validate(session_id)
    assert time.monotonic() - started < 1.0, "a dead primary must fail fast, not hang"

    _named_at, promoted = await asyncio.to_thread(sentinels.wait_failover, first, 20.0)
    assert promoted == replica
    deadline = time.monotonic() + 5.0
    while True:  # the breaker lets a probe through after its cooldown
        try:
            session = await sessions.validate(session_id)
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "never reached the promoted replica"
            await asyncio.sleep(0.05)
    assert session.user == "alice"
    assert not redis_store.breaker.is_open
    # New writes land on the new primary.
    assert (await sessions.validate(await sessions.create("bob"))).user == "bob"
    assert len(_keys_on(promoted)) == 2


async def test_wait_acknowledges_a_session_only_once_a_replica_holds_it(
    steady_sentinels: SentinelSet,
) -> None:
    sentinels = steady_sentinels
    settings = _settings(sentinels, REDIS_WAIT_REPLICAS="1", REDIS_WAIT_TIMEOUT_MS="300")
    store = RedisStore(settings)
    sessions = SessionStore(store, settings)
    replica_port = next(p for p in sentinels.ports if p != sentinels.primary_port())
    try:
        # Acknowledged means on the replica: read it there at once, no waiting.
        for _ in range(20):
            await sessions.create("carol")
            assert len(_keys_on(replica_port)) == len(_keys_on(sentinels.primary_port())), (
                "an acknowledged session was not on the replica yet"
            )

        # A replica that does not answer: the write is not acknowledged (503), in about
        # the WAIT timeout, and the breaker stays closed (Redis itself is fine).
        replica = sentinels.node(replica_port)
        assert replica.proc is not None
        replica.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(StoreNotReplicated) as err:
                await sessions.create("carol")
            took = time.monotonic() - started
            assert 0.25 <= took < 1.5, took
            assert err.value.status == 503 and "0 of 1" in err.value.detail
            assert not store.breaker.is_open
        finally:
            replica.proc.send_signal(signal.SIGCONT)
    finally:
        await store.close()


async def test_without_wait_a_write_returns_before_the_replica_has_it(
    steady_sentinels: SentinelSet,
) -> None:
    """The control for the test above: the same stopped replica does not hold up a
    write when WAIT is off, which is exactly the window a failover can lose."""
    sentinels = steady_sentinels
    settings = _settings(sentinels)
    store = RedisStore(settings)
    sessions = SessionStore(store, settings)
    replica_port = next(p for p in sentinels.ports if p != sentinels.primary_port())
    replica = sentinels.node(replica_port)
    assert replica.proc is not None
    replica.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        await sessions.create("dave")
        assert time.monotonic() - started < 0.2
    finally:
        replica.proc.send_signal(signal.SIGCONT)
        await store.close()


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:x", "host:70000", ":26379"])
def test_malformed_sentinel_addresses_are_refused_at_start(value: str) -> None:
    with pytest.raises(ConfigError, match="REDIS_SENTINELS"):
        Settings.from_env({"REDIS_SENTINELS": value})


async def test_a_write_acknowledged_during_a_partition_is_lost_in_the_failover_unless_waited(
    tmp_path: Path,
) -> None:
    """Issue 16: asynchronous replication's loss, made visible. The replica's link goes
    through the delay proxy, cut while the primary keeps acknowledging; the primary is
    then killed and the Sentinels promote the replica. A session acknowledged without
    WAIT during the cut is gone from the new primary; with WAIT 1 the same write is
    refused (503 redis_not_replicated), and what WAIT acknowledged before the cut stays."""
    base = free_port_block(6)
    sentinels = SentinelSet(
        ports=(base, base + 1),
        sentinel_ports=(base + 2, base + 3, base + 4),
        workdir=tmp_path,
        down_after_ms=300,
        failover_timeout_ms=2000,
        proxy_port=base + 5,
        partition_proxy=True,
    )
    with sentinels:
        plain_settings = _settings(sentinels)
        waited_settings = _settings(sentinels, REDIS_WAIT_REPLICAS="1", REDIS_WAIT_TIMEOUT_MS="200")
        plain, waited = RedisStore(plain_settings), RedisStore(waited_settings)
        try:
            asynchronous = SessionStore(plain, plain_settings)
            synchronous = SessionStore(waited, waited_settings)
            before = await synchronous.create("erin")  # on the replica once acknowledged

            cut = await asyncio.to_thread(sentinels.cut_replica_link)
            during = await asynchronous.create("frank")  # acknowledged by the primary alone
            with pytest.raises(StoreNotReplicated) as refused:
                await synchronous.create("grace")
            assert refused.value.code == "redis_not_replicated" and refused.value.status == 503
            state = sentinels.replication()
            assert state["through_proxy"] is True
            assert isinstance(lag := state.get("replica_lag_bytes"), int) and lag > 0

            old = sentinels.kill_primary()
            _named_at, new = await asyncio.to_thread(sentinels.wait_failover, old, 20.0)
        finally:
            await plain.close()
            await waited.close()
        assert new == cut["replica_port"]
        with redis.Redis(port=new) as promoted:
            assert promoted.exists(session_key(before)) == 1, "a WAITed write was lost"
            assert promoted.exists(session_key(during)) == 0, "the partition held nothing back"


async def test_idle_connections_to_a_hung_old_primary_cost_no_call_after_the_failover(
    sentinels: SentinelSet, redis_store: RedisStore
) -> None:
    """A primary that hangs (its host gone, not its process) never refuses a connection: a
    call on a pooled connection to it waits out its timeout. After the Sentinels promote the
    replica, the store must drop those idle connections before a call takes one; before,
    the first call after the failover on each process was a timed-out 503."""
    sessions = SessionStore(redis_store, _settings(sentinels))
    session_id = await sessions.create("carol")
    replica = next(p for p in sentinels.ports if p != sentinels.primary_port())
    for _ in range(100):  # the replica has the session: this test is not about loss
        if _keys_on(replica):
            break
        await asyncio.sleep(0.02)
    # Six calls at once leave six idle connections to the primary in the pool.
    await asyncio.gather(*(redis_store.call(lambda r: r.blpop(["none"], 0.05)) for _ in range(6)))
    pool = redis_store.client.connection_pool
    assert len(pool._available_connections) >= 6  # type: ignore[attr-defined]

    old = sentinels.pause_primary()  # the set's stop lets it go on again
    _named_at, promoted = await asyncio.to_thread(sentinels.wait_failover, old, 20.0)
    assert promoted == replica
    await asyncio.sleep(3 * SENTINEL_POLL_S)  # the store's next look at the Sentinels
    started = time.monotonic()
    # Every call after the failover is served, the first one included.
    for _ in range(6):
        assert (await sessions.validate(session_id)).user == "carol"
    assert time.monotonic() - started < 0.5, "a call waited on the hung old primary"
    assert not redis_store.breaker.is_open
