"""Shared fixtures: real redis-server processes and real clusters on private ports.

Nothing here fakes Redis or HTTP. Each cluster gets a free block of ports, so tests never
touch a user's `authbench up` (8080/6390) or each other.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports

ClusterFactory = Callable[..., LocalCluster]

# A test that needs a whole cluster (Redis, auth, replicas, gateway: seconds to start, and
# argon2 logins) is `slow`, as are the few long ones marked by hand, so that
# `pytest -m "not slow and not docker"` is the inner loop README promises in under a minute:
# the units, real redis-server alone, and the gateway against echo upstreams.
CLUSTER_FIXTURES = frozenset(
    {"make_cluster", "shared_cluster", "watched_cluster", "hostile_cluster", "api_cluster"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Start clusters on demand; all are stopped at the end of the test."""
    started: list[LocalCluster] = []

    def _make(
        replicas: int = 2, env: dict[str, str] | None = None, **kwargs: object
    ) -> LocalCluster:
        settings_env = {"AUTH_SEED_USERS": "20", "LOG_LEVEL": "INFO", **(env or {})}
        cluster = LocalCluster(
            replicas=replicas,
            ports=Ports.block(free_port_block()),
            settings_env=settings_env,
            workdir=tmp_path / f"cluster{len(started)}",
            **kwargs,  # type: ignore[arg-type]
        )
        started.append(cluster)
        cluster.start()
        return cluster

    yield _make
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-replica cluster (denylist on) shared by a module's read-mostly tests."""
    cluster = LocalCluster(
        replicas=3,
        ports=Ports.block(free_port_block()),
        settings_env={"AUTH_SEED_USERS": "50", "JWT_REVOCATION": "denylist"},
        workdir=tmp_path_factory.mktemp("shared-cluster"),
    )
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server of the module's own (no persistence), on a free loopback port."""
    server = shutil.which("redis-server")
    assert server, "redis-server must be installed (scripts/setup.sh does it)"
    port = free_port_block()
    workdir: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        proc.terminate()
        proc.wait()
