"""Mode session+cache on a real cluster (redis-server, auth, 3 replica processes, gateway):
a warm replica asks Redis nothing, a logout reaches every replica at once, and killing
the replicas' invalidation channels never lets a deleted session through."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from authbench.targets.local import LocalCluster
from authcore.sessions import session_key
from tests.client import login, request, session_cookie
from tests.conftest import ClusterFactory

SESSION_COMMANDS = ("get", "getex", "pttl", "expire")


@pytest.fixture
def cluster(make_cluster: ClusterFactory) -> LocalCluster:
    return make_cluster(replicas=3, env={"SESSION_CACHE": "1"})


@pytest.fixture
def admin(cluster: LocalCluster) -> Iterator[redis.Redis]:
    host, port = cluster.redis_address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    yield client
    client.close()


def session_calls(admin: redis.Redis) -> int:
    stats = admin.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in SESSION_COMMANDS)


def statuses(urls: list[str], cookie: str) -> list[int]:
    return [request(url, "GET", "/api/me", headers={"Cookie": cookie}).status for url in urls]


def every_replica_says(cluster: LocalCluster, line: str) -> bool:
    return all(
        line in request(url, "GET", "/metrics").body.decode().splitlines()
        for url in cluster.replica_urls()
    )


def channels_up(cluster: LocalCluster) -> bool:
    return every_replica_says(cluster, "authbench_session_cache_channel_up 1.0")


def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.02)


def test_warm_replicas_ask_redis_nothing_and_a_logout_reaches_them_all(
    cluster: LocalCluster, admin: redis.Redis
) -> None:
    replicas = cluster.replica_urls()
    wait_for(lambda: channels_up(cluster))
    answer = login(cluster.gateway_url, 1, "session")
    assert answer.status == 200
    cookie = session_cookie(answer)
    assert statuses(replicas, cookie) == [200, 200, 200]  # each replica's one miss
    before = session_calls(admin)
    for _ in range(50):
        assert statuses(replicas, cookie) == [200, 200, 200]
    assert session_calls(admin) - before == 0  # 150 reads, no session command

    logout = request(cluster.gateway_url, "POST", "/auth/logout", headers={"Cookie": cookie})
    assert logout.status == 204
    done = time.monotonic()
    refused_after = {}
    while len(refused_after) < len(replicas) and time.monotonic() - done < 2.0:
        for url, status in zip(replicas, statuses(replicas, cookie), strict=True):
            if status == 401:
                refused_after.setdefault(url, time.monotonic() - done)
    assert set(refused_after) == set(replicas)
    assert max(refused_after.values()) < 0.1, refused_after


def test_killed_channels_flush_and_a_deleted_session_is_never_served(
    cluster: LocalCluster, admin: redis.Redis
) -> None:
    replicas = cluster.replica_urls()
    wait_for(lambda: channels_up(cluster))
    cookies = [session_cookie(login(cluster.gateway_url, i, "session")) for i in (2, 3)]
    for cookie in cookies:
        assert statuses(replicas, cookie) == [200, 200, 200]
    # Every replica's invalidation channel dies; then a session is deleted behind its back.
    assert admin.client_kill_filter(_type="pubsub") == len(replicas)
    wait_for(lambda: every_replica_says(cluster, "authbench_session_cache_channel_drops_total 1.0"))
    deleted_id = cookies[1].split("=", 1)[1]
    admin.delete(session_key(deleted_id))
    before = session_calls(admin)
    assert statuses(replicas, cookies[1]) == [401, 401, 401]
    assert statuses(replicas, cookies[0]) == [200, 200, 200]
    assert session_calls(admin) - before >= 2 * len(replicas)  # asked Redis, not the cache
    wait_for(lambda: channels_up(cluster))  # back: cached again, still never the deleted one
    assert statuses(replicas, cookies[1]) == [401, 401, 401]
    assert statuses(replicas, cookies[0]) == [200, 200, 200]
    before = session_calls(admin)
    assert statuses(replicas, cookies[0]) == [200, 200, 200]
    assert session_calls(admin) - before == 0
