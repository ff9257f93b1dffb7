"""The deployment interface: what a target cannot do is refused by name; groups; specs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import pytest

from authbench.targets import DeploymentSpec, open_deployment
from authbench.targets.base import Deployment, NotSupported, StoreTopology, store_argument
from authbench.targets.compose import ComposeTarget
from authbench.targets.local import LocalCluster, Ports


class UrlOnly(Deployment):
    """The shape of an external target: a gateway URL, nothing to control."""

    target = "external"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    @property
    def gateway_url(self) -> str:
        return "http://127.0.0.1:1"

    @property
    def auth_url(self) -> str:
        return self.gateway_url + "/auth"

    @property
    def redis_address(self) -> str | None:
        return None

    @property
    def services_redis_url(self) -> str | None:
        return None

    @property
    def settings(self) -> Mapping[str, str]:
        return {"JWT_REVOCATION": "none"}


@pytest.mark.parametrize(
    "operation", ["kill_redis", "pause_redis", "resume_redis", "start_redis", "wait_redis"]
)
def test_a_target_without_faults_refuses_each_one_by_name(operation: str) -> None:
    with pytest.raises(NotSupported, match=f"{operation} is not supported by target external"):
        getattr(UrlOnly(), operation)()


def test_a_target_without_faults_still_has_one_group_and_no_samples() -> None:
    with UrlOnly() as deployment:
        (group,) = deployment.groups()
        assert group.gateway_url == "http://127.0.0.1:1"
        assert group.settings == {"JWT_REVOCATION": "none"}
        assert deployment.cpu_seconds() == {} and deployment.metrics_pages() == []
        with pytest.raises(NotSupported, match="scale is not supported by target external"):
            deployment.scale(3)


def test_compose_refuses_the_delay_proxy_without_asking_docker() -> None:
    stack = ComposeTarget(project_name="never-started", env={"GATEWAY_PORT": "18080"})
    assert not stack.supports("slow_redis") and stack.supports("kill_redis")
    with pytest.raises(NotSupported, match="slow_redis is not supported by target compose"):
        stack.slow_redis(5.0)
    # Only the gateway is published: the auth API's /auth/... paths answer through it.
    assert stack.auth_url == stack.gateway_url == "http://127.0.0.1:18080"


def test_local_groups_come_from_the_gateways_it_runs(tmp_path: Path) -> None:
    cluster = LocalCluster(
        replicas=2,
        ports=Ports.block(20000),
        settings_env={"JWT_REVOCATION": "denylist", "LOG_LEVEL": "WARNING"},
        workdir=tmp_path,
    )
    cluster.children = cluster.plan()  # what start() runs, without running it
    (group,) = cluster.groups()
    assert group.name == "main" and group.gateway_url == "http://127.0.0.1:20000"
    assert group.replica_urls == ("http://127.0.0.1:20021", "http://127.0.0.1:20022")
    assert group.settings["JWT_REVOCATION"] == "denylist"
    assert "PYTHONPATH" not in group.settings  # settings only, not the process environment


def test_a_spec_opens_the_target_it_names(tmp_path: Path) -> None:
    spec = DeploymentSpec(replicas=3, settings={"JWT_ALG": "ES256"}, port_base=21000)
    local = open_deployment("local", spec)
    assert isinstance(local, LocalCluster)
    assert (local.gateway_url, local.replicas, local.settings["JWT_ALG"]) == (
        "http://127.0.0.1:21000",
        3,
        "ES256",
    )
    compose = open_deployment("compose", DeploymentSpec(replicas=2, project="p"))
    assert isinstance(compose, ComposeTarget)
    assert (compose.project_name, compose.scale_to) == ("p", 2)
    from authbench.targets.swarm import SwarmTarget

    swarm = open_deployment("swarm", DeploymentSpec(replicas=2, project="p"))
    assert isinstance(swarm, SwarmTarget)
    with pytest.raises(ValueError, match="unknown target 'nomad'"):
        open_deployment("nomad", spec)


def test_store_topologies_parse_and_refuse_what_is_not_built() -> None:
    assert str(StoreTopology.parse("single")) == "single"
    assert StoreTopology.parse("cluster:3") == StoreTopology("cluster", 3)
    assert str(StoreTopology.parse("cluster:1")) == "cluster:1"
    for bad in ("cluster", "cluster:0", "cluster:9", "cluster:x"):
        with pytest.raises(ValueError, match="cluster:N with N shards, 1 to 8"):
            StoreTopology.parse(bad)
    assert StoreTopology.parse("replicas:2") == StoreTopology("replicas", read_replicas=2)
    assert str(StoreTopology.parse("replicas:0")) == "replicas:0"
    for bad in ("replicas", "replicas:9", "replicas:-1", "replicas:two"):
        with pytest.raises(ValueError, match="replicas:N with N read replicas, 0 to 8"):
            StoreTopology.parse(bad)
    with pytest.raises(ValueError, match=r"not built yet; choose from .*replicas:N"):
        StoreTopology.parse("mirror:2")
    # replicas:N on compose: the profile `replicas` has 2 read replicas, named as the local
    # ones are, and the services are told where and how often to renew (as locally).
    replicated = open_deployment(
        "compose", DeploymentSpec(replicas=1, store=StoreTopology.parse("replicas:2"))
    )
    assert isinstance(replicated, ComposeTarget)
    assert replicated.env["REDIS_READ_REPLICAS"] == "redis-replica-1:6379,redis-replica-2:6379"
    assert replicated.env["SESSION_RENEW_INTERVAL_S"] == "60"
    assert replicated.store_services() == ("redis", "redis-replica-1", "redis-replica-2")
    with pytest.raises(ValueError, match=r"fixed 2 read replicas; use --store replicas:2"):
        open_deployment(
            "compose", DeploymentSpec(replicas=1, store=StoreTopology.parse("replicas:1"))
        )
    with pytest.raises(ValueError, match="replicas:2 has no delay proxy"):
        open_deployment(
            "compose",
            DeploymentSpec(replicas=1, store=StoreTopology.parse("replicas:2"), redis_delay_ms=1),
        )
    with pytest.raises(ValueError, match="replicas:2 is built for --target local and compose"):
        open_deployment(
            "swarm", DeploymentSpec(replicas=1, store=StoreTopology.parse("replicas:2"))
        )
    # cluster:N on compose: the profile `cluster` has 3 shards, any other N is refused
    # with the one it has, before Docker is asked anything.
    compose = open_deployment(
        "compose", DeploymentSpec(replicas=1, store=StoreTopology.parse("cluster:3"))
    )
    assert isinstance(compose, ComposeTarget)
    # The services are told the shards by docker-compose.cluster.yml (their fixed
    # addresses), not by a variable of the target's.
    assert "REDIS_CLUSTER_NODES" not in compose.env
    # --redis-cpus caps each shard there, as it does locally (not the idle `redis`).
    assert compose.store_services() == ("redis-shard-1", "redis-shard-2", "redis-shard-3")
    assert ComposeTarget().store_services() == ("redis",)
    with pytest.raises(ValueError, match=r"fixed 3 shards; use --store cluster:3"):
        open_deployment(
            "compose", DeploymentSpec(replicas=1, store=StoreTopology.parse("cluster:2"))
        )
    with pytest.raises(ValueError, match="cluster:3 has no delay proxy"):
        open_deployment(
            "compose",
            DeploymentSpec(replicas=1, store=StoreTopology.parse("cluster:3"), redis_delay_ms=1),
        )
    # The commands' --store refuses it as a usage error that names the form.
    with pytest.raises(argparse.ArgumentTypeError, match="replicas:N"):
        store_argument("replicas:99")


def test_the_services_redis_url_is_the_proxy_only_when_a_store_delay_is_set(
    tmp_path: Path,
) -> None:
    direct = LocalCluster(replicas=1, ports=Ports.block(22000), workdir=tmp_path)
    proxied = LocalCluster(
        replicas=1, ports=Ports.block(22000), workdir=tmp_path, redis_delay_ms=0.0
    )
    assert direct.services_redis_url == "redis://127.0.0.1:22010/0" == direct.redis_url
    assert proxied.services_redis_url == "redis://127.0.0.1:22011/0"
    # What the services are started with is the same URL (plan() is what start() runs).
    proxied.children = proxied.plan()
    envs = [c.env for c in proxied.children if c.argv[-1] != "gateway"]
    assert len(envs) == 2  # auth and the one replica
    assert {env["REDIS_URL"] for env in envs} == {proxied.services_redis_url}


def test_a_target_must_say_where_its_services_reach_redis() -> None:
    assert "services_redis_url" in Deployment.__abstractmethods__


def test_the_cluster_file_pins_each_shard_outside_the_range_others_draw_from() -> None:
    """docker-compose.cluster.yml: shard N on CLUSTER_NET.(10+N), outside the ip_range the
    other containers get theirs from (so nothing takes a stopped shard's address), and the
    services told exactly those addresses, in the shards' order."""
    import ipaddress
    import string

    import yaml

    from authbench.process import PROJECT_ROOT
    from authbench.targets.compose import CLUSTER_FILE, SHARD_SERVICES, SHARDS_NETWORK

    text = (PROJECT_ROOT / CLUSTER_FILE).read_text()
    config = yaml.safe_load(string.Template(text.replace("${CLUSTER_NET:-172.31.250}", "$N"))
                            .substitute(N="172.31.207"))  # fmt: skip
    (ipam,) = config["networks"][SHARDS_NETWORK]["ipam"]["config"]
    subnet, others = ipaddress.ip_network(ipam["subnet"]), ipaddress.ip_network(ipam["ip_range"])
    assert subnet == ipaddress.ip_network("172.31.207.0/24")
    fixed = []
    for service in SHARD_SERVICES:
        address = ipaddress.ip_address(
            config["services"][service]["networks"][SHARDS_NETWORK]["ipv4_address"]
        )
        assert address in subnet and address not in others, (service, address)
        fixed.append(f"{address}:6379")
    assert len(set(fixed)) == len(SHARD_SERVICES)
    for service in ("auth", "resource", "gateway"):
        spec = config["services"][service]
        assert SHARDS_NETWORK in spec["networks"] and "default" in spec["networks"]
        assert spec["environment"]["REDIS_CLUSTER_NODES"].split(",") == fixed


def test_a_restarted_shard_counts_as_back_only_when_a_peer_sees_it_connected() -> None:
    from authbench.targets.compose import _sees_healthy

    me = "c1fafbd44f81bcc6e134812a605bf32e8cd010be"
    line = f"{me} 172.31.250.13:6379@16379 master{{}} - 0 1796162791430 3 {{}} 10923-16383"
    ok = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"
    assert _sees_healthy(ok, line.format("", "connected"), me)
    assert not _sees_healthy(ok, line.format(",fail", "connected"), me)
    assert not _sees_healthy(ok, line.format(",fail?", "connected"), me)
    assert not _sees_healthy(ok, line.format("", "disconnected"), me)
    assert not _sees_healthy("cluster_state:fail\r\n", line.format("", "connected"), me)
    assert not _sees_healthy(ok, line.format("", "connected"), "another-node-id")


def test_the_shards_subnet_is_the_running_stacks_or_one_no_network_overlaps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CLUSTER_NET: a running stack keeps its own; otherwise a /24 clear of every network
    of the engine (here one holds all of 172.31.0.0/16), else a clear refusal."""
    from authbench.targets import compose

    networks: dict[str, list[str]] = {"": ["172.17.0.0/16", "172.31.0.0/16"]}
    monkeypatch.setattr(
        compose, "_network_subnets", lambda names=(): networks.get(",".join(names), [])
    )
    target = ComposeTarget(project_name="authbench-x", store=compose.CLUSTER)
    prefix = target._cluster_net()
    assert prefix.startswith("192.168.") and prefix in compose.CLUSTER_NET_CANDIDATES
    networks["authbench-x_shards"] = ["172.31.207.0/24"]
    assert target._cluster_net() == "172.31.207"
    del networks["authbench-x_shards"]
    networks[""] += ["192.168.0.0/16"]
    with pytest.raises(compose.ComposeError, match="set CLUSTER_NET"):
        target._cluster_net()
