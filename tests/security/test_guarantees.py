"""Each security guarantee of the README's security section, pinned end to end.

Real clusters (real redis-server, services and gateway as processes); each cluster's logs
are scanned for secrets and tracebacks when it stops (conftest).
"""

from __future__ import annotations

import base64
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import jwt
import pytest
import redis

from authbench.process import PROJECT_ROOT
from authcore.config import Settings
from authcore.errors import ConfigError
from tests.client import Answer, request
from tests.security.conftest import (
    ADMIN_TOKEN,
    WatchedCluster,
    WatchedFactory,
    start_watched,
    stop_and_scan,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedCluster]:
    watched = start_watched(
        tmp_path_factory.mktemp("guarantees"),
        2,
        {
            "JWT_REVOCATION": "denylist",
            "LOGIN_MAX_FAILURES": "10000",
            "LOGIN_MAX_FAILURES_PER_IP": "10000",
        },
    )
    yield watched
    stop_and_scan(watched)


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedCluster]:
    watched = start_watched(
        tmp_path_factory.mktemp("secure"), 1, {"COOKIE_SECURE": "1", "COOKIE_SAMESITE": "Strict"}
    )
    yield watched
    stop_and_scan(watched)


def login(watched: WatchedCluster, user: int, mode: str, **headers: str) -> Answer:
    answer = request(
        watched.url, "POST", "/auth/login",
        body={"username": f"user{user}", "password": f"password{user}", "mode": mode},
        headers=headers,
    )  # fmt: skip
    assert answer.status == 200, answer.body
    watched.remember(f"password{user}", *_cookie_values(answer))
    if mode == "jwt":
        watched.remember(answer.json()["access_token"], answer.json()["refresh_token"])
    if mode == "jwt-cookie":
        watched.remember(answer.json()["csrf_token"])
    return answer


def _cookie_values(answer: Answer) -> list[str]:
    return [c.split(";", 1)[0].partition("=")[2] for c in answer.set_cookies]


def cookie(answer: Answer, name: str) -> str:
    """The `Set-Cookie` header of `name` in `answer`."""
    for header in answer.set_cookies:
        if header.split("=", 1)[0].strip() == name:
            return header
    raise AssertionError(f"no {name} in {answer.set_cookies}")


