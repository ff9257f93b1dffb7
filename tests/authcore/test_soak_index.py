"""The per-user session index `us:<user>` holds live sessions only (issue 16, item 4).

Before the fix every login added a member and nothing removed the members of sessions
that expired on their own, so a user who logged in often kept an index as long as every
session of the last SESSION_ABSOLUTE_S. These tests run against a real redis-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from authcore.config import Settings
from authcore.errors import InvalidCredential
from authcore.redis_store import RedisStore
from authcore.sessions import USER_SESSIONS_PREFIX, SessionStore


@pytest.fixture
async def store(redis_port: int) -> AsyncIterator[tuple[SessionStore, RedisStore]]:
    settings = Settings.from_env(
        {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "SESSION_IDLE_S": "1",
         "SESSION_ABSOLUTE_S": "60"}
    )  # fmt: skip
    redis_store = RedisStore(settings)
    yield SessionStore(redis_store, settings), redis_store
    await redis_store.close()


async def _members(redis_store: RedisStore, user: str) -> set[bytes]:
    return set(await redis_store.client.smembers(USER_SESSIONS_PREFIX + user))


async def test_expired_sessions_leave_the_index_on_the_next_login(
    store: tuple[SessionStore, RedisStore],
) -> None:
    sessions, redis_store = store
    for _ in range(5):
        await sessions.create("ivan")
    assert len(await _members(redis_store, "ivan")) == 5
    await asyncio.sleep(1.3)  # the 1 s idle timeout ends all five; the index's TTL is 60 s
    assert await redis_store.client.exists(USER_SESSIONS_PREFIX + "ivan") == 1
    fresh = await sessions.create("ivan")
    members = await _members(redis_store, "ivan")
    assert len(members) == 1, "the five expired sessions are still indexed"
    assert (await sessions.validate(fresh)).user == "ivan"


async def test_live_sessions_stay_indexed_and_log_out_everywhere_ends_them(
    store: tuple[SessionStore, RedisStore],
) -> None:
    sessions, redis_store = store
    old = await sessions.create("judy")
    await asyncio.sleep(1.3)  # `old` expires
    live = [await sessions.create("judy") for _ in range(3)]
    assert len(await _members(redis_store, "judy")) == 3  # the live ones, not `old`
    assert await sessions.delete_all("judy") == 3
    for session_id in [old, *live]:
        with pytest.raises(InvalidCredential):
            await sessions.validate(session_id)


async def test_the_index_stays_bounded_under_steady_relogin(
    store: tuple[SessionStore, RedisStore],
) -> None:
    """A user who logs in every 0.25 s with a 1 s idle timeout has at most ~5 live
    sessions at any time; without pruning the index would grow to every login."""
    sessions, redis_store = store
    sizes = []
    for _ in range(16):
        await sessions.create("mallory")
        sizes.append(len(await _members(redis_store, "mallory")))
        await asyncio.sleep(0.25)
    assert max(sizes) <= 6, sizes
