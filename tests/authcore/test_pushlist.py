"""The pushed revocation set (authcore/pushlist.py) against a real redis-server.

Each test runs its own redis-server, because several kill it or cut connections. The
replica side (`PushList`) and the writer (`RevocationFeed`) are the real classes, talking
to Redis over TCP; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import gc
import re
import shutil
import subprocess
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from authbench.process import free_port_block
from authcore.config import Settings
from authcore.errors import ConfigError, RevokedCredential, StoreUnavailable
from authcore.pushlist import CLIENT_NAME_PREFIX, STREAM_KEY, PushList, RevocationFeed
from authcore.redis_store import RedisStore
from authcore.tokens import FAMILY_CLAIM


@dataclass
class Server:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server must be installed (scripts/setup.sh does it)"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = self.client()
        try:
            for _ in range(200):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.025)
            raise AssertionError("redis-server did not start")
        finally:
            client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(free_port_block(), tmp_path)
    srv.start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.kill()


def settings_for(port: int, **env: str) -> Settings:
    return Settings.from_env(
        {
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "JWT_REVOCATION": "pushlist",
            "PUSHLIST_BLOCK_MS": "100",
            "REDIS_TIMEOUT_MS": "200",
            "PUSHLIST_MAX_SILENCE_S": "1",
            **env,
        }
    )


@dataclass
class Pair:
    settings: Settings
    feed: RevocationFeed
    replica: PushList


@pytest.fixture
async def pair(server: Server) -> AsyncIterator[Pair]:
    settings = settings_for(server.port)
    store = RedisStore(settings)
    replica = PushList(settings, "test-replica")
    replica.start()
    await asyncio.wait_for(replica.loaded.wait(), 5)
    yield Pair(settings, RevocationFeed(store, settings), replica)
    await replica.stop()
    await store.close()


def claims(jti: str = "j1", sub: str = "alice", family: str = "f1", iat: float = 0) -> dict:
    now = time.time()
    return {"jti": jti, "sub": sub, FAMILY_CLAIM: family, "iat": iat or now - 1, "exp": now + 60}


async def until(predicate: Callable[[], object], timeout_s: float = 3.0) -> float:
    """Seconds until `predicate()` is true (AssertionError after `timeout_s`)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def revoked(replica: PushList, token: dict) -> bool:
    return await replica.is_token_revoked(token, FAMILY_CLAIM)


async def test_each_kind_of_revocation_reaches_the_replica(pair: Pair) -> None:
    token, other = claims("j1", "alice", "f1"), claims("j2", "bob", "f2")
    assert not await revoked(pair.replica, token)
    await pair.feed.revoke_token("j1", time.time() + 60)
    await until(lambda: len(pair.replica) == 1)
    assert await revoked(pair.replica, token)
    assert not await revoked(pair.replica, other)
    await pair.feed.revoke_families(["f2"])
    await until(lambda: len(pair.replica) == 2)
    assert await revoked(pair.replica, other)
    # log out everywhere: tokens issued before are revoked, one issued after is not
    carol_old, carol_new = claims("j3", "carol", "f3"), claims("j4", "carol", "f4")
    await pair.feed.revoke_user("carol")
    carol_new["iat"] = time.time() + 0.01
    await until(lambda: len(pair.replica) == 3)
    assert await revoked(pair.replica, carol_old)
    assert not await revoked(pair.replica, carol_new)


async def test_a_read_sends_no_redis_command(pair: Pair, server: Server) -> None:
    await pair.feed.revoke_token("j1", time.time() + 60)
    await until(lambda: len(pair.replica) == 1)
    client = server.client()
    before = client.info("commandstats")
    started = time.monotonic()
    for i in range(5000):
        await revoked(pair.replica, claims(f"x{i}"))
    elapsed = time.monotonic() - started
    after = client.info("commandstats")
    client.close()
    calls = {k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after}
    calls["cmdstat_info"] -= 1  # the `after` INFO itself
    sent = {k: v for k, v in calls.items() if v}
    # Only the tail's own XREADs, one per PUSHLIST_BLOCK_MS (100 ms) at most: none per read.
    assert set(sent) <= {"cmdstat_xread"}, sent
    assert sum(sent.values()) <= elapsed / 0.1 + 2, (sent, elapsed)


async def test_a_revocation_made_while_the_connection_was_down_is_replayed(
    pair: Pair, server: Server
) -> None:
    client = server.client()
    await pair.feed.revoke_token("before", time.time() + 60)
    await until(lambda: len(pair.replica) == 1)
    last_seen = pair.replica.last_id
    # One transaction: the replica's stream connection is killed, then the revocation is
    # appended, so it is certainly written while that connection is down.
    name = f"{CLIENT_NAME_PREFIX}:test-replica"
    (tail,) = [c["id"] for c in client.client_list() if c["name"] == name]
    with client.pipeline(transaction=True) as pipe:
        pipe.execute_command("CLIENT", "KILL", "ID", tail)
        pipe.xadd(STREAM_KEY, {"k": "jti", "v": "during", "keep": f"{time.time() + 60:.3f}"})
        killed, _ = pipe.execute()
    assert killed == 1
    await until(lambda: len(pair.replica) == 2)
    assert await revoked(pair.replica, claims("during"))
    # Read on from the last ID: "before" was not applied a second time.
    info = client.xinfo_stream(STREAM_KEY)
    assert info["length"] == 2 and pair.replica.last_id == info["last-generated-id"]
    assert last_seen < pair.replica.last_id
    await until(lambda: name in [c["name"] for c in client.client_list()])
    assert tail not in [c["id"] for c in client.client_list()]  # a new connection
    client.close()


