"""Which gateway serves which mode: read from the deployment's groups, for any target."""

from __future__ import annotations

from pathlib import Path

from authbench.chaos.scenarios import SCENARIOS, cannot_run, modes_served
from authbench.chaos.topology import ChaosCluster, ChaosPorts
from authbench.modes import CHAOS_MODES, JWT, JWT_DENYLIST, JWT_DENYLIST_OPEN, SESSION


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
