"""Mode opaque end to end (issue 15): login, reads resolved by introspection, logout,
the replica-side cache, and the auth service as the component every read depends on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports
from authcore.introspection import client_authorization
from tests.client import Answer, bearer, login, request, session_cookie
from tests.conftest import ClusterFactory

SECRET = "introspection-secret-for-tests-0123456789"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CLIENT = {**FORM, "Authorization": client_authorization("resource", SECRET)}


@pytest.fixture(scope="module")
def opaque_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        replicas=2,
        ports=Ports.block(free_port_block()),
        settings_env={"AUTH_SEED_USERS": "20", "INTROSPECT_SECRET": SECRET},
        workdir=tmp_path_factory.mktemp("opaque-cluster"),
    )
    cluster.start()
    yield cluster
    cluster.stop()


def introspect(cluster: LocalCluster, token: str, headers: dict[str, str] = CLIENT) -> Answer:
    """Ask the auth service directly, as a replica does."""
    return request(
        cluster.auth_url, "POST", "/auth/introspect", body=f"token={token}", headers=headers
    )


def token_of(answer: Answer) -> str:
    return str(answer.json()["access_token"])


def test_opaque_login_returns_a_random_bearer_token(opaque_cluster: LocalCluster) -> None:
    first, second = (login(opaque_cluster.gateway_url, 1, "opaque") for _ in range(2))
    body = first.json()
    assert first.status == 200
    assert set(body) == {"mode", "user", "access_token", "token_type", "expires_in"}
    assert (body["mode"], body["user"], body["token_type"]) == ("opaque", "user1", "Bearer")
    assert body["expires_in"] == 300
    assert len(body["access_token"]) == 43 and "." not in body["access_token"]  # no JWT
    assert token_of(first) != token_of(second)
    assert first.set_cookies == []


def test_every_replica_resolves_the_token_by_introspection(opaque_cluster: LocalCluster) -> None:
    headers = bearer(login(opaque_cluster.gateway_url, 2, "opaque"))
    for url in [opaque_cluster.gateway_url, *opaque_cluster.replica_urls()]:
        me = request(url, "GET", "/api/me", headers=headers)
        assert me.status == 200, me.body
        assert (me.json()["user"], me.json()["auth"]) == ("user2", "opaque")
    item = request(opaque_cluster.gateway_url, "GET", "/api/items/9", headers=headers)
    assert item.status == 200 and item.json()["owner"] == "user2"


def test_introspection_answers_rfc7662_fields(opaque_cluster: LocalCluster) -> None:
    token = token_of(login(opaque_cluster.gateway_url, 3, "opaque"))
    answer = introspect(opaque_cluster, token)
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["active"] is True and body["sub"] == "user3" and body["scope"] == "api"
    assert body["token_type"] == "Bearer"
    assert 0 < body["exp"] - time.time() <= 300 and body["iat"] <= time.time()
    # A JWT, a session ID, garbage: inactive, and nothing else is said about it.
    jwt = token_of(login(opaque_cluster.gateway_url, 3, "jwt"))
    sid = session_cookie(login(opaque_cluster.gateway_url, 3, "session")).split("=", 1)[1]
    for other in (jwt, sid, "x" * 43):
        assert introspect(opaque_cluster, other).json() == {"active": False}


def test_logout_revokes_the_token_everywhere_at_once(opaque_cluster: LocalCluster) -> None:
    headers = bearer(login(opaque_cluster.gateway_url, 4, "opaque"))
    token = headers["Authorization"].split()[1]
    assert request(opaque_cluster.gateway_url, "GET", "/api/me", headers=headers).status == 200
    out = request(opaque_cluster.gateway_url, "POST", "/auth/logout", headers=headers)
    assert out.status == 204
    for url in opaque_cluster.replica_urls():
        refused = request(url, "GET", "/api/me", headers=headers)
        assert refused.status == 401 and refused.json()["error"] == "invalid_credential"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert introspect(opaque_cluster, token).json() == {"active": False}
    again = request(opaque_cluster.gateway_url, "POST", "/auth/logout", headers=headers)
    assert again.status == 401


def test_logout_everywhere_ends_every_opaque_token_of_the_user(
    opaque_cluster: LocalCluster,
) -> None:
    tokens = [bearer(login(opaque_cluster.gateway_url, 5, "opaque")) for _ in range(3)]
    other = bearer(login(opaque_cluster.gateway_url, 6, "opaque"))
    out = request(opaque_cluster.gateway_url, "POST", "/auth/logout?scope=all", headers=tokens[0])
    assert out.status == 204
    for headers in tokens:
        assert request(opaque_cluster.gateway_url, "GET", "/api/me", headers=headers).status == 401
    assert request(opaque_cluster.gateway_url, "GET", "/api/me", headers=other).status == 200


def test_the_gateway_never_exposes_introspection(opaque_cluster: LocalCluster) -> None:
    token = token_of(login(opaque_cluster.gateway_url, 7, "opaque"))
    assert introspect(opaque_cluster, token).json()["active"] is True  # direct: works
    for path in ("/auth/introspect", "/auth/%69ntrospect", "/auth/introspect?x=1"):
        answer = request(
            opaque_cluster.gateway_url, "POST", path, body=f"token={token}", headers=CLIENT
        )
        assert answer.status == 404, path
        assert answer.json()["error"] == "not_found"


def test_a_dead_auth_service_stops_opaque_reads_only(opaque_cluster: LocalCluster) -> None:
    """Runs last in this module: it kills the auth service and starts it again."""
    gateway = opaque_cluster.gateway_url
    opaque = bearer(login(gateway, 8, "opaque"))
    session = {"Cookie": session_cookie(login(gateway, 9, "session"))}
    jwt = bearer(login(gateway, 10, "jwt"))
    opaque_cluster.kill_auth()
    try:
        for url in opaque_cluster.replica_urls():
            started = time.monotonic()
            refused = request(url, "GET", "/api/me", headers=opaque)
            assert time.monotonic() - started < 3.0  # INTROSPECT_TIMEOUT_MS bounds it
            assert refused.status == 503, refused.body
            assert refused.json()["error"] == "auth_unavailable"
            assert refused.headers["retry-after"] == "1"
            for headers in (session, jwt):  # validated at the replica: no auth service needed
                assert request(url, "GET", "/api/me", headers=headers).status == 200
    finally:
        opaque_cluster.start_auth()
    # The token lives in Redis, not in the auth process: it works again.
    assert request(gateway, "GET", "/api/me", headers=opaque).status == 200


def test_the_replica_cache_trades_revocation_for_availability(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cache_s = 3.0
    cluster = make_cluster(
        replicas=1, env={"INTROSPECT_SECRET": SECRET, "INTROSPECT_CACHE_S": str(cache_s)}
    )
    (replica,) = cluster.replica_urls()
    headers = bearer(login(cluster.gateway_url, 1, "opaque"))
    assert request(replica, "GET", "/api/me", headers=headers).status == 200  # now cached
    cluster.pause_auth()
    try:  # a paused auth service: the cached answer still serves
        assert request(replica, "GET", "/api/me", headers=headers).status == 200
    finally:
        cluster.resume_auth()
        cluster.start_auth()
    headers = bearer(login(cluster.gateway_url, 3, "opaque"))
    assert request(replica, "GET", "/api/me", headers=headers).status == 200  # cached now
    cached_at = time.monotonic()
    assert request(cluster.gateway_url, "POST", "/auth/logout", headers=headers).status == 204
    # Within the cache's lifetime the replica still accepts the logged-out token...
    still = request(replica, "GET", "/api/me", headers=headers).status
    if time.monotonic() - cached_at < cache_s:  # (a starved machine may take longer)
        assert still == 200
    # ...and never after it.
    time.sleep(max(0.0, cache_s + 0.3 - (time.monotonic() - cached_at)))
    assert request(replica, "GET", "/api/me", headers=headers).status == 401