async def test_silence_past_the_setting_fails_closed_and_recovers(
    pair: Pair, server: Server
) -> None:
    await revoked(pair.replica, claims())  # served while the stream answers
    killed = time.monotonic()
    server.kill()
    # Keeps serving with the set it has, within PUSHLIST_MAX_SILENCE_S (1 s) ...
    assert not await revoked(pair.replica, claims())

    async def refused() -> bool:
        try:
            await revoked(pair.replica, claims())
        except StoreUnavailable:
            return True
        return False

    while not await refused():
        assert time.monotonic() - killed < 3.0, "still serving long after the silence limit"
        await asyncio.sleep(0.01)
    silent_for = time.monotonic() - killed
    assert 0.8 <= silent_for <= 2.0, silent_for  # ~PUSHLIST_MAX_SILENCE_S after the kill
    assert await pair.replica.readiness() is not None
    server.start()  # empty: no persistence; the stream starts anew
    await until(lambda: pair.replica.stale_reason() is None, 5)
    assert not await revoked(pair.replica, claims())


async def test_a_replica_started_while_redis_is_down_is_not_ready(server: Server) -> None:
    server.kill()
    replica = PushList(settings_for(server.port), "late")
    replica.start()
    try:
        await asyncio.sleep(0.5)
        assert "not loaded" in (await replica.readiness() or "")
        with pytest.raises(StoreUnavailable):
            await revoked(replica, claims())
        server.start()
        await asyncio.wait_for(replica.loaded.wait(), 5)
        assert await replica.readiness() is None
    finally:
        await replica.stop()


async def test_a_new_replica_reads_the_whole_stream(pair: Pair, server: Server) -> None:
    for i in range(25):
        await pair.feed.revoke_token(f"old{i}", time.time() + 60)
    late = PushList(pair.settings, "late")
    late.start()
    try:
        await asyncio.wait_for(late.loaded.wait(), 5)
        assert len(late) == 25 and await revoked(late, claims("old7"))
    finally:
        await late.stop()


async def test_entries_expire_with_their_tokens(pair: Pair) -> None:
    now = time.time()
    await pair.feed.revoke_token("short", now + 0.3)  # kept until exp + leeway (5 s) + 1
    await until(lambda: len(pair.replica) == 1)
    replica = pair.replica
    assert replica.expire(now + 1) == 0
    assert replica.expire(now + 0.3 + pair.settings.jwt_leeway_s + 1.01) == 1
    assert len(replica) == 0


def test_memory_of_expired_entries_is_given_back() -> None:
    """10k entries held, then expired: the set's memory (dicts and heap) goes back."""
    replica = PushList(Settings.from_env({"JWT_REVOCATION": "pushlist"}), "memory")
    keep = f"{time.time() + 60:.3f}"
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(10_000):
        replica.apply(f"{i + 1}-0", {"k": "jti", "v": f"jti-{i:012d}-abcdefgh", "keep": keep})
    held = tracemalloc.get_traced_memory()[0] - base
    assert len(replica) == 10_000
    replica.expire(time.time() + 61)
    gc.collect()
    left = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(replica) == 0
    assert held > 500_000  # the entries did take room (~100+ bytes each)
    assert left < held / 10, (held, left)


async def test_trimmed_entries_it_never_read_make_a_replica_fail_closed(
    server: Server,
) -> None:
    settings = settings_for(server.port, PUSHLIST_MAXLEN="10")
    store = RedisStore(settings)
    feed = RevocationFeed(store, settings)
    try:
        # XADD MAXLEN ~ trims whole nodes (100 entries by default): write well past that.
        for i in range(300):
            await feed.revoke_token(f"t{i}", time.time() + 60)
        client = server.client()
        info = client.xinfo_stream(STREAM_KEY)
        assert info["entries-added"] == 300 and info["length"] < 300  # trimmed
        client.close()
        late = PushList(settings, "late")
        late.start()
        try:
            await asyncio.wait_for(late.loaded.wait(), 5)
            assert "trimmed" in (await late.readiness() or "")
            with pytest.raises(StoreUnavailable):
                await revoked(late, claims())
        finally:
            await late.stop()
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUSHLIST_MAX_SILENCE_S": "0"}, "PUSHLIST_MAX_SILENCE_S"),
        ({"PUSHLIST_MAX_SILENCE_S": "nan"}, "PUSHLIST_MAX_SILENCE_S"),
        ({"PUSHLIST_MAX_SILENCE_S": "1", "PUSHLIST_BLOCK_MS": "1000"}, "PUSHLIST_MAX_SILENCE_S"),
        ({"PUSHLIST_BLOCK_MS": "-5"}, "PUSHLIST_BLOCK_MS"),
        ({"PUSHLIST_MAXLEN": "0"}, "PUSHLIST_MAXLEN"),
        ({"JWT_REVOCATION": "pushed"}, "JWT_REVOCATION"),
    ],
)
def test_bad_pushlist_settings_are_refused_naming_the_setting(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


async def test_a_reused_refresh_token_pushes_its_family(pair: Pair, server: Server) -> None:
    """Reuse of a spent refresh token revokes the family inside a Lua script; the store
    then pushes the family, so its access tokens are refused on every replica too."""
    from auth_service.refresh_tokens import RefreshTokenStore

    store = RedisStore(pair.settings)
    try:
        tokens = RefreshTokenStore(store, 60, 600, 70, RevocationFeed(store, pair.settings))
        family, first = await tokens.start_family("dave")
        await tokens.rotate(first)
        assert not await revoked(pair.replica, claims("jd", "dave", family))
        with pytest.raises(RevokedCredential, match="reused"):
            await tokens.rotate(first)  # spent: reuse
        await until(lambda: len(pair.replica) == 1)
        assert await revoked(pair.replica, claims("jd", "dave", family))
        assert not await revoked(pair.replica, claims("je", "dave", "another-family"))
    finally:
        await store.close()
