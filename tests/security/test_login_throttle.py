"""Login throttling under parallel guessing, and whose address it counts.

- An attempt is reserved before its password is verified, so 200 parallel wrong
  passwords for one account reach argon2 at most LOGIN_MAX_FAILURES times (counted by
  the auth service's own counters, not by timing).
- The per-address counter believes X-Forwarded-For only from a TRUSTED_PROXIES peer:
  a client that talks to the auth port directly cannot spread its failures over
  invented addresses.
"""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from tests.client import request
from tests.security.conftest import WatchedFactory

LIMIT = 5
GUESSES = 200


def _metric(base_url: str, name: str) -> float | None:
    total = None
    for line in request(base_url, "GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def test_parallel_wrong_passwords_reach_argon2_at_most_the_limit(
    watched_cluster: WatchedFactory,
) -> None:
    watched = watched_cluster(
        1, {"LOGIN_MAX_FAILURES": str(LIMIT), "LOGIN_MAX_FAILURES_PER_IP": "100000"}
    )
    auth = watched.cluster.auth_url
    failures = 'authbench_logins_total{mode="jwt",outcome="failure"}'
    verifications = "authbench_auth_password_verifications_total"
    before = _metric(auth, verifications)
    start = threading.Barrier(GUESSES)

    def guess(i: int) -> int:
        body = {"username": "user3", "password": f"guess{i}", "mode": "jwt"}
        start.wait()
        # Straight to the auth port: behind the gateway, guesses queued for argon2 beyond
        # UPSTREAM_TIMEOUT_S would be 504s, and the count of 401s would hide how many ran.
        return request(auth, "POST", "/auth/login", body=body, timeout=120).status

    with ThreadPoolExecutor(GUESSES) as pool:
        statuses = list(pool.map(guess, range(GUESSES)))
    wrong = statuses.count(401)
    failed = _metric(auth, failures) or 0  # failed verifications, as the service counts
    assert wrong <= LIMIT and failed <= LIMIT, (wrong, failed, statuses.count(429))
    assert set(statuses) <= {401, 429}, statuses
    assert before is not None, "the auth service counts its argon2 verifications"
    verified = (_metric(auth, verifications) or 0) - before
    assert verified <= LIMIT, verified
    assert wrong >= 1 and statuses.count(429) >= GUESSES - LIMIT
    # The account stays locked for the window, even with the right password.
    right = {"username": "user3", "password": "password3", "mode": "jwt"}
    locked = request(watched.url, "POST", "/auth/login", body=right)
    assert locked.status == 429 and int(locked.headers["retry-after"]) > 0
    # Other accounts are not affected.
    other_user = {**right, "username": "user4", "password": "password4"}
    other = request(watched.url, "POST", "/auth/login", body=other_user)
    assert other.status == 200
    watched.remember("password4", other.json()["access_token"], other.json()["refresh_token"])


def _login_from(source: str, port: int, username: str, forwarded_for: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        body = json.dumps({"username": username, "password": "wrong", "mode": "jwt"})
        conn.request(
            "POST", "/auth/login", body=body,
            headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for},
        )  # fmt: skip
        return conn.getresponse().status
    finally:
        conn.close()


def test_forwarded_for_names_the_client_only_when_a_trusted_proxy_sends_it(
    watched_cluster: WatchedFactory,
) -> None:
    # The trusted proxy is 127.0.0.2; everything else on loopback is an ordinary client.
    watched = watched_cluster(
        1,
        {"TRUSTED_PROXIES": "127.0.0.2/32", "LOGIN_MAX_FAILURES_PER_IP": "3",
         "LOGIN_MAX_FAILURES": "1000"},
    )  # fmt: skip
    port = int(urlsplit(watched.cluster.auth_url).port or 0)
    # An untrusted client invents a new address per attempt: its own address still counts.
    spoofed = [_login_from("127.0.0.1", port, f"user{i}", f"10.9.9.{i}") for i in range(4)]
    assert spoofed == [401, 401, 401, 429], spoofed
    # From the trusted proxy, the client it names is counted, each on its own.
    proxied = [_login_from("127.0.0.2", port, f"user{i}", "127.0.0.9, 10.1.1.1") for i in range(4)]
    assert proxied == [401, 401, 401, 429], proxied
    other = _login_from("127.0.0.2", port, "user5", "10.1.1.2")
    assert other == 401  # another client behind the same proxy is not throttled
    # Hops the client wrote itself (left of the proxy's) prove nothing.
    assert _login_from("127.0.0.2", port, "user6", "10.1.1.3, 10.1.1.1") == 429
