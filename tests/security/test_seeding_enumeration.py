"""No user enumeration while the benchmark users are still being seeded.

A login for a seeded user whose hash was not made yet used to make it first: a hash plus
a verification, about twice an unknown user's cost (92 ms against 45 ms in the review),
which told an observer which names exist. Now every login costs one verification.
"""

from __future__ import annotations

import statistics
import time

from tests.client import Answer, request
from tests.security.conftest import WatchedFactory

SEED = 5000  # seeding takes minutes on one core: the top users stay unseeded throughout
PAIRS = 11


def _seeded(auth_url: str) -> float:
    for line in request(auth_url, "GET", "/metrics").body.decode().splitlines():
        if line.startswith("authbench_auth_seeded_users "):
            return float(line.split()[1])
    raise AssertionError("no seeding gauge")


def test_a_user_not_seeded_yet_costs_what_an_unknown_user_costs(
    watched_cluster: WatchedFactory,
) -> None:
    watched = watched_cluster(
        1,
        {"AUTH_SEED_USERS": str(SEED), "LOGIN_MAX_FAILURES": "1000",
         "LOGIN_MAX_FAILURES_PER_IP": "100000"},
    )  # fmt: skip

    def timed(username: str) -> tuple[float, Answer]:
        started = time.perf_counter()
        answer = request(
            watched.url, "POST", "/auth/login",
            body={"username": username, "password": "not-the-password", "mode": "jwt"},
        )  # fmt: skip
        return time.perf_counter() - started, answer

    timed("nobody-warm-up")
    known: list[float] = []
    unknown: list[float] = []
    for i in range(PAIRS):  # interleaved, so load from other work hits both alike
        t_known, a_known = timed(f"user{SEED - 1 - i}")  # each one a first login
        t_unknown, a_unknown = timed(f"nobody{i}")
        known.append(t_known)
        unknown.append(t_unknown)
        assert (a_known.status, a_known.body) == (a_unknown.status, a_unknown.body)
    assert _seeded(watched.cluster.auth_url) < SEED - PAIRS, "seeding ended: nothing measured"
    ratio = statistics.median(known) / statistics.median(unknown)
    # One argon2id verification either way (ratio ~1); making the hash on the login path
    # cost two (ratio ~2).
    assert 0.67 < ratio < 1.5, (ratio, statistics.median(known), statistics.median(unknown))
    # The seeded users' passwords still work before their hashes exist.
    good = request(
        watched.url, "POST", "/auth/login",
        body={"username": f"user{SEED - 1}", "password": f"password{SEED - 1}", "mode": "jwt"},
    )  # fmt: skip
    assert good.status == 200, good.body
    watched.remember(f"password{SEED - 1}", good.json()["access_token"],
                     good.json()["refresh_token"])  # fmt: skip
