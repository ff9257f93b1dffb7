"""CircuitBreaker: fail fast while open, one probe after the cooldown, close on success."""

from __future__ import annotations

import time

import pytest

from authbench.errors import StoreUnavailable
from authbench.redis_store import CircuitBreaker


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
