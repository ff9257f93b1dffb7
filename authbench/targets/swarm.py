"""SwarmTarget: the same stack on Docker Swarm (`docker stack deploy`), target `swarm`.

The stack file is derived from docker-compose.yml, not written twice: `docker compose
config` resolves the file with the same variables as the compose target (so the images,
settings and healthchecks are the compose stack's), and `stack_file()` changes only what
a swarm reads differently:

- no `name`, `build`, `pull_policy`, `depends_on` (swarm starts everything at once and the
  services retry their dependencies), profiles (Locust runs from the harness);
- `restart` becomes `deploy.restart_policy`: `condition: any` for the services (swarm
  stops a task that fails its healthcheck with SIGTERM, the services then exit 0, and
  `on-failure` would leave that replica down for good), `none` for Redis, so a Redis
  killed on purpose stays down until `start_redis`, as in compose;
- `deploy.endpoint_mode: dnsrr` on every service, on an overlay network: the service name
  resolves to every task's address. The gateway wants exactly that (it balances over
  `dns://resource:8101` itself and re-resolves it), and a virtual IP cannot work on this
  engine (below);
- the gateway is published in `mode: host` on `gateway_port`; the routing mesh is not used.
  Version 3 stack files have no `host_ip`, so the port is bound on every interface (compose
  binds 127.0.0.1); the harness only ever connects to 127.0.0.1;
- Redis gets no healthcheck: a paused Redis (a chaos scenario) would be failed and replaced
  by swarm after a few missed checks, which is not the fault being measured.

What fails here, with `dockerd --iptables=false` (checked, see README "Docker Swarm"): a
service's virtual IP accepts no connection (the engine logs "Could not get ipvs family
information from the kernel ... Native loadbalancing will not work": the kernel has no
IPVS, and without iptables no mangle marks are set either), and a port published through
the ingress routing mesh has no listener (connection refused). DNS round robin on the
overlay network and host-mode ports work.

    swarm = SwarmTarget(stack="authbench", replicas=3, gateway_port=8080)
    swarm.start()                  # docker stack deploy; waits until the gateway is ready
    swarm.scale(5)                 # docker service scale authbench_resource=5
    swarm.kill_redis(); swarm.start_redis()
    swarm.remove()                 # docker stack rm, and waits until nothing is left
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from authbench.process import PROJECT_ROOT
from authbench.targets.base import Deployment, DeploymentError, http_status
from authbench.targets.compose import (
    _METRICS_PROBE,
    ComposeTarget,
    _cgroup_cpu_seconds,
    parse_redis_info,
)

TARGET = "swarm"
STACK_VERSION = "3.8"  # what Debian's docker 20.10 `stack deploy` reads
REDIS, RESOURCE, GATEWAY, AUTH = "redis", "resource", "gateway", "auth"
# Compose keys a swarm does not read (or reads differently: `restart`, `ports`, networks).
_DROPPED = ("build", "pull_policy", "depends_on", "profiles", "restart", "container_name")


class SwarmError(DeploymentError):
    """A docker command of the swarm target failed; the message carries its output."""


def swarm_state() -> str:
    """The engine's swarm state: active, inactive, pending, ... ('' without an engine)."""
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def stack_file(compose_config: Mapping[str, Any], gateway_port: int) -> dict[str, Any]:
    """The stack file of a resolved compose configuration (`docker compose config`)."""
    services: dict[str, Any] = {}
    for name, spec in compose_config["services"].items():
        if spec.get("profiles"):
            continue  # the load profile: Locust runs from the harness
        service = {k: v for k, v in spec.items() if k not in _DROPPED and v is not None}
        deploy = dict(service.pop("deploy", None) or {})
        deploy = {k: v for k, v in deploy.items() if v not in ({}, None)}
        deploy["endpoint_mode"] = "dnsrr"
        restart = spec.get("restart", "no")
        deploy["restart_policy"] = {
            "condition": "none" if restart == "no" else "any",
            "delay": "1s",
        }
        service["deploy"] = deploy
        service["networks"] = ["default"]
        if name == REDIS:
            service["healthcheck"] = {"disable": True}
        ports = []
        for port in service.pop("ports", None) or []:
            ports.append(
                {"target": int(port["target"]), "published": gateway_port, "protocol": "tcp",
                 "mode": "host"}
            )  # fmt: skip
        if ports:
            service["ports"] = ports
        volumes = []
        for volume in service.pop("volumes", None) or []:
            volumes.append({"type": volume["type"], "source": volume["source"],
                            "target": volume["target"]})  # fmt: skip
        if volumes:
            service["volumes"] = volumes
        services[name] = service
    used = {v["source"] for s in services.values() for v in s.get("volumes", [])}
    return {
        "version": STACK_VERSION,
        "services": services,
        "networks": {"default": {"driver": "overlay"}},
        "volumes": {name: {} for name in sorted(used)},
    }


