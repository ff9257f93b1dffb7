"""Issue 2, end to end through the gateway: both modes, logout, refresh, revocation."""

from __future__ import annotations

import time

import pytest

from authbench.targets.local import LocalCluster
from tests.client import Answer, bearer, login, request, session_cookie
from tests.conftest import ClusterFactory


def me(cluster: LocalCluster, headers: dict[str, str]) -> Answer:
    return request(cluster.gateway_url, "GET", "/api/me", headers=headers)


def on_every_replica(cluster: LocalCluster, path: str, headers: dict[str, str]) -> list[Answer]:
    """Ask each replica directly, bypassing the gateway's balancing."""
    return [request(url, "GET", path, headers=headers) for url in cluster.replica_urls()]


def test_session_login_sets_a_hardened_cookie(shared_cluster: LocalCluster) -> None:
    answer = login(shared_cluster.gateway_url, 3, "session")
    assert answer.status == 200
    assert answer.json() == {"mode": "session", "user": "user3", "expires_in": 1800}
    (cookie,) = answer.set_cookies
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower()
    assert "domain" not in attributes
    assert len(cookie.split(";")[0].split("=", 1)[1]) == 43  # 256 bits, base64url


def test_jwt_login_returns_tokens_the_contract_names(shared_cluster: LocalCluster) -> None:
    answer = login(shared_cluster.gateway_url, 4, "jwt")
    body = answer.json()
    assert answer.status == 200
    assert body["mode"] == "jwt" and body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["access_token"].count(".") == 2 and body["refresh_token"]
    assert answer.set_cookies == []


def test_each_mode_reaches_items_with_its_credential(shared_cluster: LocalCluster) -> None:
    cookie = {"Cookie": session_cookie(login(shared_cluster.gateway_url, 5, "session"))}
    token = bearer(login(shared_cluster.gateway_url, 6, "jwt"))
    for headers, user, mode in ((cookie, "user5", "session"), (token, "user6", "jwt")):
        item = request(shared_cluster.gateway_url, "GET", "/api/items/17", headers=headers)
        assert item.status == 200
        body = item.json()
        assert (body["id"], body["owner"], body["auth"]) == (17, user, mode)
        assert len(body["data"]) == 512 and body["replica"].startswith("replica-")


def test_requests_spread_over_every_replica(shared_cluster: LocalCluster) -> None:
    token = bearer(login(shared_cluster.gateway_url, 7, "jwt"))
    seen: set[str] = set()
    # Round robin covers all three in 3 requests; the allowance is for a replica whose
    # health probe timed out on a starved CPU (it rejoins on the next round, 1 s later).
    deadline = time.monotonic() + 5
    while seen != {"replica-1", "replica-2", "replica-3"} and time.monotonic() < deadline:
        seen |= {me(shared_cluster, token).json()["replica"] for _ in range(6)}
    assert seen == {"replica-1", "replica-2", "replica-3"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Cookie": "sid=" + "A" * 43},  # well-formed, never issued
        {"Cookie": "sid=not-a-session"},
        {"Authorization": "Bearer abc.def.ghi"},
        {"Authorization": "Basic dXNlcjE6cGFzc3dvcmQx"},
    ],
    ids=["none", "unissued-session", "garbage-cookie", "garbage-jwt", "basic-auth"],
)
def test_missing_or_bad_credentials_get_401_json(
    shared_cluster: LocalCluster, headers: dict[str, str]
) -> None:
    answer = me(shared_cluster, headers)
    assert answer.status == 401
    assert answer.headers["content-type"].startswith("application/json")
    assert set(answer.json()) == {"error", "detail"}
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_logout_ends_a_session_at_once_on_every_replica(shared_cluster: LocalCluster) -> None:
    cookie = {"Cookie": session_cookie(login(shared_cluster.gateway_url, 8, "session"))}
    assert [a.status for a in on_every_replica(shared_cluster, "/api/me", cookie)] == [200] * 3
    out = request(shared_cluster.gateway_url, "POST", "/auth/logout", headers=cookie)
    assert out.status == 204
    assert any("max-age=0" in c.lower() for c in out.set_cookies)
    assert [a.status for a in on_every_replica(shared_cluster, "/api/me", cookie)] == [401] * 3