def attributes(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")[1:]]
    return {p.split("=", 1)[0].lower(): p.partition("=")[2] for p in parts if p}


def pair(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0]


# --- cookies ---------------------------------------------------------------------------
def test_session_cookie_is_httponly_lax_path_root_and_has_no_domain(
    cluster: WatchedCluster,
) -> None:
    header = cookie(login(cluster, 1, "session"), "sid")
    attrs = attributes(header)
    assert "httponly" in attrs and attrs["samesite"] == "Lax" and attrs["path"] == "/"
    assert "domain" not in attrs and "secure" not in attrs
    assert "max-age" not in attrs and "expires" not in attrs  # a browser-session cookie


def test_secure_cookies_are_host_prefixed_secure_strict_and_domainless(
    secure_cluster: WatchedCluster,
) -> None:
    session = login(secure_cluster, 1, "session")
    header = cookie(session, "__Host-sid")
    attrs = attributes(header)
    assert {"httponly", "secure"} <= set(attrs) and attrs["samesite"] == "Strict"
    assert attrs["path"] == "/" and "domain" not in attrs
    assert (
        request(secure_cluster.url, "GET", "/api/me", headers={"Cookie": pair(header)}).status
        == 200
    )
    # Without the prefix a cookie could be planted by a sibling domain: it is not looked at.
    unprefixed = "sid=" + pair(header).partition("=")[2]
    refused = request(secure_cluster.url, "GET", "/api/me", headers={"Cookie": unprefixed})
    assert refused.status == 401 and refused.json()["error"] == "missing_credential"

    tokens = login(secure_cluster, 2, "jwt-cookie")
    access, refresh = cookie(tokens, "__Host-at"), cookie(tokens, "__Secure-rt")
    for header, path in ((access, "/"), (refresh, "/auth/refresh")):
        attrs = attributes(header)
        assert {"httponly", "secure"} <= set(attrs) and attrs["samesite"] == "Strict"
        assert attrs["path"] == path and "domain" not in attrs


def test_jwt_cookie_mode_keeps_tokens_from_scripts_and_demands_csrf_proof(
    cluster: WatchedCluster,
) -> None:
    answer = login(cluster, 3, "jwt-cookie")
    body = answer.json()
    assert set(body) == {"mode", "user", "expires_in", "csrf_token"}  # no token in JSON
    access, refresh = cookie(answer, "at"), cookie(answer, "rt")
    assert "httponly" in attributes(access) and attributes(access)["max-age"] == "300"
    assert attributes(refresh)["path"] == "/auth/refresh"
    csrf = body["csrf_token"]
    for replica in cluster.cluster.replica_urls():
        me = request(replica, "GET", "/api/me", headers={"Cookie": pair(access)})
        assert me.status == 200 and me.json()["auth"] == "jwt-cookie"

    # Refresh through the cookie: needs the login's CSRF token, then rotates both cookies.
    refused = request(cluster.url, "POST", "/auth/refresh", headers={"Cookie": pair(refresh)})
    assert refused.status == 403 and refused.json()["error"] == "csrf_rejected"
    rotated = request(
        cluster.url, "POST", "/auth/refresh",
        headers={"Cookie": pair(refresh), "X-CSRF-Token": csrf},
    )  # fmt: skip
    assert rotated.status == 200 and "access_token" not in rotated.json()
    cluster.remember(*_cookie_values(rotated))
    new_access = cookie(rotated, "at")
    assert (
        request(cluster.url, "GET", "/api/me", headers={"Cookie": pair(new_access)}).status == 200
    )

    # Logout is a state change: refused without the token or from another site.
    for headers in (
        {},
        {"X-CSRF-Token": "A" * 43},
        {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
    ):
        forged = request(
            cluster.url, "POST", "/auth/logout", headers={"Cookie": pair(new_access), **headers}
        )
        assert forged.status == 403 and forged.json()["error"] == "csrf_rejected"
    out = request(
        cluster.url, "POST", "/auth/logout",
        headers={"Cookie": pair(new_access), "X-CSRF-Token": csrf, "Sec-Fetch-Site": "same-origin"},
    )  # fmt: skip
    assert out.status == 204
    assert (
        all(attributes(c)["max-age"] == "0" for c in out.set_cookies) and len(out.set_cookies) == 2
    )
    after = request(cluster.url, "GET", "/api/me", headers={"Cookie": pair(new_access)})
    assert after.status == 401 and after.json()["error"] == "revoked_credential"


def test_a_bearer_token_planted_in_the_cookie_cannot_change_state(cluster: WatchedCluster) -> None:
    """A token without the CSRF claim (mode jwt) in the cookie: readable, not writable."""
    token = login(cluster, 4, "jwt").json()["access_token"]
    planted = {"Cookie": f"at={token}"}
    assert request(cluster.url, "GET", "/api/me", headers=planted).status == 200
    refused = request(
        cluster.url, "POST", "/auth/logout", headers={**planted, "X-CSRF-Token": "A" * 43}
    )
    assert refused.status == 403


# --- sessions --------------------------------------------------------------------------
def test_every_login_gets_a_fresh_256_bit_session_id_and_ends_the_one_presented(
    cluster: WatchedCluster,
) -> None:
    ids = [pair(cookie(login(cluster, 5, "session"), "sid")).partition("=")[2] for _ in range(4)]
    assert len(set(ids)) == 4
    assert all(len(base64.urlsafe_b64decode(i + "=")) == 32 for i in ids)
    old = ids[-1]
    # Fixation: the client brings a session ID to login; it is ended, never adopted.
    fresh = login(cluster, 5, "session", Cookie=f"sid={old}")
    new = pair(cookie(fresh, "sid")).partition("=")[2]
    assert new != old
    gone = request(cluster.url, "GET", "/api/me", headers={"Cookie": f"sid={old}"})
    assert gone.status == 401
    assert request(cluster.url, "GET", "/api/me", headers={"Cookie": f"sid={new}"}).status == 200


def test_log_out_everywhere_ends_sessions_refresh_and_access_tokens_of_that_user_only(
    cluster: WatchedCluster,
) -> None:
    sessions = [pair(cookie(login(cluster, 6, "session"), "sid")) for _ in range(2)]
    jwts = [login(cluster, 6, "jwt").json() for _ in range(2)]
    other = pair(cookie(login(cluster, 7, "session"), "sid"))
    everywhere = request(
        cluster.url, "POST", "/auth/logout?scope=all",
        headers={"Authorization": f"Bearer {jwts[0]['access_token']}"},
    )  # fmt: skip
    assert everywhere.status == 204
    for replica in cluster.cluster.replica_urls():
        for session in sessions:
            assert request(replica, "GET", "/api/me", headers={"Cookie": session}).status == 401
        for tokens in jwts:
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            answer = request(replica, "GET", "/api/me", headers=auth)
            assert answer.status == 401 and answer.json()["error"] == "revoked_credential"
        assert request(replica, "GET", "/api/me", headers={"Cookie": other}).status == 200
    for tokens in jwts:
        spent = request(
            cluster.url, "POST", "/auth/refresh", body={"refresh_token": tokens["refresh_token"]}
        )
        assert spent.status == 401
    # A login right after (same second) is not caught by the revoked-before instant.
    again = login(cluster, 6, "jwt").json()["access_token"]
    auth = {"Authorization": f"Bearer {again}"}
    assert request(cluster.url, "GET", "/api/me", headers=auth).status == 200


def test_denylist_check_is_one_redis_round_trip_per_request(cluster: WatchedCluster) -> None:
    """Revocation by jti, by user and by family costs one MGET, nothing more."""
    token = login(cluster, 8, "jwt").json()["access_token"]
    session = pair(cookie(login(cluster, 8, "session"), "sid"))
    replica = cluster.cluster.replica_urls()[0]
    client = redis.Redis(port=cluster.cluster.ports.redis)
    try:
        for headers, command in (
            ({"Authorization": f"Bearer {token}"}, "mget"),
            ({"Cookie": session}, "getex"),
        ):
            before = _command_calls(client)
            for _ in range(10):
                assert request(replica, "GET", "/api/me", headers=headers).status == 200
            after = _command_calls(client)
            delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            # This test's INFO; readiness probes; the auth service's key-store poll (one
            # HGET per JWT_KEYS_REFRESH_S, authcore/keystore.py), not on the request path.
            for background in ("info", "ping", "hget"):
                delta.pop(background, None)
            assert {k: v for k, v in delta.items() if v} == {command: 10}
    finally:
        client.close()


def _command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


# --- keys ------------------------------------------------------------------------------
def _rotate(watched: WatchedCluster, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(AUTH_ADMIN_TOKEN=token, PYTHONPATH=str(PROJECT_ROOT))
    return subprocess.run(
        [sys.executable, "-m", "authbench", "rotate-keys", "--auth-url", watched.cluster.auth_url],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_key_rotation_reaches_every_replica_and_old_tokens_keep_working(
    cluster: WatchedCluster,
) -> None:
    replicas = cluster.cluster.replica_urls()
    old = login(cluster, 9, "jwt").json()["access_token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    assert _rotate(cluster, "wrong-secret").returncode == 1
    done = _rotate(cluster)
    assert done.returncode == 0, done.stderr
    assert ADMIN_TOKEN not in done.stdout + done.stderr
    # The key store publishes the new key first; it signs 2 x JWT_KEYS_REFRESH_S later.
    deadline = time.monotonic() + 5
    while True:
        new = login(cluster, 9, "jwt").json()["access_token"]
        new_kid = jwt.get_unverified_header(new)["kid"]
        if new_kid != old_kid or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert new_kid != old_kid and new_kid in done.stdout
    kids = {
        k["kid"] for k in request(cluster.url, "GET", "/auth/.well-known/jwks.json").json()["keys"]
    }
    assert {old_kid, new_kid} <= kids
    for replica in replicas:
        # Each replica re-fetches the JWKS on the unknown kid, at most once per
        # JWKS_REFRESH_MIN_S (1 s), so a replica that fetched just now may need a moment.
        deadline = time.monotonic() + 3
        while True:
            answer = request(replica, "GET", "/api/me", headers={"Authorization": f"Bearer {new}"})
            if answer.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status == 200, (replica, answer.body)
        answer = request(replica, "GET", "/api/me", headers={"Authorization": f"Bearer {old}"})
        assert answer.status == 200, (replica, answer.body)
    # Rotating again and again retires keys, but never one whose tokens are still alive.
    for _ in range(2):
        assert _rotate(cluster).returncode == 0
    kids = {
        k["kid"] for k in request(cluster.url, "GET", "/auth/.well-known/jwks.json").json()["keys"]
    }
    assert {old_kid, new_kid} <= kids and len(kids) == 4
    for replica in replicas:
        answer = request(replica, "GET", "/api/me", headers={"Authorization": f"Bearer {old}"})
        assert answer.status == 200


def test_rotate_keys_command_needs_the_admin_secret_in_the_environment() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AUTH_ADMIN_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "authbench", "rotate-keys", "--auth-url", "http://127.0.0.1:9"],
        env=env, capture_output=True, text=True, timeout=30, check=False, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert done.returncode == 2 and "AUTH_ADMIN_TOKEN" in done.stderr


# --- passwords and login ---------------------------------------------------------------
def test_password_hashes_are_argon2id_at_or_above_owasp_minimum() -> None:
    from auth_service.users import UserDirectory

    directory = UserDirectory(Settings.from_env({"AUTH_SEED_USERS": "1"}))
    try:
        stored = directory._ensure_hash("user0")
        assert stored is not None and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    finally:
        directory.close()
    with pytest.raises(ConfigError, match="OWASP"):
        Settings.from_env({"ARGON2_MEMORY_KIB": "8192"})


def test_unknown_users_take_as_long_and_get_the_same_answer(cluster: WatchedCluster) -> None:
    def timed(username: str) -> tuple[float, Answer]:
        started = time.perf_counter()
        answer = request(
            cluster.url, "POST", "/auth/login",
            body={"username": username, "password": "not-the-password", "mode": "jwt"},
        )  # fmt: skip
        return time.perf_counter() - started, answer

    timed("user10")  # warm the user's hash and the connection paths
    known: list[float] = []
    unknown: list[float] = []
    for i in range(9):  # interleaved, so load from other work hits both alike
        t_known, a_known = timed("user10")
        t_unknown, a_unknown = timed(f"nobody{i}")
        known.append(t_known)
        unknown.append(t_unknown)
        assert (a_known.status, a_known.body) == (a_unknown.status, a_unknown.body)
        assert a_known.headers["www-authenticate"] == a_unknown.headers["www-authenticate"]
    ratio = statistics.median(unknown) / statistics.median(known)
    # One argon2id verification either way; without the dummy hash an unknown user would
    # answer in well under a tenth of the time. Generous bounds for a shared 2-core box.
    assert 0.5 < ratio < 2.0, (statistics.median(known), statistics.median(unknown))


def test_login_throttling_fails_closed_when_redis_is_down(
    watched_cluster: WatchedFactory,
) -> None:
    watched = watched_cluster(1, {"JWT_REVOCATION": "denylist", "LOGIN_MAX_FAILURES": "2"})
    token = login(watched, 1, "jwt").json()["access_token"]
    session = pair(cookie(login(watched, 1, "session"), "sid"))
    watched.cluster.kill_redis()
    good = {"username": "user2", "password": "password2", "mode": "jwt"}
    bad = {**good, "password": "guess"}
    for body in (good, bad, bad, bad):
        answer = request(watched.url, "POST", "/auth/login", body=body)
        # Never 200 (no throttle state to consult) and never 401 (a free password oracle).
        assert answer.status == 503, answer.body
        assert answer.json()["error"] == "redis_unavailable" and "retry-after" in answer.headers
    for headers in ({"Cookie": session}, {"Authorization": f"Bearer {token}"}):
        answer = request(watched.url, "GET", "/api/me", headers=headers)
        assert answer.status == 503 and set(answer.json()) == {"error", "detail"}
    watched.cluster.start_redis()
    deadline = time.monotonic() + 10
    while True:
        answer = request(watched.url, "POST", "/auth/login", body=good)
        if answer.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert answer.status == 200
    watched.remember(answer.json()["access_token"], answer.json()["refresh_token"])
