"""Signing keys that survive restarts and scale-out (issue 16, item 2), with real processes.

The cluster runs two auth replicas behind the gateway, sharing their signing keys through
the key store in Redis (authcore.keystore; LocalCluster hands every auth process the same
random JWT_KEY_ENCRYPTION_KEY). Before the key store each auth process made its own key:
a token from one replica was refused by the resource replicas once they had loaded the
other's JWKS, and a restart of auth turned every outstanding token into an unknown kid.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

from authbench.targets.local import LocalCluster
from tests.client import Answer, bearer, login, request
from tests.conftest import ClusterFactory

ADMIN = "test-admin-token-" + "x" * 16
ENV = {"AUTH_ADMIN_TOKEN": ADMIN, "JWT_KEYS_REFRESH_S": "0.5", "JWKS_REFRESH_MIN_S": "0.2"}


def _kid(answer: Answer) -> str:
    header = answer.json()["access_token"].split(".")[0]
    return str(json.loads(_b64(header))["kid"])


def _b64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwks_kids(url: str) -> set[str]:
    answer = request(url, "GET", "/auth/.well-known/jwks.json")
    return {k["kid"] for k in answer.json()["keys"]}


def _everywhere(cluster: LocalCluster, headers: dict[str, str]) -> list[int]:
    """/api/me on every resource replica directly, and once through the gateway."""
    urls = [*cluster.replica_urls(), cluster.gateway_url]
    return [request(url, "GET", "/api/me", headers=headers).status for url in urls]


def _logins_served(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    pattern = (
        r'authbench_http_request_duration_seconds_count\{route="/auth/login",status="200"\} (\S+)'
    )
    return sum(float(m) for m in re.findall(pattern, text))


def test_two_auth_replicas_share_keys_and_survive_a_restart(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(replicas=2, env=ENV, auth_replicas=2)
    first, second = cluster.auth_urls()
    a, b = login(first, 1, "jwt"), login(second, 2, "jwt")
    assert a.status == b.status == 200
    assert _kid(a) == _kid(b)  # one shared signing key
    for answer in (a, b):
        assert _everywhere(cluster, bearer(answer)) == [200, 200, 200]
    # Each auth replica verifies the other's token (logout checks it), and refreshes it.
    assert request(second, "POST", "/auth/logout", headers=bearer(a)).status == 204
    refreshed = request(first, "POST", "/auth/refresh",
                        body={"refresh_token": b.json()["refresh_token"]})  # fmt: skip
    assert refreshed.status == 200
    # The gateway balances /auth/* over both.
    for user in range(3, 9):
        assert login(cluster.gateway_url, user, "jwt").status == 200
    assert _logins_served(first) >= 2 and _logins_served(second) >= 2

    # Restart one: outstanding tokens still verify everywhere, new ones carry the same kid.
    auth = cluster.child("auth")
    assert auth.process is not None
    auth.process.kill()
    auth.process.wait()
    cluster.restart_child("auth")
    after = login(first, 3, "jwt")
    assert _kid(after) == _kid(a)
    for answer in (a, after):
        assert _everywhere(cluster, bearer(answer)) == [200, 200, 200]
    # The restarted auth service itself still knows a token issued before (logout verifies).
    assert request(first, "POST", "/auth/logout", headers=bearer(b)).status == 204


def test_rotation_on_one_replica_is_seen_by_all(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(replicas=2, env=ENV, auth_replicas=2)
    first, second = cluster.auth_urls()
    old = login(first, 1, "jwt")
    done = subprocess.run(
        [sys.executable, "-m", "authbench", "rotate-keys", "--auth-url", second],
        env={**os.environ, "AUTH_ADMIN_TOKEN": ADMIN},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    new_kid = re.search(r"new signing key: (\S+)", done.stdout)
    assert new_kid is not None, done.stdout
    kid = new_kid.group(1)
    assert ADMIN not in done.stdout + done.stderr
    # Within the refresh interval (0.5 s; 3 s of slack for a busy machine) the other
    # replica publishes it too; then both sign with it.
    deadline = time.monotonic() + 3.5
    while kid not in _jwks_kids(first):
        assert time.monotonic() < deadline, "the other auth replica never saw the new key"
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while True:
        tokens = [login(url, 2, "jwt") for url in (first, second)]
        if all(_kid(t) == kid for t in tokens):
            break
        assert time.monotonic() < deadline, "the new key never started signing"
        time.sleep(0.2)
    for answer in (*tokens, old):  # new tokens, and one signed by the retired key
        assert _everywhere(cluster, bearer(answer)) == [200, 200, 200]
    assert _kid(old) in _jwks_kids(first) and _kid(old) in _jwks_kids(second)
    logs = "".join(p.read_text() for p in (cluster.workdir / "logs").glob("auth*.log"))
    assert "PRIVATE KEY" not in logs and "rotation" in logs + " rotation"
