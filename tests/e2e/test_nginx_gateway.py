"""`gateway_impl="nginx"`: Debian's nginx in our gateway's place (issue 15 item 3).

The same public surface as ours, checked against a real cluster: routes, the JSON 404s,
introspection never exposed, spoofed forwarding headers replaced, upstream keep-alive,
and a dead replica skipped (passive health) while a dead auth service is a JSON 503."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports
from authbench.targets.nginx import nginx_binary, nginx_config
from tests.client import bearer, login, request, session_cookie


def _nginx_installed() -> bool:
    try:
        nginx_binary()
    except FileNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _nginx_installed(), reason="nginx is not installed")


@pytest.fixture(scope="module")
def nginx_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        replicas=2,
        ports=Ports.block(free_port_block()),
        settings_env={"AUTH_SEED_USERS": "20"},
        workdir=tmp_path_factory.mktemp("nginx-cluster"),
        gateway_impl="nginx",
    )
    cluster.start()
    yield cluster
    cluster.stop()


def test_the_gateway_child_is_nginx(nginx_cluster: LocalCluster) -> None:
    gateway = nginx_cluster.child("gateway")
    assert gateway.pid is not None
    with open(f"/proc/{gateway.pid}/cmdline", "rb") as f:
        assert b"nginx" in f.read().split(b"\0")[0]
    (group,) = nginx_cluster.groups()  # bench and chaos find it where they find ours
    assert group.gateway_url == nginx_cluster.gateway_url
    assert nginx_cluster.cpu_seconds()["gateway"] >= 0.0


def test_every_mode_works_through_nginx(nginx_cluster: LocalCluster) -> None:
    url = nginx_cluster.gateway_url
    cookie = {"Cookie": session_cookie(login(url, 1, "session"))}
    jwt = bearer(login(url, 2, "jwt"))
    opaque = bearer(login(url, 3, "opaque"))
    replicas = set()
    for headers, mode in ((cookie, "session"), (jwt, "jwt"), (opaque, "opaque")):
        for _ in range(4):
            me = request(url, "GET", "/api/me", headers=headers)
            assert me.status == 200, me.body
            assert me.json()["auth"] == mode
            replicas.add(me.json()["replica"])
    assert replicas == {"replica-1", "replica-2"}  # both upstreams used
    assert request(url, "POST", "/auth/logout", headers=opaque).status == 204
    assert request(url, "GET", "/api/me", headers=opaque).status == 401


@pytest.mark.parametrize(
    "path",
    ["/", "/metrics", "/nope", "/auth/introspect", "/auth/%69ntrospect", "/auth//introspect"],
)
def test_unrouted_and_internal_paths_are_json_404(nginx_cluster: LocalCluster, path: str) -> None:
    answer = request(
        nginx_cluster.gateway_url,
        "POST" if "introspect" in path else "GET",
        path,
        body="token=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status == 404, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"] == "not_found"


def test_probes_answer_json(nginx_cluster: LocalCluster) -> None:
    for path in ("/healthz", "/readyz"):
        answer = request(nginx_cluster.gateway_url, "GET", path)
        assert answer.status == 200 and answer.json()["service"] == "gateway"


def test_spoofed_forwarding_headers_are_replaced(nginx_cluster: LocalCluster) -> None:
    """A client cannot pose as the gateway's trusted forwarder: the auth service sees one
    X-Forwarded-For, nginx's own, so introspection stays refused and throttling keys on
    the real peer (here: a wrong password from a 'different' address still counts)."""
    headers = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"}
    answer = request(
        nginx_cluster.gateway_url,
        "POST",
        "/auth/login",
        body={"username": "user4", "password": "password4", "mode": "jwt"},
        headers=headers,
    )
    assert answer.status == 200


def test_a_too_large_body_is_json_413(nginx_cluster: LocalCluster) -> None:
    answer = request(
        nginx_cluster.gateway_url,
        "POST",
        "/auth/login",
        body=b"x" * 200_000,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status == 413
    assert answer.json()["error"] == "payload_too_large"


def test_a_dead_replica_is_skipped_and_a_dead_auth_is_json_503(
    nginx_cluster: LocalCluster,
) -> None:
    """Runs last: it kills a replica and the auth service."""
    url = nginx_cluster.gateway_url
    jwt = bearer(login(url, 5, "jwt"))
    replica = nginx_cluster.child("resource-2")
    assert replica.process is not None
    replica.process.kill()
    replica.process.wait()
    statuses = [request(url, "GET", "/api/me", headers=jwt).status for _ in range(6)]
    assert statuses == [200] * 6  # GET retried on the next upstream (proxy_next_upstream)
    nginx_cluster.kill_auth()
    try:
        answer = request(
            url, "POST", "/auth/login", body={"username": "u", "password": "p", "mode": "jwt"}
        )
        assert answer.status == 503, answer.body
        assert answer.json()["error"] == "upstream_unavailable"
        assert answer.headers["retry-after"] == "1"
    finally:
        nginx_cluster.start_auth()


def test_the_config_refuses_to_route_nowhere(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        nginx_config(port=1, auth_urls=[], replica_urls=["http://a:1"], workdir=tmp_path)
