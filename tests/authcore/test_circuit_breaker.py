"""CircuitBreaker: fail fast while open, one probe after the cooldown, close on success."""

from __future__ import annotations

import time

import pytest

from authcore.errors import StoreUnavailable
from authcore.redis_store import CircuitBreaker


def test_closed_breaker_lets_calls_through() -> None:
    breaker = CircuitBreaker(cooldown_s=0.05)
    breaker.before_call()
    assert not breaker.is_open


def test_open_breaker_fails_fast_then_lets_one_probe_through() -> None:
    breaker = CircuitBreaker(cooldown_s=0.05)
    breaker.on_failure()
    with pytest.raises(StoreUnavailable):
        breaker.before_call()
    time.sleep(0.06)
    breaker.before_call()  # the probe
    with pytest.raises(StoreUnavailable):
        breaker.before_call()  # everyone else still fails fast while the probe runs
    breaker.on_success()
    assert not breaker.is_open
    breaker.before_call()


def test_failed_probe_reopens_for_another_cooldown() -> None:
    breaker = CircuitBreaker(cooldown_s=0.05)
    breaker.on_failure()
    time.sleep(0.06)
    breaker.before_call()
    breaker.on_failure()
    with pytest.raises(StoreUnavailable):
        breaker.before_call()


def test_a_cancelled_probe_does_not_keep_the_breaker_open() -> None:
    breaker = CircuitBreaker(cooldown_s=0.05)
    breaker.on_failure()
    time.sleep(0.06)
    breaker.before_call()  # the probe starts...
    breaker.on_abandoned()  # ...and its request is cancelled
    breaker.before_call()  # a new probe may go


async def test_store_call_cancelled_mid_probe_frees_the_probe_slot() -> None:
    import asyncio

    from authcore.config import Settings
    from authcore.redis_store import RedisStore

    # A real client aimed at a port where nothing listens; the operation itself is what
    # gets cancelled, so no Redis server is needed to show the bookkeeping.
    store = RedisStore(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}))
    store.breaker.on_failure()
    store.breaker._open_until = 1.0  # cooldown long over

    async def hangs(_client: object) -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(store.call(hangs))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.breaker.before_call()  # would raise StoreUnavailable if the slot were stuck
    await store.close()
