"""Fixtures of the security suite: clusters whose logs are scanned for secrets.

Every cluster started here records the secrets the tests handle (passwords, session IDs,
access, refresh and CSRF tokens, the admin secret). When the cluster stops, its log files
(LocalCluster writes workdir/logs/*.log) must hold none of them, and no traceback: a
service that logs a credential, or crashes on hostile input, fails the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports

# Fuzzing stays inside CI's time budget: ~150 examples per property at unit level, fewer
# through a real gateway; no per-example deadline (a loaded 2-core box makes timings
# meaningless); no example database written into the tree.
UNIT_FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NETWORK_FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

ADMIN_TOKEN = "admin-secret-for-tests-0123456789abcdef"


@dataclass
class WatchedCluster:
    """A real cluster plus the secrets its logs must never contain."""

    cluster: LocalCluster
    secrets: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.cluster.gateway_url

    def remember(self, *values: str | None) -> None:
        for value in values:
            if value and len(value) >= 8:
                self.secrets.add(value)

    def log_findings(self) -> list[str]:
        findings = []
        auth_log = self.cluster.workdir / "logs" / "auth.log"
        if "POST /auth/login" not in auth_log.read_text(errors="replace"):
            # The scan below would prove nothing if the access log were not written.
            findings.append("auth.log: no access-log lines (ACCESS_LOG=1 not honoured?)")
        for path in sorted((self.cluster.workdir / "logs").glob("*.log")):
            text = path.read_text(errors="replace")
            if "Traceback" in text:
                findings.append(f"{path.name}: traceback")
            for secret in self.secrets:
                if secret in text:
                    findings.append(f"{path.name}: secret {secret[:6]}…")
        return findings


def start_watched(workdir: Path, replicas: int, env: dict[str, str]) -> WatchedCluster:
    settings_env = {
        "AUTH_SEED_USERS": "20",
        # Log as much as the services can: a leak at DEBUG is still a leak.
        "LOG_LEVEL": "DEBUG",
        "ACCESS_LOG": "1",
        "AUTH_ADMIN_TOKEN": ADMIN_TOKEN,
        **env,
    }
    cluster = LocalCluster(
        replicas=replicas,
        ports=Ports.block(free_port_block()),
        settings_env=settings_env,
        workdir=workdir,
    )
    cluster.start()
    watched = WatchedCluster(cluster)
    watched.remember(ADMIN_TOKEN, settings_env.get("JWT_HS256_SECRET"))
    return watched


def stop_and_scan(watched: WatchedCluster) -> None:
    watched.cluster.stop()
    findings = watched.log_findings()
    assert not findings, f"service logs leak secrets or crashed: {findings}"


WatchedFactory = Callable[..., WatchedCluster]


@pytest.fixture
def watched_cluster(tmp_path: Path) -> Iterator[WatchedFactory]:
    """Start watched clusters on demand; each is stopped and its logs scanned after."""
    started: list[WatchedCluster] = []

    def _make(replicas: int = 1, env: dict[str, str] | None = None) -> WatchedCluster:
        watched = start_watched(tmp_path / f"cluster{len(started)}", replicas, env or {})
        started.append(watched)
        return watched

    yield _make
    for watched in started:
        stop_and_scan(watched)


@pytest.fixture(scope="module")
def hostile_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedCluster]:
    """Two replicas, denylist on, throttling out of the way of the table's bad logins."""
    watched = start_watched(
        tmp_path_factory.mktemp("hostile"),
        2,
        {
            "JWT_REVOCATION": "denylist",
            # The gateway's X-Forwarded-For is believed, so it is parsed (and must never
            # fail on what a client put in it).
            "TRUSTED_PROXIES": "127.0.0.0/8",
            "LOGIN_MAX_FAILURES": "10000",
            "LOGIN_MAX_FAILURES_PER_IP": "10000",
        },
    )
    yield watched
    stop_and_scan(watched)
