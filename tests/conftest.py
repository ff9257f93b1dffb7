"""Shared fixtures: real redis-server processes and real clusters on private ports.

Nothing here fakes Redis or HTTP. Each cluster gets a free block of ports, so tests never
touch a user's `authbench up` (8080/6390) or each other.
"""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from authbench.cluster import LocalCluster, Ports

BLOCK = 40  # ports per cluster: gateway, auth, redis, up to ~19 replicas


def _block_is_free(base: int) -> bool:
    for port in range(base, base + BLOCK):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block() -> int:
    rng = random.Random(os.getpid() ^ id(object()))
    for _ in range(200):
        # Below Linux's ephemeral range (32768+): a port there may be taken at any moment
        # by an outgoing connection, or a probe may connect to itself.
        base = rng.randrange(10000, 32000 - BLOCK, BLOCK)
        if _block_is_free(base):
            return base
    raise RuntimeError("no free block of ports on 127.0.0.1")


ClusterFactory = Callable[..., LocalCluster]


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
