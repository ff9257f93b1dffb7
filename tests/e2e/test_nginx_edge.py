"""Edge validation through nginx (`--gateway nginx --validate-at gateway`, issue 15).

A real cluster with Debian's nginx as the gateway and VALIDATE_AT=gateway: nginx's
`auth_request` asks the auth service's /auth/edge-check, which checks the credential and
signs the identity assertion that nginx forwards; the replicas accept nothing else.
Before, such a cluster refused to start (nginx could not sign assertions).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports
from authbench.targets.nginx import nginx_binary
from authcore.assertion import ASSERTION_HEADER, AssertionSigner
from tests.client import bearer, login, request, session_cookie


def _nginx_installed() -> bool:
    try:
        nginx_binary()
    except FileNotFoundError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(not _nginx_installed(), reason="nginx is not installed"),
    pytest.mark.slow,  # a whole cluster (tests/conftest.py)
]


@pytest.fixture(scope="module")
def edge_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        replicas=2,
        ports=Ports.block(free_port_block()),
        settings_env={"AUTH_SEED_USERS": "20", "VALIDATE_AT": "gateway"},
        workdir=tmp_path_factory.mktemp("nginx-edge"),
        gateway_impl="nginx",
    )
    cluster.start()
    yield cluster
    cluster.stop()


def test_the_auth_service_signs_and_only_the_replicas_verify(edge_cluster: LocalCluster) -> None:
    auth, replica = edge_cluster.child("auth"), edge_cluster.child("resource-1")
    assert auth.env["EDGE_ASSERTION_KEY"]  # behind nginx, the auth service signs
    assert not replica.env.get("EDGE_ASSERTION_KEY") and replica.env["EDGE_ASSERTION_VERIFY_KEY"]
    assert not edge_cluster.child("gateway").env.get("EDGE_ASSERTION_KEY")  # nginx holds none


def test_every_mode_reads_through_nginx_with_the_assertion(edge_cluster: LocalCluster) -> None:
    url = edge_cluster.gateway_url
    cookie = {"Cookie": session_cookie(login(url, 1, "session"))}
    jwt = bearer(login(url, 2, "jwt"))
    opaque = bearer(login(url, 3, "opaque"))
    replicas = set()
    for headers, mode, user in ((cookie, "session", 1), (jwt, "jwt", 2), (opaque, "opaque", 3)):
        for _ in range(4):
            me = request(url, "GET", "/api/me?x=1", headers=headers)  # a query is bound too
            assert me.status == 200, me.body
            assert (me.json()["auth"], me.json()["user"]) == (mode, f"user{user}")
            replicas.add(me.json()["replica"])
    assert replicas == {"replica-1", "replica-2"}
    assert request(url, "POST", "/auth/logout", headers=cookie).status == 204
    refused = request(url, "GET", "/api/me", headers=cookie)
    assert refused.status == 401, refused.body
    assert refused.json()["error"] in ("invalid_credential", "revoked_credential")
    assert refused.headers["content-type"].startswith("application/json")


def test_no_credential_is_the_contracts_401_with_the_checkers_code(
    edge_cluster: LocalCluster,
) -> None:
    answer = request(edge_cluster.gateway_url, "GET", "/api/me")
    assert answer.status == 401, answer.body
    assert answer.json()["error"] == "missing_credential"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    garbage = request(
        edge_cluster.gateway_url, "GET", "/api/me", headers={"Authorization": "Bearer x.y.z"}
    )
    assert garbage.status == 401 and garbage.json()["error"] == "invalid_credential"


def test_a_client_sent_assertion_never_reaches_a_replica(edge_cluster: LocalCluster) -> None:
    """Even one signed with the deployment's own key (as a stolen key would sign it)."""
    url = edge_cluster.gateway_url
    signer = AssertionSigner("EdDSA", edge_cluster.child("auth").env["EDGE_ASSERTION_KEY"],
                             "authbench", 5)  # fmt: skip
    forged = signer.mint("user9", "jwt", b"GET", b"/api/me", b"rid").decode()
    alone = request(url, "GET", "/api/me", headers={ASSERTION_HEADER: forged})
    assert alone.status == 401 and alone.json()["error"] == "missing_credential"
    jwt = bearer(login(url, 4, "jwt"))
    mixed = request(url, "GET", "/api/me", headers={**jwt, ASSERTION_HEADER: forged})
    assert mixed.status == 200 and mixed.json()["user"] == "user4"  # the credential's own


@pytest.mark.parametrize(
    "path", ["/auth/edge-check", "/_authbench_edge_check", "/auth/edge%2Dcheck"]
)
def test_the_check_is_never_reachable_from_outside(edge_cluster: LocalCluster, path: str) -> None:
    jwt = bearer(login(edge_cluster.gateway_url, 5, "jwt"))
    headers = {**jwt, "X-Original-Method": "GET", "X-Original-URI": "/api/me"}
    answer = request(edge_cluster.gateway_url, "GET", path, headers=headers)
    assert answer.status == 404, answer.body
    assert answer.json()["error"] == "not_found"
    assert ASSERTION_HEADER.lower() not in answer.headers


def test_the_check_itself_refuses_what_nginx_would_never_send(edge_cluster: LocalCluster) -> None:
    auth = edge_cluster.auth_url
    jwt = bearer(login(edge_cluster.gateway_url, 6, "jwt"))
    line = {"X-Original-Method": "GET", "X-Original-URI": "/api/me", "X-Request-Id": "r1"}
    ok = request(auth, "GET", "/auth/edge-check", headers={**jwt, **line})
    assert ok.status == 204 and ok.headers[ASSERTION_HEADER.lower()].count(".") == 2
    forwarded = request(
        auth, "GET", "/auth/edge-check", headers={**jwt, **line, "X-Forwarded-For": "1.2.3.4"}
    )
    assert forwarded.status == 404  # came through a gateway: the endpoint does not exist
    for bad in ({"X-Original-Method": "BREW"}, {"X-Original-URI": "api"}, {"X-Request-Id": ""}):
        answer = request(auth, "GET", "/auth/edge-check", headers={**jwt, **line, **bad})
        assert answer.status == 400 and answer.json()["error"] == "invalid_field", bad
    # Straight at a replica, a credential is not enough: it wants the assertion.
    direct = request(edge_cluster.replica_urls()[0], "GET", "/api/me", headers=jwt)
    assert direct.status == 401


def test_a_dead_auth_service_fails_every_read_with_a_json_503(edge_cluster: LocalCluster) -> None:
    """Runs last. The price of nginx's edge check: it lives in the auth service, so
    sessions and JWTs, which replicas check alone, now fail with it."""
    url = edge_cluster.gateway_url
    jwt = bearer(login(url, 7, "jwt"))
    assert request(url, "GET", "/api/me", headers=jwt).status == 200
    edge_cluster.kill_auth()
    try:
        answer = request(url, "GET", "/api/me", headers=jwt)
        assert answer.status == 503, answer.body
        assert answer.json()["error"] == "auth_unavailable"
        assert answer.headers["retry-after"] == "1"
    finally:
        edge_cluster.start_auth()
    assert request(url, "GET", "/api/me", headers=jwt).status == 200
