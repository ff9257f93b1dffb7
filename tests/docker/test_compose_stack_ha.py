"""The compose stack as production runs it (issue 16): the profile `sentinel` (a primary,
a replica, three Sentinels) and two auth replicas sharing their signing keys, for real.

One stack for the module, in the docker tests' own project (tests/docker/conftest.py: its
lock, images and port). The modules before this one leave that project as they please (the
last test of test_compose_stack takes it down), so the fixture brings up everything it
needs itself, and takes it down after, as test_compose_store_proxy expects to find it.
Traffic goes only to 127.0.0.1 and into the containers started here (`docker exec`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from authbench.targets.base import SENTINEL
from authbench.targets.compose import (
    AUTH_SERVICE,
    DATA_SERVICES,
    RESOURCE_SERVICE,
    ComposeTarget,
)
from authcore.keystore import new_kek
from tests.client import Answer, bearer, login, request, session_cookie

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(300)]

ADMIN = "compose-test-admin-token-" + "x" * 16

# One HTTP request from inside a container to a service on its own loopback (auth and the
# resource replicas are not published): argv = method, port, path, JSON headers, JSON body.
_IN_CONTAINER = (
    "import json, sys, urllib.request, urllib.error; "
    "m, port, path, headers, body = sys.argv[1:6]; "
    "req = urllib.request.Request('http://127.0.0.1:' + port + path, method=m, "
    "headers={'Content-Type': 'application/json', **json.loads(headers)}, "
    "data=body.encode() if body else None)\n"
    "try:\n r = urllib.request.urlopen(req, timeout=10); s, b = r.status, r.read()\n"
    "except urllib.error.HTTPError as e:\n s, b = e.code, e.read()\n"
    "print(s); print(b.decode())"
)


@pytest.fixture(scope="module")
def ha_stack(compose_stack: ComposeTarget) -> Iterator[ComposeTarget]:
    target = ComposeTarget(
        project_name=compose_stack.project_name,
        env={
            **compose_stack.env,
            "AUTH_REPLICAS": "2",
            "JWT_KEY_ENCRYPTION_KEY": new_kek(),
            "JWT_KEYS_REFRESH_S": "0.5",
            "AUTH_ADMIN_TOKEN": ADMIN,
            "JWT_REVOCATION": "denylist",
            "AUTH_SEED_USERS": "10",  # users 1-9: each auth replica hashes them at start
        },
        store=SENTINEL,
    )
    try:
        started = time.monotonic()
        target.up(replicas=2, build=False, timeout_s=240)
        print(f"sentinel stack with 2 auth replicas up in {time.monotonic() - started:.1f} s")
        yield target
    finally:
        target.down()


def _in(container: str, method: str, port: int, path: str, **kw: object) -> tuple[int, str]:
    headers = json.dumps(kw.get("headers") or {})
    body = json.dumps(kw["body"]) if "body" in kw else ""
    done = subprocess.run(
        ["docker", "exec", container, "python", "-S", "-c", _IN_CONTAINER,
         method, str(port), path, headers, body],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    status, _, text = done.stdout.partition("\n")
    return int(status), text


def _ids(target: ComposeTarget, service: str) -> list[str]:
    return [c.id for c in target.containers(service)]


def _kid(token: str) -> str:
    header = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def _login_at(auth: str, user: int) -> dict[str, str]:
    """A JWT login asked of one auth container itself."""
    body = {"username": f"user{user}", "password": f"password{user}", "mode": "jwt"}
    status, text = _in(auth, "POST", 8081, "/auth/login", body=body)
    assert status == 200, text
    return dict(json.loads(text))


def _jwks_kids(auth: str) -> set[str]:
    _status, text = _in(auth, "GET", 8081, "/auth/.well-known/jwks.json")
    return {key["kid"] for key in json.loads(text)["keys"]}


def _everywhere(target: ComposeTarget, token: str) -> list[int]:
    """/api/me asked of every resource replica directly (inside its container)."""
    headers = {"Authorization": f"Bearer {token}"}
    return [_in(r, "GET", 8101, "/api/me", headers=headers)[0] for r in _ids(target, "resource")]


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_two_auth_replicas_issue_tokens_every_replica_accepts_and_share_a_rotation(
    ha_stack: ComposeTarget,
) -> None:
    auths = _ids(ha_stack, AUTH_SERVICE)
    assert len(auths) == 2 and len(_ids(ha_stack, RESOURCE_SERVICE)) == 2
    first, second = (_login_at(auth, user) for auth, user in zip(auths, (1, 2), strict=True))
    assert _kid(first["access_token"]) == _kid(second["access_token"])  # one shared key
    for answer in (first, second):
        assert _everywhere(ha_stack, answer["access_token"]) == [200, 200]
    # Each auth replica refreshes the other's refresh token (one store of families).
    status, _ = _in(auths[0], "POST", 8081, "/auth/refresh",
                    body={"refresh_token": second["refresh_token"]})  # fmt: skip
    assert status == 200

    # `authbench rotate-keys` through the gateway reaches one auth replica; the other
    # publishes the new key within the refresh interval (0.5 s; slack for a busy host).
    done = subprocess.run(
        [sys.executable, "-m", "authbench", "rotate-keys", "--auth-url", ha_stack.gateway_url],
        env={**os.environ, "AUTH_ADMIN_TOKEN": ADMIN},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = re.search(r"new signing key: (\S+)", done.stdout)
    assert found is not None, done.stdout
    kid = found.group(1)
    assert ADMIN not in done.stdout + done.stderr
    _until(lambda: all(kid in _jwks_kids(a) for a in auths), 5, "a replica never saw the key")
    # Then both sign with it, and every resource replica accepts those tokens and the
    # retired key's.
    new: list[dict[str, str]] = []

    def both_sign_with_it() -> bool:
        new[:] = [_login_at(auth, 3) for auth in auths]
        return all(_kid(t["access_token"]) == kid for t in new)

    _until(both_sign_with_it, 8, "the new key never started signing on both replicas")
    for answer in (*new, first):
        assert _everywhere(ha_stack, answer["access_token"]) == [200, 200]


def _replica_has_caught_up(target: ComposeTarget, primary: str) -> bool:
    offsets = {}
    for service in DATA_SERVICES:
        info = target.compose("exec", "-T", service, "redis-cli", "INFO", "replication").stdout
        key = "master_repl_offset" if service == primary else "slave_repl_offset"
        found = re.search(rf"{key}:(\d+)", info)
        assert found is not None, info
        offsets[service] = int(found.group(1))
    replica = next(s for s in DATA_SERVICES if s != primary)
    return offsets[replica] >= offsets[primary]


def _status(url: str, path: str, headers: dict[str, str]) -> int:
    try:
        return request(url, "GET", path, headers=headers, timeout=3).status
    except OSError:
        return 0


def test_services_keep_working_after_the_primary_is_killed_and_sentinel_promotes(
    ha_stack: ComposeTarget,
) -> None:
    url = ha_stack.gateway_url
    ha_stack.start()  # attach: the store as the running services have it
    assert ha_stack.store == SENTINEL
    session = login(url, 4, "session")
    assert session.status == 200, session.body
    cookie = {"Cookie": session_cookie(session)}
    jwt: Answer = login(url, 5, "jwt")
    assert jwt.status == 200, jwt.body
    primary = ha_stack.redis_primary()
    assert primary == "redis"
    # This test is about following the failover: let the replica have the writes first.
    _until(lambda: _replica_has_caught_up(ha_stack, primary), 10, "the replica lags")

    old, killed_at = ha_stack.kill_redis_primary()
    assert old == "redis"
    assert [c.state for c in ha_stack.containers("redis", all=True)] == ["exited"]
    named_at, new = ha_stack.wait_redis_failover(old, 30)
    assert new == "redis-replica" and named_at > killed_at
    # The services find the new primary through the Sentinels: the session read, a new
    # login on either auth replica (writes), a logout (the denylist), a refresh.
    _until(lambda: _status(url, "/api/me", cookie) == 200, 15, "sessions did not come back")
    # Logins go round-robin over both auth replicas: each must have followed too. One may
    # still hold pooled connections to the dead primary, each costing one 503 (CI saw
    # [503, 200, 503] right after the first success): three logins in a row must pass.
    _until(
        lambda: [login(url, user, "jwt").status for user in (6, 7, 8)] == [200, 200, 200],
        20,
        "an auth replica did not follow the failover",
    )
    assert request(url, "GET", "/api/me", headers=bearer(jwt)).status == 200
    assert request(url, "POST", "/auth/logout", headers=bearer(jwt)).status == 204
    assert request(url, "GET", "/api/me", headers=bearer(jwt)).status == 401

    ha_stack.rejoin_redis()  # the old primary is back, as a replica of the new one
    role = ha_stack.compose("exec", "-T", "redis", "redis-cli", "ROLE").stdout.split()
    assert role[0] == "slave"
    assert ha_stack.redis_primary() == "redis-replica"
    assert _status(url, "/api/me", cookie) == 200
