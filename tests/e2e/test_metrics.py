"""Issue 2: every service exposes health, readiness and Prometheus metrics."""

from __future__ import annotations

from authbench.targets.local import LocalCluster
from tests.client import bearer, login, request, session_cookie


def test_every_service_answers_healthz_readyz_and_metrics(shared_cluster: LocalCluster) -> None:
    urls = [shared_cluster.gateway_url, shared_cluster.auth_url, *shared_cluster.replica_urls()]
    for url in urls:
        assert request(url, "GET", "/healthz").status == 200
        ready = request(url, "GET", "/readyz")
        assert ready.status == 200 and ready.json()["status"] == "ready"
        metrics = request(url, "GET", "/metrics")
        if url == shared_cluster.gateway_url:
            # The gateway's metrics name upstream addresses: operator port only
            # (tests/gateway/test_operator_port.py), never the public one.
            assert metrics.status == 404
            operator = request(shared_cluster.gateway_admin_url, "GET", "/metrics")
            assert operator.status == 200
            assert "authbench_gateway_upstream_healthy" in operator.body.decode()
            continue
        assert metrics.status == 200
        assert metrics.headers["content-type"].startswith("text/plain")


def test_replicas_histogram_validation_time_per_mode(shared_cluster: LocalCluster) -> None:
    gateway = shared_cluster.gateway_url
    cookie = {"Cookie": session_cookie(login(gateway, 30, "session"))}
    token = bearer(login(gateway, 31, "jwt"))
    for _ in range(6):
        request(gateway, "GET", "/api/me", headers=cookie)
        request(gateway, "GET", "/api/me", headers=token)
    counts = {"session": 0.0, "jwt": 0.0}
    for url in shared_cluster.replica_urls():
        text = request(url, "GET", "/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith("authbench_credential_validation_seconds_count{"):
                labels, value = line.rsplit(" ", 1)
                for mode in counts:
                    if f'mode="{mode}"' in labels and 'outcome="ok"' in labels:
                        counts[mode] += float(value)
    assert counts["session"] >= 6 and counts["jwt"] >= 6
