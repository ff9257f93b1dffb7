"""Which gateway serves which mode: read from the deployment's groups, for any target."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from authbench.chaos.scenarios import FAILOVER_SCENARIOS, SCENARIOS, cannot_run, modes_served
from authbench.chaos.topology import ChaosCluster, ChaosPorts
from authbench.modes import CHAOS_MODES, JWT, JWT_DENYLIST, JWT_DENYLIST_OPEN, JWT_SHORT, SESSION
from authbench.targets.base import SENTINEL
from authcore.config import Settings
from tests.client import Answer, bearer, login, request


def test_the_chaos_cluster_serves_every_mode_from_its_own_group(tmp_path: Path) -> None:
    cluster = ChaosCluster(replicas=2, workdir=tmp_path, chaos_ports=ChaosPorts(20000))
    cluster.children = cluster.plan()  # what start() runs, without running it
    pairs = modes_served(cluster)
    assert [m.key for m, _ in pairs] == [m.key for m in CHAOS_MODES]
    served = {m.key: g for m, g in pairs}
    assert {k: g.name for k, g in served.items()} == {m.key: m.chaos_group for m in CHAOS_MODES}
    # Each group's gateway and replicas are its own, and they run the mode's settings.
    gateways = {served[m.key].gateway_url for m in (JWT, JWT_DENYLIST, JWT_DENYLIST_OPEN)}
    assert len(gateways) == 3
    assert served[SESSION.key] == served[JWT_DENYLIST.key]  # one group, one gateway
    for mode, group in pairs:
        assert len(group.replica_urls) == 2
        assert mode.served_by(group.settings), (mode.key, group.settings)


def test_the_delay_proxy_is_in_every_service_path_only_when_asked_for(tmp_path: Path) -> None:
    ports = ChaosPorts(20000)
    plain = ChaosCluster(replicas=1, workdir=tmp_path, chaos_ports=ports)
    slow = ChaosCluster(replicas=1, workdir=tmp_path, chaos_ports=ports, redis_delay_ms=5.0)
    redis_url = f"redis://127.0.0.1:{ports.cluster.redis}/0"
    proxy_url = f"redis://127.0.0.1:{ports.proxy}/0"
    assert {c.env["REDIS_URL"] for c in plain.plan()} == {redis_url}
    assert {c.env["REDIS_URL"] for c in slow.plan()} == {proxy_url}
    assert all(cannot_run(s, slow) is None for s in SCENARIOS.values() if s.fault != "restart")


def test_a_running_deployment_gets_only_the_failover_scenario_whose_settings_it_runs(
    tmp_path: Path,
) -> None:
    """A given deployment (the compose stack) cannot be handed a scenario's settings: a
    failover measured on a stack without WAIT must not be reported as `failover-wait`."""
    ports = ChaosPorts(20000)
    plain = ChaosCluster(replicas=1, workdir=tmp_path, chaos_ports=ports, store=SENTINEL)
    waits = ChaosCluster(
        replicas=1, workdir=tmp_path, chaos_ports=ports, store=SENTINEL,
        settings_env={"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "100"},
    )  # fmt: skip
    failover, waited = FAILOVER_SCENARIOS["failover"], FAILOVER_SCENARIOS["failover-wait"]
    assert cannot_run(failover, plain) is None  # the services' default: no WAIT
    assert cannot_run(waited, plain) == (
        "it needs REDIS_WAIT_REPLICAS=1; this deployment runs REDIS_WAIT_REPLICAS=0"
    )
    assert cannot_run(waited, waits) is None
    assert cannot_run(failover, waits) == (
        "it needs REDIS_WAIT_REPLICAS=0; this deployment runs REDIS_WAIT_REPLICAS=1"
    )


def _lifetime(answer: Answer) -> int:
    claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
    return int(claims["exp"]) - int(claims["iat"])


def test_jwt_short_plan_has_an_auth_service_of_its_own(tmp_path: Path) -> None:
    cluster = ChaosCluster(replicas=2, workdir=tmp_path, chaos_ports=ChaosPorts(20000))
    children = {c.name: c for c in cluster.plan()}
    short_auth = children["short-auth"]
    assert short_auth.env["JWT_TTL_S"] == JWT_SHORT.deployment["JWT_TTL_S"]
    own = f"http://127.0.0.1:{short_auth.env['PORT']}"
    for name in ("short-gateway", "short-resource-1", "short-resource-2"):
        assert children[name].env["AUTH_URL"] == own, name
    # every other process, of every other group, asks the cluster's one auth service
    others = [c for n, c in children.items() if not n.startswith("short-")]
    assert {c.env["AUTH_URL"] for c in others} == {cluster.auth_url}
    assert "JWT_TTL_S" not in children["auth"].env or children["auth"].env["JWT_TTL_S"] != "30"


@pytest.mark.slow
def test_jwt_short_tokens_live_their_ttl_and_an_auth_fault_takes_every_auth_down(
    tmp_path: Path,
) -> None:
    # Before its own auth service, jwt-short in chaos was served 300-s tokens by the shared
    # one, so an auth or Redis outage never reached it through an expired token.
    cluster = ChaosCluster(replicas=1, workdir=tmp_path)
    cluster.start()
    try:
        served = {m.key: g for m, g in modes_served(cluster)}
        short = login(served[JWT_SHORT.key].gateway_url, 1, "jwt")
        plain = login(served[JWT.key].gateway_url, 1, "jwt")
        assert short.status == plain.status == 200, (short.body, plain.body)
        assert _lifetime(short) == int(JWT_SHORT.deployment["JWT_TTL_S"])
        assert _lifetime(plain) == Settings().jwt_ttl_s
        # one signing-key ring in Redis: the other group's replicas verify it too
        for mode in (JWT_SHORT, JWT):
            got = request(served[mode.key].gateway_url, "GET", "/api/me", headers=bearer(short))
            assert got.status == 200, (mode.key, got.body)
        auths = cluster.auth_children()
        assert len(auths) == 2
        cluster.kill_auth()
        assert not any(a.alive() for a in auths)
        cluster.start_auth()
        assert all(a.alive() for a in auths)
        deadline = time.monotonic() + 10  # the gateway re-admits auth at its next probe
        while (status := login(served[JWT_SHORT.key].gateway_url, 2, "jwt").status) != 200:
            assert status == 503 and time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        cluster.stop()
