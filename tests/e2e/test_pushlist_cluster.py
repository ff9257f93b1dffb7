"""jwt+pushlist on a real cluster: redis-server, the auth service, replica processes.

What the mode promises, each pinned here: a read sends Redis nothing; a logout through
the auth service reaches every replica within 100 ms; Redis gone longer than
PUSHLIST_MAX_SILENCE_S makes replicas fail closed (503 JSON); a replica started while
Redis is down holds no set, so it is not ready and refuses reads.
"""

from __future__ import annotations

import threading
import time

import redis

from tests.client import bearer, login, request
from tests.conftest import ClusterFactory

ENV = {
    "JWT_REVOCATION": "pushlist",
    "PUSHLIST_BLOCK_MS": "500",
    "PUSHLIST_MAX_SILENCE_S": "2",
    "HEALTH_INTERVAL_S": "0.2",
}


def _calls(client: redis.Redis) -> dict[str, int]:
    return {k: v["calls"] for k, v in client.info("commandstats").items()}


def test_reads_send_no_redis_command_and_a_logout_reaches_every_replica_within_100ms(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(replicas=3, env=ENV)
    replicas = cluster.replica_urls()
    token = bearer(login(cluster.gateway_url, 1, "jwt"))
    client = redis.Redis(port=cluster.ports.redis, decode_responses=True)

    # 1. reads at a replica, straight to it: Redis sees no command for them
    before = _calls(client)
    started = time.monotonic()
    reads = 300
    for i in range(reads):
        assert request(replicas[i % 3], "GET", "/api/me", headers=token).status == 200
    elapsed = time.monotonic() - started
    after = _calls(client)
    sent = {k: after[k] - before.get(k, 0) for k in after}
    sent["cmdstat_info"] -= 1  # the `after` INFO itself
    sent = {k: v for k, v in sent.items() if v}
    # What remains is background, whatever the reads: each replica's (and auth's) XREAD
    # heartbeat every 0.5 s, the gateway's readiness probes every 0.2 s per replica, and
    # once a second whatever else the auth service polls.
    background = (elapsed + 1) * (4 / 0.5 + 3 / 0.2 + 2)
    assert sum(sent.values()) <= background < reads / 2, (sent, elapsed)
    assert sent.get("cmdstat_xread", 0) <= 4 * (elapsed / 0.5 + 2), (sent, elapsed)

    # 2. a logout through the gateway: every replica answers 401 within 100 ms
    first_401: dict[str, float] = {}
    stop = threading.Event()

    def watch(url: str) -> None:
        while not stop.is_set():
            answer = request(url, "GET", "/api/me", headers=token, timeout=2)
            if answer.status == 401:
                first_401[url] = time.monotonic()
                return
            assert answer.status == 200, answer.body

    watchers = [threading.Thread(target=watch, args=(url,)) for url in replicas]
    for w in watchers:
        w.start()
    time.sleep(0.2)  # all three are asking
    sent_at = time.monotonic()
    logout = request(cluster.gateway_url, "POST", "/auth/logout", headers=token)
    answered_at = time.monotonic()
    assert logout.status == 204, logout.body
    for w in watchers:
        w.join(5)
    stop.set()
    assert set(first_401) == set(replicas), first_401
    # Measured from the logout's answer: from then on the revocation is in the stream.
    window = max(first_401.values()) - answered_at
    assert window <= 0.1, f"last replica refused the token {window * 1000:.0f} ms after logout"
    assert max(first_401.values()) >= sent_at
    refused = request(replicas[0], "GET", "/api/me", headers=token)
    assert refused.status == 401 and refused.json()["error"] == "revoked_credential"
    assert "www-authenticate" in refused.headers

    # 3. log out everywhere: a second token of the same user is refused by every replica
    other = bearer(login(cluster.gateway_url, 2, "jwt"))
    second = bearer(login(cluster.gateway_url, 2, "jwt"))
    assert request(replicas[1], "GET", "/api/me", headers=other).status == 200
    assert (
        request(cluster.gateway_url, "POST", "/auth/logout?scope=all", headers=second).status == 204
    )
    deadline = time.monotonic() + 1
    while any(request(u, "GET", "/api/me", headers=other).status != 401 for u in replicas):
        assert time.monotonic() < deadline, "log out everywhere did not reach every replica"
        time.sleep(0.01)
    client.close()


def test_redis_down_past_the_silence_limit_fails_closed_and_a_new_replica_is_not_ready(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(replicas=2, env=ENV)
    replica = cluster.replica_urls()[0]
    token = bearer(login(cluster.gateway_url, 3, "jwt"))
    assert request(replica, "GET", "/api/me", headers=token).status == 200

    killed = time.monotonic()
    cluster.kill_redis()
    # Within the silence limit the replica serves with the set it has ...
    assert request(replica, "GET", "/api/me", headers=token).status == 200
    # ... then it fails closed: 503 JSON, not ready.
    while True:
        answer = request(replica, "GET", "/api/me", headers=token)
        if answer.status != 200:
            break
        assert time.monotonic() - killed < 5, "still serving long past PUSHLIST_MAX_SILENCE_S"
        time.sleep(0.05)
    silent_for = time.monotonic() - killed
    assert answer.status == 503, answer.body
    assert answer.json()["error"] == "redis_unavailable"
    assert "silent" in answer.json()["detail"]
    assert 1.5 <= silent_for <= 4.0, silent_for
    assert request(replica, "GET", "/readyz").status == 503

    # A replica restarted during the outage has no set: not ready, reads refused.
    child = cluster.child("resource-2")
    assert child.process is not None
    child.process.kill()
    child.process.wait()
    child.start()
    url = cluster.replica_urls()[1]
    deadline = time.monotonic() + 20
    while request_status(url, "/healthz") != 200:
        assert time.monotonic() < deadline, "restarted replica did not come up"
        time.sleep(0.1)
    ready = request(url, "GET", "/readyz")
    assert ready.status == 503 and "not loaded" in ready.body.decode(), ready.body
    refused = request(url, "GET", "/api/me", headers=token)
    assert refused.status == 503 and refused.json()["error"] == "redis_unavailable"

    # Redis back (empty): both load the stream and serve again.
    cluster.start_redis()
    deadline = time.monotonic() + 10
    while request_status(url, "/readyz") != 200 or request_status(replica, "/readyz") != 200:
        assert time.monotonic() < deadline, "replicas not ready after Redis came back"
        time.sleep(0.1)
    assert request(url, "GET", "/api/me", headers=token).status == 200


def request_status(url: str, path: str) -> int:
    try:
        return request(url, "GET", path, timeout=1).status
    except OSError:
        return 0


def test_edge_validation_at_the_gateway_checks_the_pushed_set_too(
    make_cluster: ClusterFactory,
) -> None:
    """VALIDATE_AT=gateway: the gateway checks credentials instead of the replicas, so it
    must hold the pushed set itself; without it a logged-out token would pass."""
    cluster = make_cluster(replicas=1, env={**ENV, "VALIDATE_AT": "gateway"})
    gateway = cluster.gateway_url
    token = bearer(login(gateway, 4, "jwt"))
    assert request(gateway, "GET", "/api/me", headers=token).status == 200
    assert request(gateway, "POST", "/auth/logout", headers=token).status == 204
    deadline = time.monotonic() + 1
    while (answer := request(gateway, "GET", "/api/me", headers=token)).status != 401:
        assert answer.status == 200, answer.body
        assert time.monotonic() < deadline, "the gateway still accepts a logged-out token"
        time.sleep(0.01)
    assert answer.json()["error"] == "revoked_credential"


def test_on_sentinels_the_tails_follow_the_primary_through_a_failover(
    make_cluster: ClusterFactory,
) -> None:
    from authbench.targets.base import SENTINEL

    cluster = make_cluster(
        replicas=1,
        env=ENV,
        store=SENTINEL,
        sentinel_down_after_ms=300,
        sentinel_failover_timeout_ms=2000,
    )
    gateway, replica = cluster.gateway_url, cluster.replica_urls()[0]
    token = bearer(login(gateway, 5, "jwt"))
    assert request(gateway, "POST", "/auth/logout", headers=token).status == 204
    deadline = time.monotonic() + 1
    while request(replica, "GET", "/api/me", headers=token).status != 401:
        assert time.monotonic() < deadline, "logout did not reach the replica"
        time.sleep(0.01)
    old, _killed_at = cluster.kill_redis_primary()
    cluster.wait_redis_failover(old, 20)
    # After the failover a new logout reaches the replica through the new primary.
    later = bearer(login_when_up(gateway, 6))
    # Until its own tail has found the new primary the auth service fails closed (503).
    deadline = time.monotonic() + 10
    while (out := request(gateway, "POST", "/auth/logout", headers=later)).status != 204:
        assert out.status == 503 and time.monotonic() < deadline, out.body
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while request(replica, "GET", "/api/me", headers=later).status != 401:
        assert time.monotonic() < deadline, "after the failover, logout did not reach the replica"
        time.sleep(0.05)
    # The token revoked before the failover is still refused (held, or replayed).
    assert request(replica, "GET", "/api/me", headers=token).status == 401


def login_when_up(gateway: str, user: int) -> object:
    deadline = time.monotonic() + 10
    while (answer := login(gateway, user, "jwt")).status != 200:
        assert time.monotonic() < deadline, answer.body
        time.sleep(0.1)
    return answer
