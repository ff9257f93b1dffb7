"""The deployments the harness measures: one interface, one implementation per target.

- `base.py`: the `Deployment` interface (life, URLs, settings, scale, Redis faults,
  what samplers read), `NotSupported`, `StoreTopology`;
- `local.py`: `LocalCluster`, loopback processes (target `local`; also `authbench up`);
- `compose.py`: `ComposeTarget`, the docker compose stack (target `compose`);
- `external.py`: `ExternalTarget`, a deployment something else runs, by URL (target
  `external`): nothing started or broken, only measured;
- `swarm.py`: `SwarmTarget`, the compose file's stack on Docker Swarm (target `swarm`).

A new target (swarm, Kubernetes, external) is a `Deployment` subclass in a module of its
own here, plus a branch in `open_deployment` and its name in `TARGETS`; bench and chaos
then take it through `--target` with no other change. The implementations are imported
when opened, so reading the interface costs no Redis client or docker lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from authbench.targets.base import SINGLE_REDIS, Deployment, StoreTopology

if TYPE_CHECKING:
    from authbench.targets.external import Endpoints

TARGETS: tuple[str, ...] = ("local", "compose", "external", "swarm")  # --target choices


@dataclass(frozen=True)
class DeploymentSpec:
    """What a command asks of a deployment, whatever the target."""

    replicas: int
    settings: Mapping[str, str] = field(default_factory=dict)  # the services' settings
    redis_persistence: str = "none"  # none | aof
    store: StoreTopology = SINGLE_REDIS
    port_base: int | None = None  # local: first port of its private block (None: any free)
    workdir: Path | None = None  # local: logs and Redis data (None: .authbench/)
    project: str = "authbench"  # compose: the project to (re)configure; swarm: the stack
    # Store distance: None, the services talk to Redis itself; a number, they go through
    # the delay proxy, which adds that many ms each way once `slow_redis` switches it on.
    redis_delay_ms: float | None = None
    # external: where the deployment that something else runs answers (gateway URL, and
    # optionally auth URL and Redis address); nothing is started for it.
    external: Endpoints | None = None
    # Issue 15: what answers at the gateway's address, ours or nginx (local and compose).
    gateway: str = "ours"


def open_deployment(target: str, spec: DeploymentSpec) -> Deployment:
    """The deployment of `target` for `spec`, not started yet (`with` it, or `start()`)."""
    if spec.store != SINGLE_REDIS and target not in ("local", "compose"):
        raise ValueError(f"--store {spec.store} is built for --target local and compose")
    # cluster:N, replicas:N: any N locally; compose has the profiles `cluster` (3 shards)
    # and `replicas` (2 read replicas), and ComposeTarget refuses another N, naming the
    # one it has.
    if spec.gateway != "ours" and target not in ("local", "compose"):
        raise ValueError(f"--gateway {spec.gateway} is built for --target local and compose")
    if target == "local":
        from authbench.process import free_port_block
        from authbench.targets.local import LocalCluster, Ports

        base = spec.port_base if spec.port_base is not None else free_port_block()
        cluster = LocalCluster(
            replicas=spec.replicas,
            ports=Ports.block(base),
            settings_env=dict(spec.settings),
            redis_persistence=spec.redis_persistence,
            redis_delay_ms=spec.redis_delay_ms,
            store=spec.store,
            gateway_impl=spec.gateway,
        )
        if spec.workdir is not None:
            cluster.workdir = spec.workdir
        return cluster
    if target == "compose":
        from authbench.targets.compose import ComposeTarget

        if spec.redis_persistence != "none":
            raise ValueError("compose: Redis persistence comes from REDIS_APPENDONLY")
        return ComposeTarget(
            project_name=spec.project,
            env=dict(spec.settings),
            scale_to=spec.replicas,
            redis_delay_ms=spec.redis_delay_ms,  # the redis-proxy container
            store=spec.store,  # sentinel, cluster:3, replicas:2: the profiles of those names
            gateway=spec.gateway,  # nginx: the service gateway-nginx (profile `nginx`)
        )
    if target == "external":
        from authbench.targets.external import ExternalTarget

        if spec.external is None:
            raise ValueError("--target external needs the deployment's --gateway-url")
        if spec.redis_delay_ms is not None or spec.redis_persistence != "none":
            raise ValueError("external: the harness cannot change the deployment's Redis")
        return ExternalTarget(spec.external)
    if target == "swarm":
        from authbench.targets.swarm import SwarmTarget

        if spec.redis_delay_ms is not None or spec.redis_persistence != "none":
            raise ValueError("swarm: Redis persistence and delay come from the compose file")
        return SwarmTarget(stack=spec.project, env=dict(spec.settings), replicas=spec.replicas)
    raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
