"""ComposeTarget: the `docker compose` stack, the `compose` target of the harness.

It implements authbench.targets.base.Deployment, as LocalCluster (targets/local.py) does
for processes, so
`authbench bench --target compose` and `authbench chaos --target compose` run the same
code as locally. `start()` either attaches to the running stack (`scale_to=None`: chaos,
which measures the stack as the user runs it) or brings it up with `env` and `scale_to`
replicas (the bench, per group); `stop()` leaves the stack running, with Redis running
again. Everything goes through the real `docker compose` CLI (v2) and `docker` itself;
nothing here talks to the engine's API directly.

    target = ComposeTarget()                 # project "authbench" in the project root
    target.up(replicas=3)                    # build if needed, start, wait until healthy
    target.scale(5)                          # `up -d --scale resource=5`, gateway untouched
    target.kill_redis(); target.start_redis()
    target.redis_info()["instantaneous_ops_per_sec"]
    target.cpu_seconds()                     # {"redis": 1.2, "resource-1": 12.3, ...}
    target.down()                            # containers, network and volumes

With `store=CLUSTER` (--store cluster:3) every command also reads docker-compose.cluster.yml:
the shards on fixed addresses, which `kill_shard`/`start_shard` need.

Compose variables (BASE_IMAGE, REDIS_IMAGE, JWT_REVOCATION, REDIS_APPENDONLY, ...; see
.env.example) come from `env`, then the process environment, then the project's `.env`.
On a registry-less host, when BASE_IMAGE/REDIS_IMAGE are not set and the images made by
`scripts/build-base-images.sh` exist, those are used.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import json
import os
import secrets
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from authbench.process import PROJECT_ROOT
from authbench.stores.replicas import PRIMARY_NAME, REPLICAS_DEFAULT_RENEW_INTERVAL_S, replica_name
from authbench.targets.base import (
    SENTINEL,
    SINGLE_REDIS,
    Deployment,
    DeploymentError,
    NotSupported,
    StoreTopology,
    http_status,
    redact,
)
from authbench.targets.nginx import GATEWAYS
from authcore.assertion import generate_keys

DEFAULT_PROJECT = "authbench"
REDIS_SERVICE = "redis"
AUTH_SERVICE = "auth"
RESOURCE_SERVICE = "resource"
LOAD_PROFILE = "load"
# Store distance: the delay-proxy container between the services and Redis (profile
# store-proxy), which the services reach when SERVICES_REDIS_URL names it.
STORE_PROXY_PROFILE = "store-proxy"
PROXY_SERVICE = "redis-proxy"
PROXY_URL = "redis://redis-proxy:6379/0"
PROXY_CONTROL_FILE = "/tmp/delay_ms"  # noqa: S108 - inside the proxy's own container
# Mode opaque's client credential (authbench.modes OPAQUE.requires): see up().
INTROSPECT_SECRET = "INTROSPECT_SECRET"  # noqa: S105 - the setting's name, not a secret
# --store sentinel: the profile `sentinel` adds a replica of `redis` and three Sentinels,
# and the services are told to ask the Sentinels (REDIS_SENTINELS) for the primary.
SENTINEL_PROFILE = "sentinel"
REPLICA_SERVICE = "redis-replica"
SENTINEL_SERVICES = ("sentinel-1", "sentinel-2", "sentinel-3")
SENTINEL_PORT = 26379
SENTINEL_ADDRESSES = ",".join(f"{name}:{SENTINEL_PORT}" for name in SENTINEL_SERVICES)
DATA_SERVICES = (REDIS_SERVICE, REPLICA_SERVICE)  # the Sentinel set's data nodes
# --store cluster:3 (issue 17): the profile `cluster` runs three Redis Cluster shards (a
# fixed number: compose names services, it does not count them) and a one-shot that forms
# the cluster; the services get REDIS_CLUSTER_NODES, the setting the local target gives.
CLUSTER_PROFILE = "cluster"
SHARD_SERVICES = ("redis-shard-1", "redis-shard-2", "redis-shard-3")
CLUSTER = StoreTopology("cluster", len(SHARD_SERVICES))
CLUSTER_NODES = ",".join(f"{name}:6379" for name in SHARD_SERVICES)
# The harness runs the profile with docker-compose.cluster.yml over the compose file: the
# shards on a network of their own (`shards`), each on a fixed address CLUSTER_NET.(10+N),
# and the services told them by address. A SIGKILLed shard started again then comes back
# where its peers' nodes files and the services' slot maps look for it (without the file,
# on whatever address the engine has free); shard-kill needs that (kill_shard checks).
CLUSTER_FILE = "docker-compose.cluster.yml"
SHARDS_NETWORK = "shards"
CLUSTER_NET = "CLUSTER_NET"  # the variable: the first three octets of the shards' /24
# Where a free /24 for CLUSTER_NET is looked for, each project from its own start: the
# ends of the engine's two default pools (172.17-31.0.0/16, then 192.168.0.0/16 in /20s),
# which it reaches last. It hands pools out in turn, not the lowest free one (a network
# made here got 192.168.128.0/20 with only 172.17.0.0/16 in use), so one of them may hold
# a whole /16 of the first range; it never hands out a pool that overlaps one in use.
CLUSTER_NET_CANDIDATES = tuple(f"172.31.{third}" for third in range(200, 251)) + tuple(
    f"192.168.{third}" for third in range(240, 256)
)
# --store replicas:2 (issue 17 item 6): the profile `replicas` runs two read replicas of
# `redis` (again a fixed number); the services get REDIS_READ_REPLICAS and a renewal
# interval (SESSION_RENEW_INTERVAL_S), as the local target gives them.
READ_REPLICAS_PROFILE = "replicas"
READ_REPLICA_SERVICES = (replica_name(0), replica_name(1))
READ_REPLICAS = StoreTopology("replicas", read_replicas=len(READ_REPLICA_SERVICES))
READ_REPLICAS_SETTING = ",".join(f"{name}:6379" for name in READ_REPLICA_SERVICES)
# --gateway nginx (issue 15): the profile `nginx` runs Debian's nginx as the service
# gateway-nginx on the gateway's port, and ours (`gateway`) is scaled to 0; auth then
# holds the assertion signing key (AUTH_EDGE_ASSERTION_KEY) for nginx's auth_request.
NGINX_PROFILE = "nginx"
GATEWAY_SERVICE = "gateway"
NGINX_SERVICE = "gateway-nginx"
# Every profile the harness may start: what ps, logs and down must see too.
HARNESS_PROFILES = (
    LOAD_PROFILE, STORE_PROXY_PROFILE, SENTINEL_PROFILE, CLUSTER_PROFILE, READ_REPLICAS_PROFILE,
    NGINX_PROFILE,
)  # fmt: skip
# What scripts/build-base-images.sh tags; used only when the variables are not set.
LOCAL_BASE_IMAGES = {
    "BASE_IMAGE": "authbench/base-python:local",
    "LOAD_BASE_IMAGE": "authbench/base-python-load:local",
    "REDIS_IMAGE": "authbench/redis:local",
    "NGINX_IMAGE": "authbench/nginx:local",
}

_CGROUP_USAGE_FILES = (
    # (path pattern, unit per second): cgroup v1 (cgroupfs and systemd drivers), then v2.
    ("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage", 1e9),
    ("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage", 1e9),
    ("/sys/fs/cgroup/cpu,cpuacct/system.slice/docker-{id}.scope/cpuacct.usage", 1e9),
    ("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat", 1e6),
    ("/sys/fs/cgroup/docker/{id}/cpu.stat", 1e6),
)


class ComposeError(DeploymentError):
    """A compose or docker command failed; the message carries its output."""


@dataclass(frozen=True)
class Container:
    """One container of the project, as `docker compose ps` reports it."""

    id: str
    name: str
    service: str
    state: str  # running, exited, paused, ...
    health: str  # healthy, unhealthy, starting, or "" without a healthcheck
    exit_code: int


@dataclass(frozen=True)
class LocustRun:
    """A finished headless Locust run of the `load` profile."""

    exit_code: int
    csv_dir: Path  # on the host: <results dir>/<run name>/ with locust_stats.csv, ...
    log: str
    workers: int  # worker containers that took part


# Fetch /metrics from inside a replica container (its port is not published).
_METRICS_PROBE = (
    "import sys, urllib.request; "
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8101/metrics', timeout=5)"
    ".read().decode())"
)


@dataclass
class ComposeTarget(Deployment):
    """One compose project of this repository's docker-compose.yml.

    `project_name` keeps stacks apart (tests use their own); `env` holds compose
    variables for every command this object runs (GATEWAY_PORT, JWT_REVOCATION, ...).
    """

    target: ClassVar[str] = "compose"

    project_dir: Path = PROJECT_ROOT
    project_name: str = field(
        default_factory=lambda: os.environ.get("COMPOSE_PROJECT_NAME", DEFAULT_PROJECT)
    )
    env: dict[str, str] = field(default_factory=dict, repr=False)  # secrets, some of it
    command_timeout_s: float = 300.0
    scale_to: int | None = None  # start(): None attaches; N: `up` with `env`, N replicas
    # Store distance: None, the services talk to Redis; a number (ms each way, switched on
    # by slow_redis), they go through the redis-proxy container (profile store-proxy).
    redis_delay_ms: float | None = None
    # single: the one `redis`; sentinel: the profile `sentinel` too, and the services ask
    # the Sentinels. Attaching (scale_to=None), start() reads it from the running services.
    store: StoreTopology = SINGLE_REDIS
    # What answers at the gateway's port (authbench.targets.nginx GATEWAYS): ours, or nginx
    # (the profile `nginx`). Attaching, start() reads it from the running containers.
    gateway: str = "ours"
    _base_images_checked: bool = field(default=False, init=False, repr=False)
    _introspect_checked: bool = field(default=False, init=False, repr=False)
    _cluster_net_checked: bool = field(default=False, init=False, repr=False)
    _fixed_shards: list[str | None] | None = field(default=None, init=False, repr=False)
    _killed: str | None = field(default=None, init=False, repr=False)  # a SIGKILLed data node
    _addresses: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    # Attached: the environment the running replicas were started with (settings, store).
    _running: dict[str, str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.gateway not in GATEWAYS:
            raise ValueError(f"compose: --gateway {self.gateway}: choose from {GATEWAYS}")
        if self.redis_delay_ms is not None:
            self.env.setdefault("SERVICES_REDIS_URL", PROXY_URL)
        if self.store.kind == "cluster" and self.store != CLUSTER:
            raise ValueError(
                f"compose: --store {self.store}: the profile `cluster` has a fixed "
                f"{CLUSTER.shards} shards; use --store {CLUSTER} (or --target local for "
                "other shard counts)"
            )
        if self.store.kind == "replicas" and self.store != READ_REPLICAS:
            raise ValueError(
                f"compose: --store {self.store}: the profile `replicas` has a fixed "
                f"{READ_REPLICAS.read_replicas} read replicas; use --store {READ_REPLICAS} (or "
                "--target local for other counts)"
            )
        if self.store.kind not in ("single", "sentinel", "cluster", "replicas"):
            raise ValueError(
                f"compose has no --store {self.store} (single, sentinel, {CLUSTER}, "
                f"{READ_REPLICAS})"
            )
        if self.store == READ_REPLICAS:
            if self.redis_delay_ms is not None:
                raise ValueError(f"compose: --store {READ_REPLICAS} has no delay proxy")
            self.env.setdefault("REDIS_READ_REPLICAS", READ_REPLICAS_SETTING)
            # As the local target: reads go to the replicas unless told otherwise.
            self.env.setdefault("SESSION_RENEW_INTERVAL_S", str(REPLICAS_DEFAULT_RENEW_INTERVAL_S))
        if self.store == CLUSTER and self.redis_delay_ms is not None:
            raise ValueError(f"compose: --store {CLUSTER} has no delay proxy")
        if self.store == SENTINEL:
            if self.redis_delay_ms is not None:
                raise ValueError("compose: --store sentinel has no delay proxy")
            self.env.setdefault("REDIS_SENTINELS", SENTINEL_ADDRESSES)

    # --- Deployment: life -------------------------------------------------------------
    def start(self) -> None:
        if self.scale_to is not None:
            self.up(replicas=self.scale_to, build=False)
        elif not self.is_up():
            raise ComposeError(
                f"the compose stack is not answering at {self.gateway_url}/readyz; "
                "start it first: docker compose up -d --wait"
            )
        else:
            # What the running services were given, whatever this process's variables say.
            self._running = self.running_env(RESOURCE_SERVICE)
            self.gateway = "nginx" if self.containers(NGINX_SERVICE) else "ours"
            if self._running.get("REDIS_CLUSTER_NODES"):
                store = CLUSTER
            elif self._running.get("REDIS_READ_REPLICAS"):
                count = len(self._running["REDIS_READ_REPLICAS"].split(","))
                store = StoreTopology("replicas", read_replicas=count)
            elif self._running.get("REDIS_SENTINELS"):
                store = SENTINEL
            else:
                store = SINGLE_REDIS
            if store != self.store:
                self.store = store
                self.__dict__.pop("config", None)  # resolved with another file set

    def stop(self) -> None:
        """Leave the stack running (it is the user's), with Redis running again (with
        Sentinels: a killed data node back as a replica)."""
        if self.store == SENTINEL:
            self.rejoin_redis()
            return
        if self.store == CLUSTER:
            for index, service in enumerate(SHARD_SERVICES):
                if all(c.state != "running" for c in self.containers(service, all=True)):
                    self.start_shard(index)  # left killed by an interrupted scenario
            return
        states = {c.state for c in self.containers(REDIS_SERVICE, all=True)}
        if "paused" in states:
            self.resume_redis()
        elif "running" not in states:
            self.start_redis()

    def describe(self) -> str:
        store = {
            SENTINEL: " (Redis primary, replica, 3 Sentinels)",
            CLUSTER: f" (Redis Cluster of {CLUSTER.shards} shards)",
            READ_REPLICAS: f" (Redis primary, {READ_REPLICAS.read_replicas} read replicas)",
        }.get(self.store, "")
        gateway = " (nginx at the gateway's port)" if self.gateway == "nginx" else ""
        return f"compose project {self.project_name} at {self.gateway_url}{store}{gateway}"

    def running_env(self, service: str) -> dict[str, str]:
        """The environment a running container of `service` was started with."""
        ids = [c.id for c in self.containers(service)]
        if not ids:
            raise ComposeError(f"no running container of {service}")
        out = self._docker("inspect", "--format", "{{json .Config.Env}}", ids[0])
        pairs = json.loads(out) or []
        return dict(pair.split("=", 1) for pair in pairs if "=" in pair)

    # --- Deployment: where it is --------------------------------------------------------
    @property
    def auth_url(self) -> str:
        """Where the auth API's paths (`/auth/...`) answer: auth is not published, and the
        gateway forwards `/auth/*` to it."""
        return self.gateway_url

    @property
    def redis_address(self) -> str | None:
        return None  # not published; INFO goes through redis-cli in the container

    @property
    def services_redis_url(self) -> str | None:
        """Redis's service address on the stack's network, as the services are given it
        (docker-compose.yml's REDIS_URL: the redis-proxy container's with a store delay)."""
        return self.settings.get("REDIS_URL")

    @property
    def proxied(self) -> bool:
        """Whether the services reach Redis through the redis-proxy container."""
        return self.redis_delay_ms is not None or self.services_redis_url == PROXY_URL

    def supports(self, operation: str) -> bool:
        if operation == "slow_redis" and not self.proxied:
            return False  # there is no proxy to slow: the services talk to Redis itself
        if self.unsupported_why(operation):
            return False
        return super().supports(operation)

    def unsupported_why(self, operation: str) -> str:
        if operation in ("kill_shard", "start_shard") and self.store == CLUSTER:
            unfixed = self.unfixed_shards()
            if unfixed:  # a restarted shard could come back elsewhere: see kill_shard
                return (
                    f"{', '.join(unfixed)} have no fixed address; start the stack with "
                    f"`-f docker-compose.yml -f {CLUSTER_FILE}` (as --store {CLUSTER} does)"
                )
        return ""

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """The stack's resolved configuration (`docker compose config`): every variable as
        compose substitutes it, so the settings read here are what the containers got."""
        config: dict[str, Any] = json.loads(self.compose("config", "--format", "json").stdout)
        return config

    @property
    def settings(self) -> Mapping[str, str]:
        """The replicas' settings as compose resolves them; secrets only as set or not
        (base.redact): INTROSPECT_SECRET set is what serves mode opaque."""
        env = self.config["services"][RESOURCE_SERVICE].get("environment") or {}
        if self._running is not None:  # attached: what the running replicas were given
            env = {k: self._running.get(str(k), v) for k, v in env.items()}
        return redact({str(k): str(v) for k, v in env.items()})

    @property
    def redis_persistence(self) -> str:
        command = [str(arg) for arg in self.config["services"][REDIS_SERVICE].get("command") or []]
        flags = dict(itertools.pairwise(command))
        return "aof" if flags.get("--appendonly") == "yes" else "none"

    # --- where things are -------------------------------------------------------------
    @property
    def gateway_port(self) -> int:
        return int(self._variable("GATEWAY_PORT") or 8080)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def results_dir(self) -> Path:
        """The host folder mounted as /results in locust-master."""
        path = Path(self._variable("RESULTS_DIR") or "./results")
        return path if path.is_absolute() else self.project_dir / path

    # --- running commands -------------------------------------------------------------
    def compose(
        self,
        *args: str,
        timeout_s: float | None = None,
        check: bool = True,
        profiles: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        """`docker compose -p NAME ARGS...` in the project dir; ComposeError when it fails."""
        argv = ["docker", "compose", "-p", self.project_name]
        if self.store == CLUSTER:
            argv += ["-f", "docker-compose.yml", "-f", CLUSTER_FILE]
        for profile in profiles:
            argv += ["--profile", profile]
        return self._run([*argv, *args], timeout_s=timeout_s, check=check)

    def _docker(self, *args: str, timeout_s: float = 30.0, check: bool = True) -> str:
        """`docker ARGS...` (no compose: a tenth of the time, for polling); its stdout."""
        return self._run(["docker", *args], timeout_s=timeout_s, check=check).stdout

    def _run(
        self,
        argv: list[str],
        *,
        timeout_s: float | None = None,
        check: bool = True,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                argv,
                cwd=self.project_dir,
                env=self._process_env(),
                **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
                capture_output=True,
                text=True,
                timeout=timeout_s or self.command_timeout_s,
                check=False,
            )
        except FileNotFoundError as err:
            raise ComposeError(f"{argv[0]} is not installed") from err
        except subprocess.TimeoutExpired as err:
            raise ComposeError(f"`{' '.join(argv)}` did not finish in {err.timeout:.0f} s") from err
        if check and done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-4000:]
            raise ComposeError(f"`{' '.join(argv)}` exited {done.returncode}:\n{output}")
        return done

    def _process_env(self) -> dict[str, str]:
        if not self._introspect_checked:
            self._introspect_checked = True
            self._adopt_introspect_secret()
        if self._variable("VALIDATE_AT") == "gateway" and not self._variable("EDGE_ASSERTION_KEY"):
            # Edge validation: one assertion key pair for this stack's lifetime; compose
            # hands the signing key to the gateway only (docker-compose.yml).
            alg = self._variable("EDGE_ASSERTION_ALG") or "EdDSA"
            signing, verifying = generate_keys(alg)
            self.env.update(EDGE_ASSERTION_KEY=signing, EDGE_ASSERTION_VERIFY_KEY=verifying)
            if self.gateway == "nginx":  # nginx signs nothing: its auth_request's checker does
                self.env.update(EDGE_ASSERTION_KEY="", AUTH_EDGE_ASSERTION_KEY=signing)
        if self.store == CLUSTER and not self._cluster_net_checked:
            self._cluster_net_checked = True
            if not self._variable(CLUSTER_NET):
                self.env[CLUSTER_NET] = self._cluster_net()
        env = dict(os.environ)
        env.update(self.env)
        if not self._base_images_checked:
            self._base_images_checked = True
            missing = [k for k in LOCAL_BASE_IMAGES if not self._variable(k)]
            if missing and _images_present([LOCAL_BASE_IMAGES[k] for k in missing]):
                self.env.update({k: LOCAL_BASE_IMAGES[k] for k in missing})
        env.update(self.env)
        return env

    def _adopt_introspect_secret(self) -> None:
        """Mode opaque's client credential (INTROSPECT_SECRET, shared by auth and the
        replicas), when no variable names one: the running stack's own (even none: then
        `settings` says truthfully that this stack does not serve opaque), or, with no
        stack running, a random one for this object's lifetime that `up` hands to the
        services (as LocalCluster does). Never written to a file."""
        if self._variable(INTROSPECT_SECRET):
            return
        try:  # (running_env's own compose commands find the flag set: no recursion)
            running = self.running_env(RESOURCE_SERVICE)
        except ComposeError:  # none runs, or no engine to ask
            self.env[INTROSPECT_SECRET] = secrets.token_urlsafe(32)
        else:
            self.env[INTROSPECT_SECRET] = running.get(INTROSPECT_SECRET, "")

    def _cluster_net(self) -> str:
        """CLUSTER_NET for this project: its `shards` network's, when it has one (a running
        stack), else the first candidate /24 that no network of the engine overlaps,
        starting at a place of the project's own (two stacks starting at once)."""
        own = _network_subnets([f"{self.project_name}_{SHARDS_NETWORK}"])
        if own:
            return own[0].rsplit(".", 1)[0]
        taken = [ipaddress.ip_network(net) for net in _network_subnets()]
        start = zlib.crc32(self.project_name.encode()) % len(CLUSTER_NET_CANDIDATES)
        for prefix in CLUSTER_NET_CANDIDATES[start:] + CLUSTER_NET_CANDIDATES[:start]:
            subnet = ipaddress.ip_network(f"{prefix}.0/24")
            if not any(subnet.overlaps(net) for net in taken):
                return prefix
        raise ComposeError(
            "no free /24 for the shards' network in 172.31.200-250.0 or 192.168.240-255.0; "
            f"set {CLUSTER_NET} to the first three octets of one"
        )

    def _variable(self, name: str) -> str:
        """A compose variable as compose sees it: env, then process env, then .env."""
        if name in self.env:
            return self.env[name]
        if name in os.environ:
            return os.environ[name]
        return _dotenv(self.project_dir / ".env").get(name, "")

    # --- is there an engine at all? ------------------------------------------------------
    @staticmethod
    def engine_problem() -> str | None:
        """Why docker compose cannot be used here, or None when it can."""
        if shutil.which("docker") is None:
            return "the docker CLI is not installed"
        checks = (
            (["docker", "info", "--format", "{{.ServerVersion}}"], "the Docker engine"),
            (["docker", "compose", "version", "--short"], "docker compose v2"),
        )
        for argv, what in checks:
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
            except subprocess.TimeoutExpired:
                return f"{what} did not answer within 20 s"
            if done.returncode != 0:
                return f"{what} is not available: {(done.stderr or done.stdout).strip()[:300]}"
        return None

    # --- lifecycle --------------------------------------------------------------------
    def up(
        self,
        replicas: int | None = None,
        *,
        build: bool = True,
        wait: bool = True,
        timeout_s: float = 240.0,
    ) -> None:
        """`docker compose up -d [--wait]`: the stack without the load profile.

        With `build`, the service image is (re)built first: `auth` builds it and `resource`
        and `gateway` run the same `image:` (with `pull_policy: never`, a plain `up` would
        build only a missing image and run stale code).
        """
        self._process_env()  # adopts the running stack's INTROSPECT_SECRET, if any
        if not self._variable(INTROSPECT_SECRET):
            # This `up` (re)configures the stack: one that serves every mode, opaque too.
            self.env[INTROSPECT_SECRET] = secrets.token_urlsafe(32)
            self.__dict__.pop("config", None)  # resolved before: without the secret
        if build:
            self.compose("build", "auth", timeout_s=timeout_s + 600)
        store_profiles = {
            SENTINEL: (SENTINEL_PROFILE,),
            CLUSTER: (CLUSTER_PROFILE,),
            READ_REPLICAS: (READ_REPLICAS_PROFILE,),
        }
        profiles: tuple[str, ...] = store_profiles.get(self.store, ())
        if self.redis_delay_ms is not None:
            # The proxy runs the load image (the harness's delay proxy), built by
            # locust-master; a cached build takes a second.
            self.compose("build", "locust-master", profiles=(LOAD_PROFILE,), timeout_s=900)
            profiles = (STORE_PROXY_PROFILE,)
        if self.gateway == "nginx":
            # gateway-nginx takes the gateway's port; ours runs no container meanwhile.
            profiles = (*profiles, NGINX_PROFILE)
        elif self.containers(NGINX_SERVICE, all=True):
            # Ours again after nginx: free the port (an inactive profile's container stays).
            self.compose("rm", "-f", "-s", NGINX_SERVICE, profiles=(NGINX_PROFILE,))
        args = ["up", "-d", "--remove-orphans"]
        if self.gateway == "nginx":
            args += ["--scale", f"{GATEWAY_SERVICE}=0"]
        if replicas is not None:
            args += ["--scale", f"{RESOURCE_SERVICE}={replicas}"]
        if wait:
            args += ["--wait", "--wait-timeout", str(int(timeout_s))]
        self.compose(*args, timeout_s=timeout_s + 60, profiles=profiles)

    def down(self, *, volumes: bool = True, timeout_s: float = 120.0) -> None:
        """Remove every container of the project (load profile included) and its network."""
        args = ["down", "--remove-orphans", "--timeout", "5"]
        if volumes:
            args.append("--volumes")
        self.compose(*args, timeout_s=timeout_s, profiles=HARNESS_PROFILES)

    def scale(self, replicas: int, *, wait: bool = True, timeout_s: float = 120.0) -> None:
        """Run `replicas` resource containers; nothing else is recreated or restarted."""
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        args = [
            "up",
            "-d",
            "--no-deps",
            "--no-recreate",
            "--scale",
            f"{RESOURCE_SERVICE}={replicas}",
        ]
        if wait:
            args += ["--wait", "--wait-timeout", str(int(timeout_s))]
        self.compose(*args, RESOURCE_SERVICE, timeout_s=timeout_s + 60)

    def containers(self, service: str | None = None, *, all: bool = False) -> list[Container]:
        """The project's containers (running ones unless `all`), optionally of one service."""
        args = ["ps", "--format", "json"]
        if all:
            args.append("--all")
        if service:
            args.append(service)
        out = self.compose(*args, profiles=HARNESS_PROFILES).stdout
        return [_container(row) for row in _json_rows(out)]

    def replicas(self) -> int:
        """How many resource containers are running."""
        return sum(c.state == "running" for c in self.containers(RESOURCE_SERVICE))

    def is_up(self) -> bool:
        """True when the gateway answers /readyz with 200."""
        return http_status(f"{self.gateway_url}/readyz") == 200

    def logs(self, service: str | None = None, *, tail: int = 200) -> str:
        args = ["logs", "--no-color", "--tail", str(tail)]
        if service:
            args.append(service)
        return self.compose(*args, check=False, profiles=HARNESS_PROFILES).stdout

    # --- faults (same names as LocalCluster) ------------------------------------------
    def kill_redis(self) -> None:
        """SIGKILL the Redis container; it stays down (restart: "no") until start_redis."""
        self.compose("kill", "-s", "SIGKILL", REDIS_SERVICE)

    def slow_redis(self, delay_ms: float) -> None:
        """Delay the Redis link by `delay_ms` each way in the redis-proxy container (0: off):
        the control file, then SIGUSR1 (on) or SIGUSR2 (off) through the engine."""
        if not self.proxied:
            raise NotSupported(
                self.target, "slow_redis", "the services talk to Redis itself (no redis-proxy)"
            )
        if delay_ms > 0:
            write = f"open({PROXY_CONTROL_FILE!r}, 'w').write({f'{delay_ms:g}'!r})"
            self.compose("exec", "-T", PROXY_SERVICE, "python", "-S", "-c", write,
                         profiles=(STORE_PROXY_PROFILE,))  # fmt: skip
        signal = "SIGUSR1" if delay_ms > 0 else "SIGUSR2"
        self.compose("kill", "-s", signal, PROXY_SERVICE, profiles=(STORE_PROXY_PROFILE,))

    # --- auth-service faults (issue 15: mode opaque asks it on every read) ---------------
    def kill_auth(self) -> None:
        """SIGKILL every auth container; they stay down (a killed container is not
        restarted by `restart: on-failure`) until start_auth."""
        self.compose("kill", "-s", "SIGKILL", AUTH_SERVICE)

    def pause_auth(self) -> None:
        """Freeze the auth containers (cgroup freezer): connections open, nothing answered."""
        self.compose("pause", AUTH_SERVICE)

    def resume_auth(self) -> None:
        self.compose("unpause", AUTH_SERVICE)

    def start_auth(self, timeout_s: float = 60.0) -> None:
        """Start the auth containers again (a resumed one: no-op), then wait until the
        gateway reaches one (the auth service is not published to the host)."""
        self.compose("start", AUTH_SERVICE)
        deadline = time.monotonic() + timeout_s
        while http_status(f"{self.gateway_url}/auth/.well-known/jwks.json") != 200:
            if time.monotonic() > deadline:
                raise DeploymentError("the auth service did not answer through the gateway")
            time.sleep(0.2)

    def pause_redis(self) -> None:
        """Freeze Redis (cgroup freezer): connections stay open, nothing is answered."""
        self.compose("pause", REDIS_SERVICE)

    def resume_redis(self) -> None:
        self.compose("unpause", REDIS_SERVICE)

    def start_redis(self, wait: bool = True, timeout_s: float = 60.0) -> None:
        """Start the same Redis container again (same volume); no other service restarts."""
        self.compose("start", REDIS_SERVICE)
        if wait:
            self.wait_redis(timeout_s)

    def wait_redis(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            done = self.compose(
                "exec", "-T", REDIS_SERVICE, "redis-cli", "ping", check=False, timeout_s=10
            )
            if done.returncode == 0 and "PONG" in done.stdout:
                return
            if time.monotonic() > deadline:
                raise ComposeError(f"redis did not answer PING in {timeout_s:.0f} s")
            time.sleep(0.2)

    # --- store failover (--store sentinel, the profile `sentinel`) ---------------------
    def _container_of(self, service: str, *, all: bool = False) -> str:
        found = self.containers(service, all=all)
        if not found:
            raise ComposeError(f"no {'' if all else 'running '}container of {service}")
        return found[0].id

    def _node_cli(self, container: str, *args: str, port: int = 6379) -> str | None:
        """redis-cli in a container (None: it did not answer)."""
        done = self._run(
            ["docker", "exec", container, "redis-cli", "-p", str(port), *args],
            timeout_s=10, check=False,
        )  # fmt: skip
        return done.stdout if done.returncode == 0 and done.stdout.strip() else None

    def _node_addresses(self) -> dict[str, str]:
        """Every address a data node has had on the stack's network -> its service (the
        Sentinels name nodes by address; a killed container has none until it restarts)."""
        for service in DATA_SERVICES:
            for container in self.containers(service, all=True):
                out = self._docker(
                    "inspect", "--format",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container.id,
                )  # fmt: skip
                self._addresses.update({address: service for address in out.split()})
        return self._addresses

    def redis_primary(self) -> str:
        """The data node (`redis` or `redis-replica`) the Sentinels name as primary now."""
        master = self.settings.get("REDIS_SENTINEL_MASTER") or "authbench"
        for sentinel in SENTINEL_SERVICES:
            with contextlib.suppress(ComposeError):
                out = self._node_cli(
                    f"{self.project_name}-{sentinel}-1",  # compose's name: no `ps` per look
                    "SENTINEL", "get-master-addr-by-name", master, port=SENTINEL_PORT,
                )  # fmt: skip
                host = out.split()[0] if out else ""
                if host:
                    service = self._addresses.get(host) or self._node_addresses().get(host)
                    if service is None:
                        raise ComposeError(f"the Sentinels name {host}, not a data node")
                    return service
        raise ComposeError("no Sentinel named a primary")

    def kill_redis_primary(self) -> tuple[str, float]:
        """SIGKILL the primary's container through the engine; it stays down (restart:
        "no") until rejoin_redis. Returns its service and when `docker kill` was run (the
        lookup before it asks a Sentinel and the engine: a second or more when busy)."""
        if self.store != SENTINEL:
            raise NotSupported(self.target, "kill_redis_primary", "this stack has no Sentinels")
        primary = self.redis_primary()
        container = self._container_of(primary)
        killed_at = time.time()
        self._docker("kill", "--signal", "KILL", container)
        self._killed = primary
        return primary, killed_at

    def wait_redis_failover(self, old: str, timeout_s: float = 30.0) -> tuple[float, str]:
        """Until the Sentinels name the other data node and it answers ROLE as a master.
        Each look is a `docker exec` (~0.1 s on an idle engine): the times are that coarse."""
        deadline = time.monotonic() + timeout_s
        named_at: float | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(ComposeError):
                primary = self.redis_primary()
                if primary != old:
                    named_at = named_at or time.time()
                    role = self._node_cli(self._container_of(primary), "ROLE")
                    if role is not None and role.split()[0] == "master":
                        return named_at, primary
            time.sleep(0.05)
        raise ComposeError(f"no failover from {old} within {timeout_s:g} s")

    def rejoin_redis(self, timeout_s: float = 60.0) -> None:
        """Start the killed data node's container again, as a replica of the current
        primary, and return once it is in sync (as a supervisor would: started alone, it
        would be an empty primary until the Sentinels demote it)."""
        killed, self._killed = self._killed, None
        if killed is None:
            return
        container = self._container_of(killed, all=True)
        self._docker("start", container)
        primary = self.redis_primary()
        deadline = time.monotonic() + timeout_s
        while self._node_cli(container, "REPLICAOF", primary, "6379") is None:
            if time.monotonic() > deadline:
                raise ComposeError(f"{killed} did not answer after its restart")
            time.sleep(0.1)
        while "master_link_status:up" not in (self._node_cli(container, "INFO") or ""):
            if time.monotonic() > deadline:
                raise ComposeError(f"{killed} did not sync from {primary} in {timeout_s:g} s")
            time.sleep(0.1)

    def store_description(self) -> dict[str, object]:
        """The store's kind, and for Sentinels the tuning the compose file gives them."""
        if self.store == CLUSTER:
            return {
                "kind": "cluster",
                "shards": CLUSTER.shards,
                "services": list(SHARD_SERVICES),
                "replicas_per_shard": 0,
                "cluster_require_full_coverage": "no",
                # docker-compose.cluster.yml: None where a shard has none
                "fixed_addresses": self.shard_addresses(),
            }
        if self.store == READ_REPLICAS:
            return {
                "kind": "replicas",
                "primary": REDIS_SERVICE,
                "read_replicas": list(READ_REPLICA_SERVICES),
                "replication": "asynchronous (replicaof), replica-read-only",
            }
        if self.store != SENTINEL:
            return super().store_description()
        out = self.compose("config", "--format", "json", profiles=(SENTINEL_PROFILE,)).stdout
        sentinel = json.loads(out)["services"][SENTINEL_SERVICES[0]]
        script = "\n".join(sentinel.get("command") or [])
        tuning = {}
        for line in script.splitlines():
            words = line.split()
            if words[:2] == ["sentinel", "monitor"]:
                tuning["quorum"] = int(words[-1])
            elif len(words) == 4 and words[0] == "sentinel":
                tuning[words[1].replace("-", "_")] = int(words[3])
        return {
            "kind": "sentinel",
            "data_nodes": list(DATA_SERVICES),
            "sentinels": list(SENTINEL_SERVICES),
            "down_after_milliseconds": tuning.get("down_after_milliseconds"),
            "failover_timeout_ms": tuning.get("failover_timeout"),
            "quorum": tuning.get("quorum"),
        }

    # --- read replicas (--store replicas:2, the profile `replicas`) -----------------------
    # Pausing only: a killed container's name stops resolving, and on a host whose
    # containers reach no outside DNS a service's lookup of it then blocks ~20 s (see the
    # Sentinel profile in docker-compose.yml), which would be that, not the replica's loss.
    def _read_replica(self, index: int) -> str:
        if self.store != READ_REPLICAS:
            raise NotSupported(self.target, "read replica faults", "this stack has none")
        if not 0 <= index < len(READ_REPLICA_SERVICES):
            raise ComposeError(f"there is no read replica {index + 1}")
        return READ_REPLICA_SERVICES[index]

    def pause_read_replica(self, index: int) -> None:
        """Freeze read replica `index` (cgroup freezer): connections stay open."""
        self.compose("pause", self._read_replica(index), profiles=(READ_REPLICAS_PROFILE,))

    def resume_read_replica(self, index: int) -> None:
        self.compose("unpause", self._read_replica(index), profiles=(READ_REPLICAS_PROFILE,))

    def read_replica_reads(self) -> dict[str, int | None]:
        """GET calls served so far by the primary and each read replica (INFO
        commandstats in each container); None for one that does not answer (paused)."""
        self._read_replica(0)
        found: dict[str, int | None] = {}
        nodes = {PRIMARY_NAME: REDIS_SERVICE} | {s: s for s in READ_REPLICA_SERVICES}
        running = {c.service: c.id for c in self.containers() if c.state == "running"}
        for name, service in nodes.items():
            container = running.get(service)
            out = self._node_cli(container, "INFO", "commandstats") if container else None
            calls = parse_redis_info(out).get("cmdstat_get", "") if out is not None else None
            if calls is None:
                found[name] = None
                continue
            fields = dict(part.split("=", 1) for part in str(calls).split(",") if "=" in part)
            found[name] = int(fields.get("calls", 0))
        return found

    # --- shards (--store cluster:3, the profile `cluster`) -------------------------------
    def store_services(self) -> tuple[str, ...]:
        """The services that run the store's redis-server (--redis-cpus caps each): the
        shards of a Redis Cluster, the primary and its read replicas, else `redis`."""
        if self.store == READ_REPLICAS:
            return (REDIS_SERVICE, *READ_REPLICA_SERVICES)
        return SHARD_SERVICES if self.store == CLUSTER else (REDIS_SERVICE,)

    def shard_of_keys(self, keys: list[str]) -> list[int]:
        """The shard (0-based, SHARD_SERVICES' order) serving each key: its slot by
        CLUSTER KEYSLOT, the slot's owner by CLUSTER NODES, the owner's address by the
        engine (the shards name each other by address)."""
        if self.store != CLUSTER:
            raise NotSupported(self.target, "shard_of_keys", "this stack has no Redis Cluster")
        ask = self._container_of(SHARD_SERVICES[0])
        addresses = {}
        for index, service in enumerate(SHARD_SERVICES):
            out = self._docker(
                "inspect", "--format",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                self._container_of(service, all=True),
            )  # fmt: skip
            addresses.update({address: index for address in out.split()})
        nodes = self._node_cli(ask, "CLUSTER", "NODES") or ""
        # One line per node: id ip:port@bus flags master ping pong epoch link slot-ranges...
        owners: list[tuple[int, int, int]] = []
        for line in nodes.splitlines():
            words = line.split()
            address = words[1].partition(":")[0] if len(words) > 1 else ""
            for taken in words[8:] if address in addresses else ():
                if not taken.startswith("["):  # [slot->-node]: a migration, not an owner
                    first, _, last = taken.partition("-")
                    owners.append((int(first), int(last or first), addresses[address]))
        found = []
        for key, slot in zip(
            keys, self.shard_cli(0, [["CLUSTER", "KEYSLOT", key] for key in keys]), strict=True
        ):
            owner = next((i for a, b, i in owners if a <= int(slot) <= b), None)
            if owner is None:
                raise ComposeError(f"no shard serves slot {slot} (key {key!r}): {nodes}")
            found.append(owner)
        return found

    def shard_addresses(self) -> list[str | None]:
        """Each shard's fixed address on the `shards` network (docker-compose.cluster.yml),
        None for a shard that has none (the stack was started without that file) or whose
        container does not exist. Read from the container's configuration, so a stopped
        shard has it too."""
        if self._fixed_shards is not None:
            return list(self._fixed_shards)
        found: list[str | None] = []
        for index in range(len(SHARD_SERVICES)):
            out = self._docker(
                "inspect", "--format", "{{json .NetworkSettings.Networks}}",
                self._shard_container(index), check=False,
            )  # fmt: skip
            networks: dict[str, Any] = json.loads(out.strip() or "null") or {}
            fixed = {
                name: (net.get("IPAMConfig") or {}).get("IPv4Address") or None
                for name, net in networks.items()
            }
            found.append(fixed.get(f"{self.project_name}_{SHARDS_NETWORK}"))
        if None not in found:  # a container's configured address never changes
            self._fixed_shards = found
        return found

    def _shard_container(self, index: int) -> str:
        """Shard `index`'s container by compose's own name (no `compose ps` per look: the
        fault's moment is taken before the lookup)."""
        return f"{self.project_name}-{SHARD_SERVICES[index]}-1"

    def unfixed_shards(self) -> list[str]:
        """The shards with no fixed address (empty: a killed one comes back where it was)."""
        return [
            service
            for service, address in zip(SHARD_SERVICES, self.shard_addresses(), strict=True)
            if address is None
        ]

    def kill_shard(self, index: int) -> None:
        """SIGKILL shard `index`'s container (0-based, SHARD_SERVICES' order); it stays down
        (restart: "no") until start_shard. Refused on a stack whose shards have no fixed
        address: started again, the shard would take whatever address the engine has free,
        and its peers (whose nodes files name it by address) and the services (whose slot
        maps do) would look for it where it was."""
        if self.store != CLUSTER:
            raise NotSupported(self.target, "kill_shard", "this stack has no Redis Cluster")
        why = self.unsupported_why("kill_shard")
        if why:
            raise NotSupported(self.target, "kill_shard", why)
        self._docker("kill", "--signal", "KILL", self._shard_container(index))

    def start_shard(self, index: int, timeout_s: float = 60.0) -> None:
        """Start shard `index`'s container again: same container, so the same nodes file
        (its node ID, its slots) and, with the fixed address, the same address; no
        persistence, so it comes back empty. Returns once it answers PING and every shard
        says cluster_state:ok and sees it connected, not failed (as the local target's
        ShardedCluster.restart waits for every node's cluster_state:ok)."""
        if self.store != CLUSTER:
            raise NotSupported(self.target, "start_shard", "this stack has no Redis Cluster")
        container = self._shard_container(index)
        self._docker("start", container)
        node_id = None
        deadline = time.monotonic() + timeout_s
        while node_id is None:
            node_id = (self._node_cli(container, "CLUSTER", "MYID") or "").strip() or None
            if time.monotonic() > deadline:
                raise ComposeError(f"{SHARD_SERVICES[index]} did not answer after its start")
            time.sleep(0.1)
        for each in map(self._shard_container, range(len(SHARD_SERVICES))):
            while not _sees_healthy(
                self._node_cli(each, "CLUSTER", "INFO") or "",
                self._node_cli(each, "CLUSTER", "NODES") or "",
                node_id,
            ):
                if time.monotonic() > deadline:
                    raise ComposeError(
                        f"{SHARD_SERVICES[index]} did not rejoin the cluster in {timeout_s:g} s"
                    )
                time.sleep(0.1)

    def shard_cli(self, index: int, commands: Sequence[Sequence[str]]) -> list[str]:
        """redis-cli in shard `index`'s container (0-based), the commands read from its
        stdin (one `docker exec` for all, not one each): one answer line per command."""
        if self.store != CLUSTER:
            raise NotSupported(self.target, "shard_cli", "this stack has no Redis Cluster")
        quoted = (
            " ".join('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"' for w in command)
            for command in commands
        )
        container = self._container_of(SHARD_SERVICES[index])
        done = self._run(
            ["docker", "exec", "-i", container, "redis-cli"],
            stdin="".join(line + "\n" for line in quoted), timeout_s=30,
        )  # fmt: skip
        answers = done.stdout.splitlines()
        if len(answers) != len(commands):
            raise ComposeError(f"redis-cli in {SHARD_SERVICES[index]}: {done.stdout}")
        return answers

    # --- measurements -----------------------------------------------------------------
    def redis_cli(self, *args: str, timeout_s: float = 10.0) -> str:
        """Run redis-cli inside the redis container (with Sentinels: the primary's; with a
        Redis Cluster: the first shard's) and return its output."""
        service = REDIS_SERVICE
        if self.store == SENTINEL:
            service = self.redis_primary()
        elif self.store == CLUSTER:
            service = SHARD_SERVICES[0]
        return self.compose("exec", "-T", service, "redis-cli", *args, timeout_s=timeout_s).stdout

    def redis_info(self) -> dict[str, str]:
        """`INFO all` as a flat dict (e.g. "total_commands_processed", "used_cpu_sys")."""
        return parse_redis_info(self.redis_cli("INFO", "all"))

    def redis_infos(self) -> dict[str, Mapping[str, Any]]:
        """INFO all of each shard (`redis-shard-N`) with a Redis Cluster, of the primary
        (`redis-primary`) and each read replica (`redis-replica-N`) with read replicas,
        else the one Redis's, as the local target gives them."""
        if self.store == READ_REPLICAS:
            found: dict[str, Mapping[str, Any]] = {PRIMARY_NAME: self.redis_info()}
            for service in READ_REPLICA_SERVICES:
                out = self.compose("exec", "-T", service, "redis-cli", "INFO", "all").stdout
                found[service] = parse_redis_info(out)
            return found
        if self.store != CLUSTER:
            return {"redis": self.redis_info()}
        return {
            service: parse_redis_info(
                self.compose("exec", "-T", service, "redis-cli", "INFO", "all").stdout
            )
            for service in SHARD_SERVICES
        }

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time each component has used so far (cgroup accounting): redis, auth,
        gateway, resource-N (the N of its container name), load containers by service.

        Read from the host's cgroup files, so measuring costs the containers nothing;
        take it before and after a run and subtract. Containers whose cgroup file is not
        found (a remote engine, an unknown layout) are left out.
        """
        usage: dict[str, float] = {}
        for container in self.containers():
            seconds = _cgroup_cpu_seconds(container.id)
            if seconds is None:
                continue
            component = container.service
            if component == NGINX_SERVICE:  # in the gateway's place, measured as it
                component = GATEWAY_SERVICE
            if component == REDIS_SERVICE and self.store == READ_REPLICAS:
                component = PRIMARY_NAME  # beside redis-replica-N, as the local target has it
            if component == RESOURCE_SERVICE:
                component = f"{RESOURCE_SERVICE}-" + container.name.rsplit("-", 1)[-1]
            usage[component] = usage.get(component, 0.0) + seconds
        return usage

    def metrics_pages(self) -> list[str]:
        """Each running replica's /metrics, fetched inside its container."""
        pages = []
        for container in self.containers(RESOURCE_SERVICE):
            if container.state != "running":
                continue
            try:
                done = subprocess.run(
                    ["docker", "exec", container.id, "python", "-S", "-c", _METRICS_PROBE],
                    capture_output=True, text=True, timeout=20, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0:
                pages.append(done.stdout)
        return pages

    # --- load (profile `load`) ----------------------------------------------------------
    def run_locust(
        self,
        *,
        run_name: str,
        users: int = 20,
        spawn_rate: float = 10,
        run_time: str = "30s",
        workers: int = 2,
        user_classes: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        timeout_s: float = 600.0,
    ) -> LocustRun:
        """A headless Locust run in containers (master + `workers`) against the gateway.

        The CSVs go to `<results dir>/<run_name>/locust_*.csv` on the host. The master runs
        as this process's uid (so the files are yours), or as the image's user when that
        uid is root, in which case the folder is made writable for it.
        """
        csv_dir = self.results_dir / run_name
        csv_dir.mkdir(parents=True, exist_ok=True)
        uid = os.getuid()
        if uid == 0:
            csv_dir.chmod(0o777)  # the image's unprivileged user writes here
        env = {
            "LOCUST_RUN": run_name,
            "LOCUST_USERS": str(users),
            "LOCUST_SPAWN_RATE": str(spawn_rate),
            "LOCUST_RUN_TIME": run_time,
            "LOCUST_WORKERS": str(workers),
            "LOCUST_USER_CLASSES": " ".join(user_classes),
            "LOCUST_UID": str(uid) if uid != 0 else self._variable("LOCUST_UID") or "10001",
            **(extra_env or {}),
        }
        with self._extra_env(env):
            # The load image is built by locust-master; `up` alone would keep a stale one.
            self.compose("build", "locust-master", profiles=(LOAD_PROFILE,), timeout_s=900)
            # Old runs' containers would otherwise be reused with their old settings.
            self.compose(
                "rm", "-f", "-s", "locust-master", "locust-worker", profiles=(LOAD_PROFILE,)
            )
            self.compose(
                # --no-deps: an `up` that pulled in the dependencies would also put
                # `resource` back to its configured count, undoing a scale.
                "up", "-d", "--no-deps", "--scale", f"locust-worker={workers}",
                "locust-master", "locust-worker",
                profiles=(LOAD_PROFILE,), timeout_s=180,
            )  # fmt: skip
            done = self.compose(
                "wait", "locust-master", profiles=(LOAD_PROFILE,), timeout_s=timeout_s, check=False
            )
            log = self.logs("locust-master", tail=100)
            workers_seen = len(self.containers("locust-worker", all=True))
            self.compose(
                "rm", "-f", "-s", "locust-master", "locust-worker", profiles=(LOAD_PROFILE,)
            )
        # `compose wait` exits with the container's own exit code.
        exit_code = done.returncode
        return LocustRun(exit_code, csv_dir, log, workers_seen)

    @contextlib.contextmanager
    def _extra_env(self, extra: Mapping[str, str]) -> Iterator[None]:
        saved = dict(self.env)
        self.env.update(extra)
        try:
            yield
        finally:
            self.env = saved


def _sees_healthy(info: str, nodes: str, node_id: str) -> bool:
    """Whether a shard's CLUSTER INFO says ok and its CLUSTER NODES has `node_id`
    connected with no fail or pfail flag."""
    if "cluster_state:ok" not in info:
        return False
    for line in nodes.splitlines():
        words = line.split()
        if len(words) > 7 and words[0] == node_id:
            flags = words[2].split(",")
            return words[7] == "connected" and not {"fail", "fail?"} & set(flags)
    return False


def parse_redis_info(text: str) -> dict[str, str]:
    """`INFO` output (`key:value` lines, `# Section` headers) as a dict."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            info[key] = value
    return info


def _json_rows(out: str) -> list[dict[str, object]]:
    out = out.strip()
    if not out:
        return []
    if out.startswith("["):  # older compose versions print one JSON array
        rows = json.loads(out)
        return [r for r in rows if isinstance(r, dict)]
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _container(row: Mapping[str, object]) -> Container:
    return Container(
        id=str(row.get("ID", "")),
        name=str(row.get("Name", "")),
        service=str(row.get("Service", "")),
        state=str(row.get("State", "")),
        health=str(row.get("Health", "")),
        exit_code=int(str(row.get("ExitCode") or 0)),
    )


def _network_subnets(names: Sequence[str] = ()) -> list[str]:
    """The IPv4 subnets of the engine's networks (of those named; all when none is): what
    a fixed subnet must not overlap. A name that does not exist has none."""
    try:
        if not names:
            listed = subprocess.run(
                ["docker", "network", "ls", "-q"],
                capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
            names = listed.stdout.split()
        if not names:
            return []
        done = subprocess.run(
            ["docker", "network", "inspect", "--format",
             "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *names],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return []
    return [net for net in done.stdout.split() if "." in net]  # IPv6 ones aside


def _images_present(images: list[str]) -> bool:
    try:
        done = subprocess.run(
            ["docker", "image", "inspect", *images],
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _cgroup_cpu_seconds(short_id: str) -> float | None:
    full_id = _full_id(short_id)
    if full_id is None:
        return None
    for pattern, per_second in _CGROUP_USAGE_FILES:
        path = Path(pattern.format(id=full_id))
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.name == "cpu.stat":
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value) / per_second
            continue
        return int(text.strip()) / per_second
    return None


_FULL_IDS: dict[str, str] = {}


def _full_id(short_id: str) -> str | None:
    if len(short_id) == 64:
        return short_id
    if short_id not in _FULL_IDS:
        done = subprocess.run(
            ["docker", "inspect", "--format", "{{.Id}}", short_id],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if done.returncode != 0:
            return None
        _FULL_IDS[short_id] = done.stdout.strip()
    return _FULL_IDS[short_id]


def _dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip().strip("'\"")
    return values
