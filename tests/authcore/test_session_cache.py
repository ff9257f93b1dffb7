"""The session near cache (mode session+cache) against a real redis-server: hits ask Redis
nothing, invalidations are pushed, a lost channel flushes, the LRU and the idle timeout
hold, and bad settings are refused by name."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from authbench.process import free_port_block
from authcore.config import Settings
from authcore.errors import ConfigError, InvalidCredential
from authcore.redis_store import RedisStore
from authcore.session_cache import HEARTBEAT_S, CachedSessionStore
from authcore.sessions import SessionStore, session_key

SESSION_COMMANDS = ("get", "getex", "pttl", "expire")


@pytest.fixture
def admin(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port)
    yield client
    client.close()


Replica = tuple[CachedSessionStore, RedisStore]
MakeReplica = Callable[..., Awaitable[Replica]]


@pytest.fixture
async def make_replica(redis_port: int) -> AsyncIterator[MakeReplica]:
    """Start cached session stores (a replica's worth each), listening until the test ends."""
    started: list[tuple[CachedSessionStore, RedisStore, asyncio.Task[None]]] = []

    async def _make(**env: str) -> Replica:
        settings = Settings.from_env(
            {
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "SESSION_CACHE": "1",
                "REDIS_BREAKER_COOLDOWN_MS": "100",
                **env,
            }
        )
        store = RedisStore(settings)
        cache = CachedSessionStore(store, settings)
        task = asyncio.create_task(cache.listener.run())
        started.append((cache, store, task))
        await until(lambda: cache.live)
        return cache, store

    yield _make
    for cache, store, task in started:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cache.close()
        await store.close()


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> float:
    """Wait until `condition()` holds; how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


def session_calls(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in SESSION_COMMANDS}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {c: after[c] - before[c] for c in before if after[c] != before[c]}


async def test_a_hit_sends_no_redis_command(make_replica: MakeReplica, admin: redis.Redis) -> None:
    cache, _ = await make_replica()
    session_id = await cache.create("alice")
    before = session_calls(admin)
    assert (await cache.validate(session_id)).user == "alice"  # the miss: GET + PTTL
    warmed = session_calls(admin)
    assert delta(before, warmed) == {"get": 1, "pttl": 1}
    for _ in range(500):
        assert (await cache.validate(session_id)).user == "alice"
    assert delta(warmed, session_calls(admin)) == {}


async def test_a_logout_is_pushed_to_every_replica(
    make_replica: MakeReplica, redis_port: int
) -> None:
    replicas = [await make_replica() for _ in range(3)]
    session_id = await replicas[0][0].create("bob")
    for cache, _ in replicas:
        await cache.validate(session_id)
        assert session_key(session_id) in cache._entries
    # The logout, by the auth service's own code on its own connection.
    auth_settings = Settings.from_env({"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"})
    auth_store = RedisStore(auth_settings)
    try:
        await SessionStore(auth_store, auth_settings).delete(session_id, "bob")
    finally:
        await auth_store.close()
    took = await until(lambda: all(session_key(session_id) not in c._entries for c, _ in replicas))
    assert took < 0.1
    for cache, _ in replicas:
        with pytest.raises(InvalidCredential):
            await cache.validate(session_id)


async def test_a_lost_channel_flushes_and_reads_go_to_redis(
    make_replica: MakeReplica, admin: redis.Redis
) -> None:
    cache, _ = await make_replica()
    kept, ended = await cache.create("carol"), await cache.create("carol")
    for session_id in (kept, ended):
        await cache.validate(session_id)
    assert cache.size == 2
    first_id = cache.listener.client_id
    assert admin.client_kill_filter(_type="pubsub") == 1
    await until(lambda: not cache.live)
    assert cache.size == 0
    # While the channel is down, a logout cannot reach this replica; it must not matter.
    admin.delete(session_key(ended))
    before = session_calls(admin)
    if not cache.live:  # the bypass: the plain lookup, GETEX, every time
        assert (await cache.validate(kept)).user == "carol"
        with pytest.raises(InvalidCredential):
            await cache.validate(ended)
        assert delta(before, session_calls(admin)).get("getex", 0) >= 1
    await until(lambda: cache.live)
    assert cache.listener.client_id != first_id
    with pytest.raises(InvalidCredential):
        await cache.validate(ended)
    assert (await cache.validate(kept)).user == "carol"
    assert session_key(kept) in cache._entries


async def test_nothing_read_before_the_channel_is_up_is_cached(
    make_replica: MakeReplica, admin: redis.Redis
) -> None:
    cache, _ = await make_replica()
    session_id = await cache.create("dave")
    admin.client_kill_filter(_type="pubsub")
    await until(lambda: not cache.live)
    read = asyncio.create_task(cache.validate(session_id))  # a bypass, started while down
    await until(lambda: cache.live)
    assert (await read).user == "dave"
    assert cache.size == 0


async def test_an_invalidation_that_overtakes_a_miss_keeps_it_out_of_the_cache(
    make_replica: MakeReplica,
) -> None:
    cache, _ = await make_replica()
    session_id = await cache.create("erin")
    key = session_key(session_id)
    read = asyncio.create_task(cache.validate(session_id))
    for _ in range(20):  # let the read run until it waits for Redis's answer
        await asyncio.sleep(0)
        if key in cache._pending:
            break
    assert key in cache._pending and not read.done()  # the GET is on its way
    cache.invalidate([key])  # as the listener does when a push arrives first
    assert (await read).user == "erin"
    assert key not in cache._entries
    await cache.validate(session_id)  # an undisturbed miss is cached
    assert key in cache._entries


async def test_the_lru_holds_at_most_its_size(
    make_replica: MakeReplica, admin: redis.Redis
) -> None:
    cache, _ = await make_replica(SESSION_CACHE_SIZE="5")
    ids = [await cache.create(f"user{i}") for i in range(8)]
    for session_id in ids:
        await cache.validate(session_id)
    assert cache.size == 5
    assert [session_key(s) for s in ids[3:]] == list(cache._entries)
    before = session_calls(admin)
    await cache.validate(ids[-1])  # still held: no command
    assert delta(before, session_calls(admin)) == {}
    await cache.validate(ids[0])  # evicted: read again
    assert delta(before, session_calls(admin)) == {"get": 1, "pttl": 1}
    assert cache.size == 5


async def test_the_idle_timeout_still_ends_an_unused_session(
    make_replica: MakeReplica, admin: redis.Redis
) -> None:
    cache, _ = await make_replica(SESSION_IDLE_S="2", SESSION_CACHE_RENEW_S="0.5")
    used, unused = await cache.create("frank"), await cache.create("frank")
    await cache.validate(used)
    await cache.validate(unused)
    before = session_calls(admin)
    started = time.monotonic()
    while time.monotonic() - started < 3.0:  # past the idle timeout: only `used` is used
        assert (await cache.validate(used)).user == "frank"
        await asyncio.sleep(0.1)
    with pytest.raises(InvalidCredential):
        await cache.validate(unused)
    renewals = delta(before, session_calls(admin)).get("expire", 0)
    # Renewed, but batched: at most once per SESSION_CACHE_RENEW_S (3 s / 0.5 s, +1 at the edge).
    assert 1 <= renewals <= 7
    assert admin.pttl(session_key(used)) > 1000


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SESSION_CACHE_SIZE": "-1"}, "SESSION_CACHE_SIZE"),
        ({"SESSION_CACHE_SIZE": "0"}, "SESSION_CACHE_SIZE"),
        ({"SESSION_CACHE_RENEW_S": "0"}, "SESSION_CACHE_RENEW_S"),
        ({"SESSION_CACHE": "1", "SESSION_CACHE_RENEW_S": "1800"}, "SESSION_CACHE_RENEW_S"),
        ({"SESSION_CACHE": "maybe"}, "SESSION_CACHE"),
    ],
)
def test_bad_cache_settings_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A redis-server of this test's own (it gets paused)."""
    server = shutil.which("redis-server")
    assert server
    port = free_port_block()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port, proc
    finally:
        client.close()
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait()


async def test_a_silent_channel_counts_as_lost_within_two_heartbeats(
    own_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    """Redis paused (SIGSTOP): no EOF ever comes, only silence; the missed PONG must flush."""
    port, proc = own_redis
    settings = Settings.from_env({"REDIS_URL": f"redis://127.0.0.1:{port}/0", "SESSION_CACHE": "1"})
    store = RedisStore(settings)
    cache = CachedSessionStore(store, settings)
    listening = asyncio.create_task(cache.listener.run())
    try:
        await until(lambda: cache.live)
        await cache.validate(await cache.create("gina"))
        assert cache.size == 1
        proc.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            await until(lambda: not cache.live, timeout_s=5.0)
            lost_after = time.monotonic() - paused
        finally:
            proc.send_signal(signal.SIGCONT)
        assert cache.size == 0
        assert lost_after <= 2 * HEARTBEAT_S + 0.5, lost_after
        await until(lambda: cache.live, timeout_s=5.0)
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await cache.close()
        await store.close()