@dataclass
class SwarmTarget(Deployment):
    """One stack of this repository's docker-compose.yml on the local swarm manager.

    `env` holds compose variables (JWT_REVOCATION, AUTHBENCH_IMAGE, ...), as for the
    compose target; `replicas` is the resource count `start()` deploys (None: attach to a
    running stack as it is).
    """

    target: ClassVar[str] = TARGET

    stack: str = "authbench"
    env: dict[str, str] = field(default_factory=dict)
    replicas: int | None = 3
    gateway_port: int = 0  # 0: the compose variable GATEWAY_PORT (env, .env), else 8080
    project_dir: Path = PROJECT_ROOT
    workdir: Path = field(default_factory=lambda: PROJECT_ROOT / ".authbench" / "swarm")
    ready_timeout_s: float = 180.0

    # --- the compose file, resolved as compose resolves it --------------------------------
    @functools.cached_property
    def _compose(self) -> ComposeTarget:
        env = dict(self.env)
        if self.replicas is not None:
            env["RESOURCE_REPLICAS"] = str(self.replicas)
        return ComposeTarget(project_dir=self.project_dir, project_name=self.stack, env=env)

    def __post_init__(self) -> None:
        if not self.gateway_port:
            self.gateway_port = int(self._compose._variable("GATEWAY_PORT") or 8080)

    def stack_file(self) -> dict[str, Any]:
        return stack_file(self._compose.config, self.gateway_port)

    def write_stack_file(self) -> Path:
        path = self.workdir / f"{self.stack}.stack.json"  # JSON is YAML: stack deploy reads it
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.stack_file(), indent=2))
        return path

    # --- running commands ---------------------------------------------------------------
    def docker(self, *args: str, timeout_s: float = 120.0, check: bool = True) -> str:
        try:
            done = subprocess.run(
                ["docker", *args], cwd=self.project_dir, env=dict(os.environ),
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
                check=False,
            )  # fmt: skip
        except FileNotFoundError as err:
            raise SwarmError("the docker CLI is not installed") from err
        except subprocess.TimeoutExpired as err:
            raise SwarmError(
                f"`docker {' '.join(args)}` did not finish in {timeout_s:.0f} s"
            ) from err
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-3000:]
            raise SwarmError(f"`docker {' '.join(args)}` exited {done.returncode}:\n{output}")
        return done.stdout

    def service(self, name: str) -> str:
        return f"{self.stack}_{name}"

    def containers(self, name: str, *, healthy: bool = False) -> list[str]:
        """IDs of the running (or only the healthy) containers of one of the stack's
        services. Swarm's DNS lists a task with a healthcheck only once it is healthy."""
        args = ["ps", "-q", "--filter", f"label=com.docker.swarm.service.name={self.service(name)}"]
        if healthy:
            args += ["--filter", "health=healthy"]
        return self.docker(*args).split()

    def _redis_container(self) -> str:
        found = self.containers(REDIS)
        if not found:
            raise SwarmError(f"no running container of {self.service(REDIS)}")
        return found[0]

    # --- Deployment: life ------------------------------------------------------------------
    def start(self) -> None:
        if swarm_state() != "active":
            raise SwarmError(
                "this engine is not a swarm manager; run `docker swarm init --advertise-addr "
                "127.0.0.1` first"
            )
        if self.replicas is not None:
            self.deploy()
        self.wait_ready()

    def deploy(self) -> None:
        """`docker stack deploy`: create the stack, or update it to this configuration."""
        path = self.write_stack_file()
        image = self.stack_file()["services"][RESOURCE]["image"]
        if self.docker("image", "inspect", image, check=False).strip() in ("", "[]"):
            # The one service image, built as compose builds it (`auth` builds it).
            self._compose.compose("build", "auth", timeout_s=900)
        self.docker(
            "stack", "deploy", "--resolve-image", "never", "--prune", "-c", str(path),
            self.stack, timeout_s=300,
        )  # fmt: skip
        self.wait_updated()

    def wait_updated(self, timeout_s: float = 300.0) -> None:
        """Until no service of the stack is in a rolling update. A redeploy with other
        settings replaces every task one by one (the gateway too); measuring before that
        ends would measure the old settings, then a gateway going away."""
        time.sleep(2.0)  # the orchestrator marks an update `updating` shortly after the call
        names = self.docker(
            "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={self.stack}"
        ).split()
        deadline = time.monotonic() + timeout_s
        while names:
            out = self.docker(
                "service", "inspect", "--format",
                "{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", *names,
            )  # fmt: skip
            busy = [line for line in out.splitlines() if line.endswith(" updating")]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise SwarmError(f"still updating after {timeout_s:.0f} s: {busy}")
            time.sleep(1.0)

    def wait_ready(self) -> None:
        """Until the gateway answers /readyz and every resource task is healthy (so that
        swarm's DNS, which the gateway re-resolves, lists it)."""
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            running = len(self.containers(RESOURCE, healthy=True))
            wanted = self.replicas if self.replicas is not None else running
            if running == wanted and self.is_up():
                return
            if time.monotonic() > deadline:
                tasks = self.docker("stack", "ps", "--no-trunc", self.stack, check=False)
                raise SwarmError(
                    f"stack {self.stack} not ready in {self.ready_timeout_s:.0f} s "
                    f"({running}/{wanted} resource tasks healthy):\n{tasks[-3000:]}"
                )
            time.sleep(1.0)

    def stop(self) -> None:
        """Leave the stack running (as the compose target does), with Redis running again."""
        self.close()
        redis = self.containers(REDIS)
        if not redis:
            self.start_redis()
            return
        state = self.docker("inspect", "-f", "{{.State.Status}}", redis[0]).strip()
        if state == "paused":
            self.resume_redis()

    def remove(self, timeout_s: float = 120.0) -> None:
        """`docker stack rm`, then wait until its containers and network are gone, and
        remove its volume (a stack's volumes outlive it otherwise)."""
        self.docker("stack", "rm", self.stack, check=False)
        label = f"label=com.docker.stack.namespace={self.stack}"
        deadline = time.monotonic() + timeout_s
        while True:
            left = self.docker("ps", "-aq", "--filter", label).split()
            nets = self.docker("network", "ls", "-q", "--filter", label).split()
            if not left and not nets:
                break
            if time.monotonic() > deadline:
                raise SwarmError(f"stack {self.stack} still has {left} {nets} after rm")
            time.sleep(0.5)
        for volume in self.docker("volume", "ls", "-q", "--filter", label).split():
            self.docker("volume", "rm", volume, check=False)

    def describe(self) -> str:
        return f"swarm stack {self.stack} at {self.gateway_url}"

    def is_up(self) -> bool:
        return http_status(f"{self.gateway_url}/readyz") == 200

    # --- Deployment: where it is ---------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def auth_url(self) -> str:
        return self.gateway_url  # auth is not published; the gateway forwards /auth/*

    @property
    def redis_address(self) -> str | None:
        return None  # not published; INFO goes through redis-cli in the task's container

    @property
    def services_redis_url(self) -> str | None:
        return self.settings.get("REDIS_URL")

    @functools.cached_property
    def _deployed_env(self) -> dict[str, str]:
        """The resource service's environment as the swarm runs it."""
        out = self.docker(
            "service", "inspect", "--format",
            "{{json .Spec.TaskTemplate.ContainerSpec.Env}}", self.service(RESOURCE),
        )  # fmt: skip
        pairs = json.loads(out) or []
        return dict(pair.split("=", 1) for pair in pairs if "=" in pair)

    @property
    def settings(self) -> Mapping[str, str]:
        if self.replicas is not None:  # deployed by us: what the stack file says
            env = self.stack_file()["services"][RESOURCE].get("environment") or {}
            return {str(k): str(v) for k, v in env.items()}
        return self._deployed_env

    @property
    def redis_persistence(self) -> str:
        command = [str(arg) for arg in self.stack_file()["services"][REDIS].get("command") or []]
        flags = dict(itertools.pairwise(command))
        return "aof" if flags.get("--appendonly") == "yes" else "none"

    def replica_count(self) -> int:
        return len(self.containers(RESOURCE))

    # --- scale and faults, through the engine ----------------------------------------------
    def scale(self, replicas: int) -> None:
        """`docker service scale STACK_resource=N`, then wait until the gateway is ready
        with N tasks running (it re-resolves the replicas by DNS on its own)."""
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        self.docker("service", "scale", "--detach", f"{self.service(RESOURCE)}={replicas}")
        self.replicas = replicas
        self.wait_ready()

    def kill_redis(self) -> None:
        """SIGKILL Redis's container; its restart policy (`none`) keeps it down."""
        self.close()
        self.docker("kill", "-s", "KILL", self._redis_container())

    def pause_redis(self) -> None:
        self.docker("pause", self._redis_container())

    def resume_redis(self) -> None:
        self.docker("unpause", self._redis_container())

    def start_redis(self) -> None:
        """A new Redis task (`docker service update --force`), on the same volume."""
        self.docker("service", "update", "--detach", "--force", self.service(REDIS))
        self.wait_redis()

    def wait_redis(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            for container in self.containers(REDIS):
                out = self.docker("exec", container, "redis-cli", "ping", check=False, timeout_s=10)
                if "PONG" in out:
                    return
            if time.monotonic() > deadline:
                raise SwarmError(f"redis did not answer PING in {timeout_s:.0f} s")
            time.sleep(0.2)

    # --- auth-service faults: a freeze only ----------------------------------------------
    # No kill_auth: swarm restarts a dead auth task itself (`restart_policy: any`), so "down
    # until start_auth" cannot hold. A frozen task is not restarted unless it stays frozen
    # past its healthcheck's retries (5 x HEALTHCHECK_INTERVAL, 2 s: about 10 s); a longer
    # --outage would measure swarm replacing it.
    def pause_auth(self) -> None:
        """Freeze every auth task's container (cgroup freezer)."""
        for container in self.containers(AUTH):
            self.docker("pause", container)

    def resume_auth(self) -> None:
        for container in self.containers(AUTH):
            state = self.docker("inspect", "-f", "{{.State.Status}}", container).strip()
            if state == "paused":
                self.docker("unpause", container)

    def start_auth(self, timeout_s: float = 60.0) -> None:
        """Return once the gateway reaches an auth task again (auth is not published)."""
        deadline = time.monotonic() + timeout_s
        while http_status(f"{self.gateway_url}/auth/.well-known/jwks.json") != 200:
            if time.monotonic() > deadline:
                raise SwarmError("the auth service did not answer through the gateway")
            time.sleep(0.2)

    # --- what samplers read ----------------------------------------------------------------
    def redis_info(self) -> dict[str, str]:
        out = self.docker("exec", self._redis_container(), "redis-cli", "INFO", "all")
        return parse_redis_info(out)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU of each task's container (cgroup accounting): redis, auth, gateway and
        resource-N by task slot."""
        usage: dict[str, float] = {}
        for name in (REDIS, AUTH, GATEWAY, RESOURCE):
            for container in self.containers(name):
                seconds = _cgroup_cpu_seconds(container)
                if seconds is None:
                    continue
                component = name
                if name == RESOURCE:
                    slot = self.docker(
                        "inspect", "-f",
                        '{{index .Config.Labels "com.docker.swarm.task.name"}}', container,
                    ).strip()  # fmt: skip
                    component = f"{RESOURCE}-{slot.split('.')[1] if '.' in slot else container}"
                usage[component] = usage.get(component, 0.0) + seconds
        return usage

    def metrics_pages(self) -> list[str]:
        pages = []
        for container in self.containers(RESOURCE):
            out = self.docker(
                "exec", container, "python", "-S", "-c", _METRICS_PROBE, check=False, timeout_s=20
            )
            if out:
                pages.append(out)
        return pages
