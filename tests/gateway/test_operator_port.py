"""Issue 11 (item 10): the gateway's /metrics names the upstreams' internal addresses, so
only the operator port serves it (GATEWAY_ADMIN_PORT, loopback by default)."""

from __future__ import annotations

import socket

import pytest

from tests.client import request
from tests.gateway.conftest import ADMIN_OFFSET, GatewayRig


def test_the_public_port_serves_no_metrics(rig: GatewayRig) -> None:
    for path in ("/metrics", "/metrics?x=1"):
        answer = request(rig.url, "GET", path)
        assert answer.status == 404 and answer.json()["error"] == "not_found", path
        for port in rig.upstream_ports:
            assert str(port).encode() not in answer.body


def test_the_operator_port_serves_metrics_with_the_upstreams(rig: GatewayRig) -> None:
    request(rig.url, "GET", "/api/echo")  # one proxied request to count
    answer = request(rig.admin_url, "GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.body.decode()
    for port in rig.upstream_ports:
        assert (
            f'authbench_gateway_upstream_healthy{{upstream="http://127.0.0.1:{port}"}} 1.0' in text
        )
    assert 'route="/api/{tail}"' in text
    assert "authbench_gateway_connections_refused_total" in text
    for path in ("/healthz", "/readyz"):
        assert request(rig.admin_url, "GET", path).status == 200


def test_the_operator_port_proxies_nothing_and_listens_on_loopback_only(rig: GatewayRig) -> None:
    for path in ("/api/echo", "/auth/login", "/openapi.json", "/"):
        answer = request(rig.admin_url, "GET", path)
        assert answer.status == 404 and answer.json()["error"] == "not_found", path
    assert request(rig.admin_url, "POST", "/metrics").status == 405
    # Bound to 127.0.0.1 (GATEWAY_ADMIN_HOST's default), not to every address.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", rig.port + ADMIN_OFFSET), timeout=2).close()
