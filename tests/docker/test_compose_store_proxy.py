"""Store distance on compose: the redis-proxy container sits between the services and
Redis and adds the round trip the bench asks for, switched through the engine."""

from __future__ import annotations

import pytest

from authbench.targets.compose import (
    LOAD_PROFILE,
    PROXY_SERVICE,
    PROXY_URL,
    STORE_PROXY_PROFILE,
    ComposeTarget,
)

# Mean PING round trip in ms, measured inside the auth container (the services' network
# and the services' own redis-py), over the URL given as the first argument.
_PING_MS = (
    "import sys, time, redis; r = redis.Redis.from_url(sys.argv[1], socket_timeout=5); "
    "r.ping(); t = time.perf_counter(); [r.ping() for _ in range(10)]; "
    "print((time.perf_counter() - t) / 10 * 1000)"
)


def ping_ms(target: ComposeTarget, url: str) -> float:
    done = target.compose("exec", "-T", "auth", "python", "-c", _PING_MS, url)
    return float(done.stdout.strip().splitlines()[-1])


def test_a_store_delay_points_the_services_at_the_proxy(compose_stack: ComposeTarget) -> None:
    proxied = ComposeTarget(
        project_name=compose_stack.project_name, env=dict(compose_stack.env), redis_delay_ms=0
    )
    assert proxied.services_redis_url == PROXY_URL  # what every service is given
    assert proxied.supports("slow_redis")
    assert compose_stack.services_redis_url != PROXY_URL
    assert not compose_stack.supports("slow_redis")  # no proxy: nothing to slow


@pytest.mark.timeout(600)
def test_the_proxy_container_adds_the_asked_round_trip_and_removes_it(
    compose_stack: ComposeTarget,
) -> None:
    if not compose_stack.is_up():  # test_compose_stack's last test takes the stack down
        compose_stack.up(replicas=1, build=False, timeout_s=240)
    proxied = ComposeTarget(
        project_name=compose_stack.project_name, env=dict(compose_stack.env), redis_delay_ms=0
    )
    proxied.compose("build", "locust-master", profiles=(LOAD_PROFILE,), timeout_s=900)
    # Only the proxy: --no-deps leaves the running services (and their settings) alone.
    proxied.compose(
        "up", "-d", "--no-deps", "--wait", PROXY_SERVICE,
        profiles=(STORE_PROXY_PROFILE,), timeout_s=180,
    )  # fmt: skip
    try:
        proxied.slow_redis(0)
        base = ping_ms(compose_stack, PROXY_URL)
        proxied.slow_redis(5.0)  # 5 ms each way: a 10 ms round trip
        slow = ping_ms(compose_stack, PROXY_URL)
        direct = ping_ms(compose_stack, "redis://redis:6379/0")
        proxied.slow_redis(0)
        back = ping_ms(compose_stack, PROXY_URL)
    finally:
        proxied.compose("rm", "-f", "-s", PROXY_SERVICE, profiles=(STORE_PROXY_PROFILE,))
    assert slow >= 9.5, (base, slow)  # the whole round trip was added
    assert slow - direct >= 9.0, (direct, slow)  # by the proxy, not by a slow Redis
    assert back < slow - 5.0, (back, slow)  # and switched off again
