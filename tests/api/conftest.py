"""A live cluster for the API-description tests: real Redis, auth, replicas, gateway.

The fuzzer logs in thousands of times with wrong passwords from one address, so this
cluster's failed-login limits are raised; throttling itself is pinned in tests/e2e.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports
from tests.client import request

SEED_USERS = 50


@pytest.fixture(scope="package")
def api_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        replicas=2,
        ports=Ports.block(free_port_block()),
        settings_env={
            "AUTH_SEED_USERS": str(SEED_USERS),
            "JWT_REVOCATION": "denylist",
            "LOGIN_MAX_FAILURES": "1000000",
            "LOGIN_MAX_FAILURES_PER_IP": "1000000",
        },
        workdir=tmp_path_factory.mktemp("api-cluster"),
    )
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="package")
def document_path() -> Path:
    return Path(__file__).resolve().parents[2] / "authcore" / "openapi.json"


def served_document(cluster: LocalCluster) -> bytes:
    answer = request(cluster.gateway_url, "GET", "/openapi.json")
    assert answer.status == 200, answer.body[:200]
    return answer.body
