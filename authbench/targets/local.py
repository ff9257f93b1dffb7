"""LocalCluster: Redis, the auth service, N replicas and the gateway as loopback processes.

The `local` target (a Deployment, authbench.targets.base): `authbench up`, and the cluster
that tests, `bench` and `chaos` start. Children are real processes (`python -m <service>`,
a real `redis-server`), each with its own log file, started by `authbench.process.spawn`
(they die with the harness, each in a process group of its own); `stop()` terminates them
(SIGTERM, then SIGKILL after a grace period) and reaps them.

With `redis_delay_ms` set, every service reaches Redis through the userspace delay proxy
(authbench.delay_proxy) on a port of its own, and `slow_redis(ms)` switches that delay on
(`slow_redis(0)`: off). This is also where a store-distance axis plugs in.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import redis
from redis import Redis as RedisClient

from authbench import process
from authbench.delay_proxy import DelayProxy
from authbench.process import PROJECT_ROOT
from authbench.stores.cluster import ShardedCluster
from authbench.stores.node import NodeSet
from authbench.stores.replicas import REPLICAS_DEFAULT_RENEW_INTERVAL_S, ReplicaSet
from authbench.stores.sentinel import SentinelSet
from authbench.targets import nginx as nginx_gateway
from authbench.targets.base import (
    SINGLE_REDIS,
    Deployment,
    DeploymentError,
    Group,
    StoreTopology,
    http_status,
)
from authcore.assertion import generate_keys
from authcore.config import documented_settings
from authcore.keystore import new_kek

REDIS_MISSING = (
    "redis-server was not found on PATH. Install it first, e.g.\n"
    "  Debian/Ubuntu: sudo apt-get install redis-server\n"
    "  macOS:         brew install redis\n"
    "authbench starts its own redis-server on a port of its own; it never touches yours."
)
# Keys are never reported with a group's settings (they may end up in a manifest).
_SETTING_NAMES = frozenset(name for name, _default, _doc in documented_settings()) - {
    "EDGE_ASSERTION_KEY",
    "EDGE_ASSERTION_VERIFY_KEY",
}


# The key store's key-encryption key is a secret: never reported with a group's settings.
_SETTING_NAMES = _SETTING_NAMES - {"JWT_KEY_ENCRYPTION_KEY"}


class ClusterError(DeploymentError):
    pass


# Ports.block's store_extra..resource_base-1: the ports a store beyond one Redis may use.
_STORE_EXTRA_PORTS = 9


@dataclass(frozen=True)
class Ports:
    gateway: int = 8080
    auth: int = 8081
    resource_base: int = 8101
    redis: int = 6390
    redis_proxy: int = 6391  # the delay proxy, when the cluster runs one
    gateway_admin: int = 9080  # the gateway's operator port (/metrics), loopback only
    auth_extra: int = 8082  # auth replicas 2, 3, ... (--auth-replicas), one port each
    # --store sentinel: the replica here, the three Sentinels on the next three ports, a
    # replica delay proxy on the one after (None: a free block of five is taken at start).
    store_extra: int | None = None

    @classmethod
    def block(cls, base: int) -> Ports:
        """The layout inside a private block (authbench.process.PORT_BLOCK ports from
        `base`): tests and benchmarks never clash with `up`; up to 29 replicas."""
        return cls(
            gateway=base, auth=base + 1, resource_base=base + 21, redis=base + 10,
            auth_extra=base + 3,  # up to 7 more auth replicas: base+3 ... base+9
            redis_proxy=base + 11, gateway_admin=base + 2, store_extra=base + 12,
        )  # fmt: skip


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    health_url: str | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.process = process.spawn(self.argv, self.log_path, env=self.env)


@dataclass
class LocalCluster(Deployment):
    target: ClassVar[str] = "local"

    replicas: int = 3
    auth_replicas: int = 1  # more than one: the gateway balances /auth/* over them
    gateway_impl: str = "ours"  # one of GATEWAYS: ours, or Debian's nginx in its place
    ports: Ports = field(default_factory=Ports)
    settings_env: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: PROJECT_ROOT / ".authbench")
    redis_persistence: str = "none"  # none | aof
    redis_delay_ms: float | None = None  # set: services reach Redis via the delay proxy
    # --store sentinel (issue 16): the primary on ports.redis, a replica and three
    # Sentinels, with failure detection tuned short for a benchmark.
    store: StoreTopology = SINGLE_REDIS
    sentinel_down_after_ms: int = 1000
    sentinel_failover_timeout_ms: int = 3000
    sentinel_replica_delay_ms: float | None = None  # replica through the delay proxy
    # The replica's link can be cut (the failover-partition scenarios): a proxy on it.
    sentinel_partition_proxy: bool = False
    sentinel_set: SentinelSet | None = field(default=None, init=False)
    # --store cluster:N (issue 17): shard 1 on ports.redis, shards 2..N on store_extra,
    # store_extra+1, ...; the N cluster-bus ports from a free block of their own.
    cluster_store: ShardedCluster | None = field(default=None, init=False)
    # --store replicas:N (issue 17): the primary on ports.redis, read replicas on
    # store_extra, store_extra+1, ...; session reads go to them (SESSION_RENEW_INTERVAL_S).
    replica_store: ReplicaSet | None = field(default=None, init=False)
    children: list[Child] = field(default_factory=list, init=False)
    redis: Child | None = field(default=None, init=False)
    proxy: DelayProxy | None = field(default=None, init=False)
    _redis_client: RedisClient | None = field(default=None, init=False, repr=False)
    _shard_clients: dict[str, RedisClient] = field(default_factory=dict, init=False, repr=False)
    _kek: str = field(default="", init=False, repr=False)  # see _service_env

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def gateway_admin_url(self) -> str:
        """The gateway's operator port: /metrics (with upstream addresses), never public."""
        return f"http://127.0.0.1:{self.ports.gateway_admin}"

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.auth}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    @property
    def redis_address(self) -> str:
        """The primary: with Sentinels, the one they name now."""
        return f"127.0.0.1:{self._primary_port()}"

    @property
    def services_redis_url(self) -> str:
        """Where the services reach Redis: the delay proxy when there is one."""
        if self.redis_delay_ms is not None:
            return f"redis://127.0.0.1:{self.ports.redis_proxy}/0"
        return self.redis_url

    @property
    def settings(self) -> Mapping[str, str]:
        return self.settings_env

    def auth_urls(self) -> list[str]:
        """Every auth replica, the first at `auth_url`."""
        extra = [self.ports.auth_extra + i for i in range(self.auth_replicas - 1)]
        return [self.auth_url, *(f"http://127.0.0.1:{port}" for port in extra)]

    def replica_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports.resource_base + i}" for i in range(self.replicas)]

    def describe(self) -> str:
        return f"local cluster of {len(self.all_children())} processes at {self.gateway_url}"

    def groups(self) -> list[Group]:
        """One group per gateway child: its URL, its replicas and the settings it runs."""
        found = []
        for child in self.children:
            if child.argv[-1] != "gateway":
                continue
            replicas = tuple(u for u in child.env.get("RESOURCE_URLS", "").split(",") if u)
            settings = {k: v for k, v in child.env.items() if k in _SETTING_NAMES}
            name = child.name.removesuffix("gateway").rstrip("-") or "main"
            found.append(Group(name, f"http://127.0.0.1:{child.env['PORT']}", replicas, settings))
        return found

    # --- building the children ----------------------------------------------------
    def _service_env(self, extra: dict[str, str]) -> dict[str, str]:
        if self.settings_env.get("JWT_ALG") == "HS256" and not self.settings_env.get(
            "JWT_HS256_SECRET"
        ):
            # One random secret for this cluster's lifetime, handed to every process.
            self.settings_env["JWT_HS256_SECRET"] = secrets.token_urlsafe(48)
        if not self.settings_env.get("INTROSPECT_SECRET"):
            # Mode opaque: the replicas' introspection credential, random per cluster.
            self.settings_env["INTROSPECT_SECRET"] = secrets.token_urlsafe(32)
        if not self._kek:
            # The signing keys' key-encryption key, random per cluster and kept out of
            # settings_env (manifests record it): every auth replica and restart shares
            # the keys in Redis (authcore.keystore), unless the settings name one.
            self._kek = self.settings_env.get("JWT_KEY_ENCRYPTION_KEY") or new_kek()
        extra = {"JWT_KEY_ENCRYPTION_KEY": self._kek, **extra}
        return process.python_env(
            {
                **self.settings_env,
                "REDIS_URL": self.services_redis_url,
                **self._store_env(),
                "AUTH_URL": self.auth_url,
                "RESOURCE_URLS": ",".join(self.replica_urls()),
                **extra,
            }
        )

    def _redis_child(self) -> Child:
        server = shutil.which("redis-server")
        if server is None:
            raise ClusterError(REDIS_MISSING)
        data_dir = self.workdir / f"redis-{self.ports.redis}"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            server, "--port", str(self.ports.redis), "--bind", "127.0.0.1",
            "--dir", str(data_dir), "--save", "", "--daemonize", "no",
            "--loglevel", "warning", "--logfile", "",
        ]  # fmt: skip
        if self.redis_persistence == "aof":
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            argv += ["--appendonly", "no"]
        return Child("redis", argv, process.python_env(), self.workdir / "logs" / "redis.log")

    def _python_child(self, name: str, module: str, port: int, extra: dict[str, str]) -> Child:
        env = self._service_env({"PORT": str(port), "HOST": "127.0.0.1", **extra})
        return Child(
            name,
            [sys.executable, "-m", module],
            env,
            self.workdir / "logs" / f"{name}.log",
            health_url=f"http://127.0.0.1:{port}/readyz",
        )

    def _edge_keys(self) -> tuple[dict[str, str], dict[str, str]]:
        """VALIDATE_AT=gateway: the assertion keys of the gateway and of the replicas, a
        fresh Ed25519 pair (or HS256 secret) per plan unless the settings name them. Kept
        out of settings_env (manifests record it); the replicas never get the signing key."""
        env = self.settings_env
        if env.get("VALIDATE_AT") != "gateway":
            return {}, {}
        signing, verifying = env.get("EDGE_ASSERTION_KEY"), env.get("EDGE_ASSERTION_VERIFY_KEY")
        if not signing or not verifying:
            signing, verifying = generate_keys(env.get("EDGE_ASSERTION_ALG", "EdDSA"))
        return (
            {"EDGE_ASSERTION_KEY": signing},
            {"EDGE_ASSERTION_KEY": "", "EDGE_ASSERTION_VERIFY_KEY": verifying},
        )

    def plan(self) -> list[Child]:
        gateway_keys, replica_keys = self._edge_keys()
        auth_keys: dict[str, str] = {}
        if self.gateway_impl == "nginx":
            # nginx signs nothing: its auth_request asks the auth service, which checks the
            # credential and signs the assertion (auth_service/edge_check.py).
            auth_keys, gateway_keys = gateway_keys, {}
        children = [
            self._python_child("auth", "auth_service", self.ports.auth, auth_keys),
            *(
                self._python_child(
                    f"auth-{i + 2}", "auth_service", self.ports.auth_extra + i, auth_keys
                )
                for i in range(self.auth_replicas - 1)
            ),
        ]
        for i in range(self.replicas):
            port = self.ports.resource_base + i
            children.append(
                self._python_child(
                    f"resource-{i + 1}",
                    "resource_service",
                    port,
                    {"REPLICA_ID": f"replica-{i + 1}", **replica_keys},
                )
            )
        admin = {"GATEWAY_ADMIN_PORT": str(self.ports.gateway_admin), **gateway_keys}
        if self.auth_replicas > 1:  # the gateway balances /auth/* over every auth replica
            admin["AUTH_URL"] = ",".join(self.auth_urls())
        children.append(self._python_child("gateway", "gateway", self.ports.gateway, admin))
        if self.gateway_impl == "nginx":  # the same place (name, port, env), nginx inside
            ours = children[-1]
            ours.argv, ours.env = nginx_gateway.gateway_process(ours.env, self.workdir)
        return children

    # --- lifecycle --------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0, progress: Callable[[str], None] | None = None) -> None:
        """Start everything and wait until each service reports ready."""
        say = progress or (lambda _msg: None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.store.kind == "sentinel":
                self._start_sentinel_set(timeout_s, say)
            elif self.store.kind == "cluster":
                self._start_cluster_store(timeout_s, say)
            elif self.store.kind == "replicas":
                self._start_replica_store(timeout_s, say)
            else:
                self.redis = self._redis_child()
                self.redis.start()
                self.wait_redis(timeout_s)
                say(f"redis-server ready on 127.0.0.1:{self.ports.redis} (pid {self.redis.pid})")
            if self.redis_delay_ms is not None:
                self.proxy = DelayProxy(
                    self.ports.redis_proxy,
                    self.ports.redis,
                    self.redis_delay_ms,
                    self.workdir / "logs" / "proxy.log",
                )
                self.proxy.start()
                say(f"delay proxy on 127.0.0.1:{self.ports.redis_proxy} (pid {self.proxy.pid})")
            self.children = self.plan()
            for child in self.children:
                child.start()
            deadline = time.monotonic() + timeout_s
            for child in self.children:
                self._wait_ready(child, deadline)
                say(f"{child.name} ready (pid {child.pid})")
        except BaseException:
            self.stop()
            raise

    def wait_redis(self, timeout_s: float = 30.0) -> None:
        client = redis.Redis(port=self.ports.redis, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.redis is not None and not self.redis.alive():
                    raise ClusterError(f"redis-server exited; see {self.redis.log_path}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise ClusterError("redis-server did not answer PING in time")
                time.sleep(0.05)
        finally:
            client.close()

    def _wait_ready(self, child: Child, deadline: float) -> None:
        assert child.health_url is not None
        while True:
            if not child.alive():
                tail = _tail(child.log_path)
                raise ClusterError(f"{child.name} exited during start-up:\n{tail}")
            if http_status(child.health_url) == 200:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{child.name} not ready in time; see {child.log_path}")
            time.sleep(0.05)

    def all_children(self) -> list[Child]:
        return ([self.redis] if self.redis else []) + self.children

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every child this cluster started (gateway first, Redis last)."""
        self.close()
        started = [c.process for c in reversed(self.children) if c.process is not None]
        if self.proxy is not None and self.proxy.process is not None:
            started.append(self.proxy.process)
        if self.redis is not None and self.redis.process is not None:
            started.append(self.redis.process)
        process.stop(started, grace_s)
        if self.sentinel_set is not None:
            self.sentinel_set.stop()
        if self.cluster_store is not None:
            self.cluster_store.stop()
        if self.replica_store is not None:
            self.replica_store.stop()

    # --- faults (chaos scenarios and tests) -------------------------------------------
    def _redis_process(self) -> subprocess.Popen[bytes]:
        if self.redis is None or self.redis.process is None:
            raise ClusterError("redis-server was never started")
        return self.redis.process

    def kill_redis(self) -> None:
        self._redis_process().kill()
        self._redis_process().wait()

    def pause_redis(self) -> None:
        self._redis_process().send_signal(signal.SIGSTOP)

    def resume_redis(self) -> None:
        self._redis_process().send_signal(signal.SIGCONT)

    def start_redis(self, wait: bool = True) -> None:
        """(Re)start redis-server with the same port and persistence as before."""
        assert self.redis is not None
        if self.redis.alive():
            return
        self.close()  # the sampling connection went with the old Redis
        self.redis.start()
        if wait:
            self.wait_redis()

    def slow_redis(self, delay_ms: float) -> None:
        if self.proxy is None:
            raise ClusterError("this cluster was started without the delay proxy")
        self.proxy.set_delay(delay_ms)  # any distance on the running proxy; 0: off

    # --- store topology `sentinel` ------------------------------------------------------
    def _start_sentinel_set(self, timeout_s: float, say: Callable[[str], None]) -> None:
        if self.redis_delay_ms is not None:
            raise ClusterError("--store sentinel has no delay proxy (store distance)")
        if self.redis_persistence != "none":
            raise ClusterError("--store sentinel runs without persistence (replication only)")
        extra = self.ports.store_extra
        if extra is None:
            extra = process.free_port_block(5)
        self.sentinel_set = SentinelSet(
            ports=(self.ports.redis, extra),
            sentinel_ports=(extra + 1, extra + 2, extra + 3),
            workdir=self.workdir / "sentinel",
            down_after_ms=self.sentinel_down_after_ms,
            failover_timeout_ms=self.sentinel_failover_timeout_ms,
            replica_delay_ms=self.sentinel_replica_delay_ms,
            proxy_port=extra + 4,
            partition_proxy=self.sentinel_partition_proxy,
        )
        self.sentinel_set.start(timeout_s)
        say(
            f"redis primary on 127.0.0.1:{self.ports.redis}, replica on 127.0.0.1:{extra}, "
            f"Sentinels on {self.sentinel_set.sentinel_addresses} (down-after "
            f"{self.sentinel_down_after_ms} ms, failover-timeout "
            f"{self.sentinel_failover_timeout_ms} ms)"
        )

    def _start_cluster_store(self, timeout_s: float, say: Callable[[str], None]) -> None:
        if self.redis_delay_ms is not None:
            raise ClusterError("--store cluster:N has no delay proxy (store distance)")
        if self.redis_persistence != "none":
            raise ClusterError("--store cluster:N runs without persistence")
        shards = self.store.shards
        extra = self.ports.store_extra
        if extra is None:
            extra = process.free_port_block(max(1, shards - 1))
        elif shards - 1 > _STORE_EXTRA_PORTS:
            raise ClusterError(
                f"--store cluster:{shards}: the port block has room for "
                f"{_STORE_EXTRA_PORTS + 1} shards (store_extra ports {extra}.."
                f"{extra + _STORE_EXTRA_PORTS - 1})"
            )
        ports = (self.ports.redis, *(extra + i for i in range(shards - 1)))
        bus = process.free_port_block(shards)
        self.cluster_store = ShardedCluster(
            ports=ports,
            bus_ports=tuple(bus + i for i in range(shards)),
            workdir=self.workdir / "cluster",
        )
        self.cluster_store.start(timeout_s)
        say(f"redis cluster of {shards} shard(s) on {self.cluster_store.nodes_setting}")

    def _start_replica_store(self, timeout_s: float, say: Callable[[str], None]) -> None:
        if self.redis_delay_ms is not None:
            raise ClusterError("--store replicas:N has no delay proxy (store distance)")
        if self.redis_persistence != "none":
            raise ClusterError("--store replicas:N runs without persistence (replication only)")
        count = self.store.read_replicas
        extra = self.ports.store_extra
        if extra is None:
            extra = process.free_port_block(max(1, count))
        elif count > _STORE_EXTRA_PORTS:
            raise ClusterError(
                f"--store replicas:{count}: the port block has room for {_STORE_EXTRA_PORTS} "
                f"read replicas (store_extra ports {extra}..{extra + _STORE_EXTRA_PORTS - 1})"
            )
        self.replica_store = ReplicaSet(
            ports=(self.ports.redis, *(extra + i for i in range(count))),
            workdir=self.workdir / "replicas",
        )
        self.replica_store.start(timeout_s)
        say(
            f"redis primary on 127.0.0.1:{self.ports.redis}, {count} read replica(s)"
            + (f" on {self.replica_store.replicas_setting}" if count else "")
            + f"; sessions renewed every {self._renew_interval()} s at most"
        )

    def _renew_interval(self) -> str:
        """SESSION_RENEW_INTERVAL_S of a replicas store: the settings' own, else a default
        that lets reads go to the replicas (0 would send every read to the primary)."""
        return self.settings_env.get("SESSION_RENEW_INTERVAL_S") or str(
            REPLICAS_DEFAULT_RENEW_INTERVAL_S
        )

    def store_settings(self) -> dict[str, str]:
        """The services' settings that name the store besides REDIS_URL (once started)."""
        return self._store_env()

    def _store_env(self) -> dict[str, str]:
        """The services' settings that name the store besides REDIS_URL."""
        if self.cluster_store is not None:
            return {"REDIS_CLUSTER_NODES": self.cluster_store.nodes_setting}
        if self.replica_store is not None:
            return {
                "REDIS_READ_REPLICAS": self.replica_store.replicas_setting,
                "SESSION_RENEW_INTERVAL_S": self._renew_interval(),
            }
        if self.sentinel_set is None:
            return {}
        return {
            "REDIS_SENTINELS": self.sentinel_set.sentinel_addresses,
            "REDIS_SENTINEL_MASTER": self.sentinel_set.master_name,
        }

    def _sentinels(self) -> SentinelSet:
        if self.sentinel_set is None:
            raise ClusterError("this cluster runs one Redis, not --store sentinel")
        return self.sentinel_set

    def _primary_port(self) -> int:
        if self.sentinel_set is None:
            return self.ports.redis
        try:
            return self.sentinel_set.primary_port()
        except RuntimeError:
            return self.ports.redis

    def _shards(self) -> ShardedCluster:
        if self.cluster_store is None:
            raise ClusterError("this cluster does not run --store cluster:N")
        return self.cluster_store

    def kill_shard(self, index: int) -> None:
        self.close()  # the sampling connection may be to that shard
        self._shards().kill(index)

    def start_shard(self, index: int) -> None:
        self._shards().restart(index)

    def shard_of_keys(self, keys: list[str]) -> list[int]:
        return self._shards().shard_of(keys)

    def _read_replicas(self) -> ReplicaSet:
        if self.replica_store is None:
            raise ClusterError("this cluster does not run --store replicas:N")
        return self.replica_store

    def kill_read_replica(self, index: int) -> None:
        self.close()  # the sampling connections: one is to that replica
        self._read_replicas().kill_replica(index)

    def start_read_replica(self, index: int) -> None:
        self._read_replicas().restart_replica(index)

    def pause_read_replica(self, index: int) -> None:
        self._read_replicas().pause_replica(index)

    def resume_read_replica(self, index: int) -> None:
        self._read_replicas().resume_replica(index)

    def read_replica_reads(self) -> dict[str, int | None]:
        return self._read_replicas().reads_served()

    def kill_redis_primary(self) -> tuple[str, float]:
        self.close()
        killed_at = time.time()  # the lookup before the kill is one loopback round trip
        return f"127.0.0.1:{self._sentinels().kill_primary()}", killed_at

    def wait_redis_failover(self, old: str, timeout_s: float = 30.0) -> tuple[float, str]:
        named_at, port = self._sentinels().wait_failover(int(old.rpartition(":")[2]), timeout_s)
        return named_at, f"127.0.0.1:{port}"

    def store_description(self) -> dict[str, object]:
        if self.sentinel_set is not None:
            return self.sentinel_set.describe()
        return super().store_description()

    def rejoin_redis(self) -> None:
        self._sentinels().rejoin()

    def cut_redis_replica_link(self) -> dict[str, object]:
        return self._sentinels().cut_replica_link()

    def redis_replication(self) -> dict[str, object]:
        return self._sentinels().replication()

    # --- replica faults -------------------------------------------------------------------
    def kill_replica(self, index: int) -> None:
        victim = self.child(f"resource-{index + 1}")
        if victim.process is None:
            raise ClusterError(f"{victim.name} was never started")
        victim.process.kill()
        victim.process.wait()

    def start_replica(self, index: int) -> None:
        self.restart_child(f"resource-{index + 1}")

    def upstream_health(self) -> dict[str, bool]:
        """Read from the gateway's operator port: `authbench_gateway_upstream_healthy`."""
        try:
            with urllib.request.urlopen(f"{self.gateway_admin_url}/metrics", timeout=2.0) as resp:  # noqa: S310
                text = resp.read().decode()
        except (OSError, ValueError) as err:
            raise ClusterError(f"the gateway's metrics did not answer: {err}") from err
        found = {}
        for line in text.splitlines():
            if line.startswith('authbench_gateway_upstream_healthy{upstream="'):
                url, _, value = line.removeprefix(
                    'authbench_gateway_upstream_healthy{upstream="'
                ).partition('"}')
                found[url] = float(value) == 1.0
        return found

    # Auth-service faults: mode opaque asks it on every read; the others only log in there.
    # The fault takes the whole service down: every auth process of the deployment (its
    # --auth-replicas, and in chaos the auth service of a group with its own tokens).
    def auth_children(self) -> list[Child]:
        children = [c for c in self.all_children() if c.argv[-1:] == ["auth_service"]]
        if not children or any(c.process is None for c in children):
            raise ClusterError("the auth service was never started")
        return children

    def kill_auth(self) -> None:
        for auth in self.auth_children():
            if auth.process is not None:
                auth.process.kill()
                auth.process.wait()

    def pause_auth(self) -> None:
        for auth in self.auth_children():
            if auth.process is not None:
                auth.process.send_signal(signal.SIGSTOP)

    def resume_auth(self) -> None:
        for auth in self.auth_children():
            if auth.process is not None:
                auth.process.send_signal(signal.SIGCONT)

    def start_auth(self, timeout_s: float = 30.0) -> None:
        """Start a killed auth service again (a resumed one: wait until it answers)."""
        deadline = time.monotonic() + timeout_s
        for auth in self.auth_children():
            if not auth.alive():
                auth.start()
        for auth in self.auth_children():
            self._wait_ready(auth, deadline)

    def child(self, name: str) -> Child:
        for child in self.all_children():
            if child.name == name:
                return child
        raise KeyError(name)

    def restart_child(self, name: str, timeout_s: float = 30.0) -> None:
        child = self.child(name)
        if child.alive():
            raise ClusterError(f"{name} is still running")
        child.start()
        self._wait_ready(child, time.monotonic() + timeout_s)

    # --- what samplers read -------------------------------------------------------------
    def redis_info(self) -> Mapping[str, Any]:
        """INFO all over one connection kept open (so a window counts only our INFOs)."""
        if self._redis_client is None:
            self._redis_client = redis.Redis(
                port=self._primary_port(), socket_timeout=2.0, socket_connect_timeout=2.0
            )
        try:
            info: dict[str, Any] = self._redis_client.info("all")
        except redis.RedisError as err:
            raise ClusterError(f"redis INFO failed: {err}") from err
        return info

    def redis_infos(self) -> dict[str, Mapping[str, Any]]:
        """INFO all of every data node of a store of several (one connection each, kept
        open like `redis_info`'s): each shard of --store cluster:N, the primary and each
        read replica of --store replicas:N (where the session reads go); otherwise the
        one Redis's."""
        store: NodeSet | None = self.cluster_store or self.replica_store
        if store is None:
            return {"redis": self.redis_info()}
        found: dict[str, Mapping[str, Any]] = {}
        for node in store.nodes:
            client = self._shard_clients.get(node.name)
            if client is None:
                client = redis.Redis(port=node.port, socket_timeout=2.0, socket_connect_timeout=2.0)
                self._shard_clients[node.name] = client
            try:
                found[node.name] = client.info("all")
            except redis.RedisError as err:
                raise ClusterError(f"redis INFO of {node.name} failed: {err}") from err
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU of each child's process tree (workers it forked included),
        and of the delay proxy when there is one (`proxy`: it shares the machine's cores)."""
        used = {
            child.name: process.tree_cpu_seconds(child.pid)
            for child in self.all_children()
            if child.pid is not None
        }
        if self.proxy is not None and self.proxy.pid is not None:
            used["proxy"] = process.tree_cpu_seconds(self.proxy.pid)
        if self.sentinel_set is not None:
            for name, pid in self.sentinel_set.processes().items():
                used[name] = process.tree_cpu_seconds(pid)
        if self.cluster_store is not None:
            for name, pid in self.cluster_store.processes().items():
                used[name] = process.tree_cpu_seconds(pid)
        if self.replica_store is not None:
            for name, pid in self.replica_store.processes().items():
                used[name] = process.tree_cpu_seconds(pid)
        return used

    def metrics_pages(self) -> list[str]:
        pages = []
        for url in self.replica_urls():
            try:
                with urllib.request.urlopen(f"{url}/metrics", timeout=3.0) as resp:  # noqa: S310
                    pages.append(resp.read().decode())
            except (OSError, ValueError):
                continue
        return pages

    def close(self) -> None:
        if self._redis_client is not None:
            self._redis_client.close()
            self._redis_client = None
        for client in self._shard_clients.values():
            client.close()
        self._shard_clients.clear()


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
