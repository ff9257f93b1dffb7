"""The first thing a user does: start the cluster and log in both ways."""

from __future__ import annotations

from tests.client import bearer, login, request, session_cookie
from tests.conftest import ClusterFactory


def test_both_login_modes_reach_me_through_the_gateway(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(replicas=2)
    session = login(cluster.gateway_url, 1, "session")
    assert session.status == 200, session.body
    me = request(cluster.gateway_url, "GET", "/api/me", headers={"Cookie": session_cookie(session)})
    assert me.status == 200
    assert me.json()["user"] == "user1" and me.json()["auth"] == "session"

    jwt = login(cluster.gateway_url, 2, "jwt")
    assert jwt.status == 200, jwt.body
    me = request(cluster.gateway_url, "GET", "/api/me", headers=bearer(jwt))
    assert me.status == 200
    assert me.json()["user"] == "user2" and me.json()["auth"] == "jwt"
