"""SessionStore against a real redis-server: timeouts, and one round trip per check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from authcore.config import Settings
from authcore.errors import ExpiredCredential, InvalidCredential
from authcore.redis_store import RedisStore
from authcore.sessions import SessionStore


@pytest.fixture
async def store(redis_port: int) -> AsyncIterator[tuple[SessionStore, RedisStore]]:
    settings = Settings.from_env(
        {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "SESSION_IDLE_S": "1",
         "SESSION_ABSOLUTE_S": "2"}
    )  # fmt: skip
    redis_store = RedisStore(settings)
    yield SessionStore(redis_store, settings), redis_store
    await redis_store.close()


async def test_each_login_gets_a_new_unguessable_id(store: tuple[SessionStore, RedisStore]) -> None:
    sessions, _ = store
    ids = {await sessions.create("alice") for _ in range(20)}
    assert len(ids) == 20 and all(len(i) == 43 for i in ids)


async def test_redis_holds_only_a_hash_of_the_id(store: tuple[SessionStore, RedisStore]) -> None:
    sessions, redis_store = store
    session_id = await sessions.create("bob")
    keys = [k.decode() for k in await redis_store.client.keys("s:*")]
    assert keys and all(session_id not in k for k in keys)


async def test_validation_is_one_round_trip(store: tuple[SessionStore, RedisStore]) -> None:
    sessions, redis_store = store
    session_id = await sessions.create("carol")
    before = await redis_store.client.info("stats")
    for _ in range(10):
        assert (await sessions.validate(session_id)).user == "carol"
    after = await redis_store.client.info("stats")
    # 10 validations + the INFO call itself
    assert after["total_commands_processed"] - before["total_commands_processed"] == 11


async def test_idle_timeout_slides_and_absolute_timeout_ends_it(
    store: tuple[SessionStore, RedisStore],
) -> None:
    sessions, _ = store
    session_id = await sessions.create("dave")
    for _ in range(3):  # used every 0.6 s: the 1 s idle timeout keeps sliding
        await asyncio.sleep(0.6)
        await sessions.validate(session_id)
    # 1.8 s in; the 2 s absolute lifetime ends it however busy it is
    await asyncio.sleep(0.4)
    with pytest.raises((ExpiredCredential, InvalidCredential)):
        await sessions.validate(session_id)


async def test_an_idle_session_expires(store: tuple[SessionStore, RedisStore]) -> None:
    sessions, _ = store
    session_id = await sessions.create("erin")
    await asyncio.sleep(1.2)
    with pytest.raises(InvalidCredential):
        await sessions.validate(session_id)


async def test_log_out_everywhere_ends_every_session_of_the_user(
    store: tuple[SessionStore, RedisStore],
) -> None:
    sessions, _ = store
    mine = [await sessions.create("frank") for _ in range(3)]
    other = await sessions.create("grace")
    assert await sessions.delete_all("frank") == 3
    for session_id in mine:
        with pytest.raises(InvalidCredential):
            await sessions.validate(session_id)
    assert (await sessions.validate(other)).user == "grace"