def test_logged_out_jwt_is_rejected_everywhere_with_the_denylist(
    shared_cluster: LocalCluster,
) -> None:
    token = bearer(login(shared_cluster.gateway_url, 9, "jwt"))
    assert request(shared_cluster.gateway_url, "POST", "/auth/logout", headers=token).status == 204
    answers = on_every_replica(shared_cluster, "/api/me", token)
    assert [a.status for a in answers] == [401] * 3
    assert {a.json()["error"] for a in answers} == {"revoked_credential"}


def test_logged_out_jwt_still_works_without_revocation(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(replicas=2, env={"JWT_REVOCATION": "none"})
    tokens = login(cluster.gateway_url, 1, "jwt")
    assert (
        request(cluster.gateway_url, "POST", "/auth/logout", headers=bearer(tokens)).status == 204
    )
    # Pure stateless: the wristband stays valid until it expires...
    assert [a.status for a in on_every_replica(cluster, "/api/me", bearer(tokens))] == [200] * 2
    # ...but its refresh family is revoked, so it cannot be renewed.
    again = request(
        cluster.gateway_url, "POST", "/auth/refresh",
        body={"refresh_token": tokens.json()["refresh_token"]},
    )  # fmt: skip
    assert again.status == 401 and again.json()["error"] == "revoked_credential"


def test_refresh_rotates_and_a_reused_token_revokes_its_family(
    shared_cluster: LocalCluster,
) -> None:
    first = login(shared_cluster.gateway_url, 10, "jwt").json()
    rotated = request(
        shared_cluster.gateway_url, "POST", "/auth/refresh",
        body={"refresh_token": first["refresh_token"]},
    )  # fmt: skip
    assert rotated.status == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert me(shared_cluster, {"Authorization": f"Bearer {second['access_token']}"}).status == 200

    replay = request(
        shared_cluster.gateway_url, "POST", "/auth/refresh",
        body={"refresh_token": first["refresh_token"]},
    )  # fmt: skip
    assert replay.status == 401 and replay.json()["error"] == "revoked_credential"
    # The thief's replay also burned the legitimate successor: the whole family is gone.
    successor = request(
        shared_cluster.gateway_url, "POST", "/auth/refresh",
        body={"refresh_token": second["refresh_token"]},
    )  # fmt: skip
    assert successor.status == 401


def test_unknown_refresh_token_is_401(shared_cluster: LocalCluster) -> None:
    answer = request(
        shared_cluster.gateway_url, "POST", "/auth/refresh", body={"refresh_token": "x" * 43}
    )
    assert answer.status == 401 and answer.json()["error"] == "invalid_credential"


def test_wrong_password_and_unknown_user_get_the_same_answer(
    shared_cluster: LocalCluster,
) -> None:
    wrong = request(
        shared_cluster.gateway_url, "POST", "/auth/login",
        body={"username": "user11", "password": "nope", "mode": "jwt"},
    )  # fmt: skip
    unknown = request(
        shared_cluster.gateway_url, "POST", "/auth/login",
        body={"username": "nobody", "password": "nope", "mode": "jwt"},
    )  # fmt: skip
    assert wrong.status == unknown.status == 401
    assert wrong.json() == unknown.json()


def test_jwks_publishes_the_key_that_signed_the_token(shared_cluster: LocalCluster) -> None:
    import jwt

    token = login(shared_cluster.gateway_url, 12, "jwt").json()["access_token"]
    jwks = request(shared_cluster.gateway_url, "GET", "/auth/.well-known/jwks.json").json()
    kids = {k["kid"]: k for k in jwks["keys"]}
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
    assert header["kid"] in kids
    key = jwt.PyJWK(kids[header["kid"]])
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="authbench-api")
    assert {"iss", "aud", "sub", "exp", "iat", "nbf", "jti"} <= set(claims)
    assert abs(claims["exp"] - claims["iat"] - 300) < 1  # NumericDate may be fractional
    assert "d" not in kids[header["kid"]]  # never the private part
