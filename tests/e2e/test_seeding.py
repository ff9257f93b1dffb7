"""Seeding 1000 real argon2id hashes happens in the background: logins never wait on it."""

from __future__ import annotations

import time

from tests.client import login, request
from tests.conftest import ClusterFactory


def _seeded(auth_url: str) -> float:
    for line in request(auth_url, "GET", "/metrics").body.decode().splitlines():
        if line.startswith("authbench_auth_seeded_users "):
            return float(line.split()[1])
    return 0.0


def test_logins_during_seeding_do_not_queue_behind_it(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(replicas=1, env={"AUTH_SEED_USERS": "1000"})
    # Seeding 1000 hashes takes ~25 s of one core; the service is ready long before.
    assert _seeded(cluster.auth_url) < 1000
    for user in (999, 0, 500):  # not yet seeded, probably seeded, in the middle
        started = time.monotonic()
        answer = login(cluster.gateway_url, user, "jwt")
        elapsed = time.monotonic() - started
        assert answer.status == 200, answer.body
        # A hang check, not a speed target: queued behind seeding this took 10+ s.
        assert elapsed < 3.0, f"login of user{user} waited {elapsed:.1f}s"
    first = _seeded(cluster.auth_url)
    time.sleep(1.0)
    assert _seeded(cluster.auth_url) > first  # the background seeding goes on
