"""RedisStore against a real redis-server that is paused, then killed and restarted.

The load scenarios measure this through the whole system; here the client alone is
pinned, without load or HTTP in the way: a hung Redis costs one timeout, then calls fail
at once; service resumes within a cooldown of Redis returning; pooled connections that
died with a killed Redis do not turn into a 503 once a new Redis answers.
"""

from __future__ import annotations

import asyncio
import signal
import time

from authcore.config import Settings
from authcore.errors import StoreUnavailable
from authcore.redis_store import Redis, RedisStore
from tests.chaos.conftest import RedisProcess

TIMEOUT_MS = 250
COOLDOWN_MS = 500


def _store(port: int, timeout_ms: int = TIMEOUT_MS) -> RedisStore:
    return RedisStore(
        Settings.from_env(
            {
                "REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "REDIS_TIMEOUT_MS": str(timeout_ms),
                "REDIS_BREAKER_COOLDOWN_MS": str(COOLDOWN_MS),
            }
        )
    )


async def _ping(r: Redis) -> bool:
    return bool(await r.ping())


async def _timed_call(store: RedisStore) -> tuple[bool, float]:
    started = time.monotonic()
    try:
        await store.call(_ping)
        ok = True
    except StoreUnavailable:
        ok = False
    return ok, time.monotonic() - started


async def test_paused_redis_costs_one_timeout_then_fails_fast_and_recovers(
    redis_server: RedisProcess,
) -> None:
    store = _store(redis_server.port)
    try:
        await asyncio.gather(*(store.call(_ping) for _ in range(8)))  # a warm pool
        redis_server.signal(signal.SIGSTOP)
        ok, first = await _timed_call(store)
        assert not ok and TIMEOUT_MS / 1000 * 0.8 <= first < 1.0, first
        # The breaker is open: 50 concurrent calls answer at once, none waits for Redis.
        started = time.monotonic()
        results = await asyncio.gather(*(_timed_call(store) for _ in range(50)))
        assert not any(ok for ok, _ in results)
        assert time.monotonic() - started < 0.2
        # Probes after each cooldown still cost one timeout each: never more.
        await asyncio.sleep(COOLDOWN_MS / 1000)
        ok, probe = await _timed_call(store)
        assert not ok and probe < 1.0, probe

        redis_server.signal(signal.SIGCONT)
        resumed = time.monotonic()
        while not (await _timed_call(store))[0]:
            assert time.monotonic() - resumed < 2.0, "no recovery within 2 s of SIGCONT"
            await asyncio.sleep(0.02)
        # At worst one cooldown plus the probe's round trip.
        assert time.monotonic() - resumed <= COOLDOWN_MS / 1000 + 0.3
        assert not store.breaker.is_open
    finally:
        redis_server.signal(signal.SIGCONT)
        await store.close()


async def test_pooled_connections_of_a_killed_redis_cost_no_503_after_restart(
    redis_server: RedisProcess,
) -> None:
    # What is pinned is the retry on a fresh connection, not the timeout: a generous one
    # keeps eight reconnects on a busy CI machine from timing out (seen once at 250 ms).
    store = _store(redis_server.port, timeout_ms=2000)
    try:
        await asyncio.gather(*(store.call(_ping) for _ in range(8)))  # 8 pooled connections
        # Killed and back before the service asked it anything: every pooled connection
        # died with the old process, and nothing has noticed yet.
        redis_server.kill()
        redis_server.start()
        results = await asyncio.gather(*(_timed_call(store) for _ in range(8)))
        # Each call met a dead connection; a connection error is retried once on a fresh
        # one, so all succeed. (With no retry, all 8 answered 503 and opened the breaker,
        # although Redis was back.)
        assert all(ok for ok, _ in results), results
        assert not store.breaker.is_open
    finally:
        await store.close()
