"""Deployment: what the harness needs from a running system, whatever runs it.

httpx's Transport idea applied to the harness: `bench`, `chaos` and `up` talk to one
interface, and each way of running the system (loopback processes, a compose stack; next
swarm, Kubernetes, an external URL) is one implementation of it. No command knows which
one it has, and no command writes an adapter.

    with LocalCluster(replicas=2, settings_env={"JWT_REVOCATION": "denylist"}) as d:
        d.gateway_url, d.redis_address
        d.kill_redis(); d.start_redis()
        d.cpu_seconds()                      # {"redis": 1.2, "auth": 3.4, "resource-1": ...}

What an implementation provides:

- life: `start()` (start, or attach to, the system and wait until it is ready) and
  `stop()` (stop what `start` started; leave what it found running, Redis running again);
  it is a context manager over the two;
- where it is: `gateway_url`, `auth_url`, `redis_address` (host:port for INFO sampling,
  None when unreachable), `services_redis_url` (the Redis URL the services are given,
  through the delay proxy when there is one), `replica_urls()` (asked directly, empty
  when not reachable), and `groups()`: each gateway with the settings its replicas run
  (a deployment may serve several settings side by side, as the chaos cluster does);
  `settings` is what was asked for (JWT_REVOCATION, ...), or what a running system was
  found with; a secret setting (`SECRET_SETTINGS`) is reported as `REDACTED` when it is
  set and "" when not, never with its value, so a mode's `requires` can be checked
  (authbench.modes `Mode.served_by`) and manifests and reports never hold a secret;
- `scale(replicas)` where the engine can;
- Redis faults: `kill_redis`, `pause_redis`, `resume_redis`, `start_redis`,
  `wait_redis`, `slow_redis(delay_ms)` (0: off);
- auth-service faults: `kill_auth`, `pause_auth`, `resume_auth`, `start_auth`;
- shard faults (`cluster:N`): `kill_shard`, `start_shard`, `shard_of_keys` (CLUSTER
  KEYSLOT);
- read-replica faults (`replicas:N`): `kill_read_replica`, `start_read_replica`,
  `pause_read_replica`, `resume_read_replica`, and `read_replica_reads` (where the
  session reads go);
- samplers' sources: `redis_info()` (INFO as a flat dict), `redis_infos()` (INFO of every
  node of the store, one per shard of a Redis Cluster), `cpu_seconds()` (CPU used so far
  per component: redis, redis-shard-N, auth, gateway, resource-N, ...), `metrics_pages()`
  (each replica's /metrics text).

What a target cannot do it leaves to the base class, which raises `NotSupported` naming
the target and the operation (an external deployment, measured by URL only, has no
faults); `supports(operation)` asks beforehand. The store behind it is
described by `store` (a `StoreTopology`): a single Redis, Sentinel or Redis Cluster
(the last two started by `local`), each a value here plus what the implementations start
for it.
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

from authcore.config import documented_settings

# Settings that hold a secret, by name (the public assertion-verification key aside): how a
# deployment reports them (`redact`), and what tests/test_no_secrets_in_results.py guards.
_SECRET_NAME = re.compile(r"SECRET|TOKEN$|_KEY$")
_PUBLIC_KEYS = frozenset({"EDGE_ASSERTION_VERIFY_KEY"})
SECRET_SETTINGS: frozenset[str] = frozenset(
    env
    for env, _default, _doc in documented_settings()
    if _SECRET_NAME.search(env) and env not in _PUBLIC_KEYS
)
REDACTED = "<redacted>"


def redact(settings: Mapping[str, str]) -> dict[str, str]:
    """`settings` as a deployment reports them: each secret one `REDACTED` when set, ""
    when not (so "is it set?" stays answerable and the value never leaves)."""
    return {
        key: (REDACTED if value else "") if key in SECRET_SETTINGS else value
        for key, value in settings.items()
    }


class DeploymentError(RuntimeError):
    """The deployment could not be started, reached or changed; the message says why."""


class NotSupported(DeploymentError):
    """The target has no way to do this (e.g. faults on an external deployment)."""

    def __init__(self, target: str, operation: str, why: str = "") -> None:
        super().__init__(
            f"{operation} is not supported by target {target}" + (f": {why}" if why else "")
        )
        self.target = target
        self.operation = operation


@dataclass(frozen=True, slots=True)
class StoreTopology:
    """How the central store is laid out.

    `single` (one redis-server), `sentinel` (a primary, one replica and three
    Sentinels, authbench.stores.sentinel), `cluster:N` (N Redis Cluster primaries, no
    replicas, authbench.stores.cluster; N from 1 to MAX_SHARDS) and `replicas:N` (one
    primary and N read replicas, authbench.stores.replicas; N from 0 to
    MAX_READ_REPLICAS) are built.
    """

    kind: str = "single"
    shards: int = 1
    read_replicas: int = 0  # replicas:N

    @classmethod
    def parse(cls, text: str) -> StoreTopology:
        kind, _, count = text.partition(":")
        if kind == "single" and not count:
            return cls()
        if kind == "sentinel" and not count:
            return cls("sentinel")
        if kind == "cluster":
            if not count.isdigit() or not 1 <= int(count) <= MAX_SHARDS:
                raise ValueError(
                    f"store topology {text!r}: write cluster:N with N shards, 1 to {MAX_SHARDS}"
                )
            return cls("cluster", int(count))
        if kind == "replicas":
            if not count.isdigit() or not 0 <= int(count) <= MAX_READ_REPLICAS:
                raise ValueError(
                    f"store topology {text!r}: write replicas:N with N read replicas, 0 to "
                    f"{MAX_READ_REPLICAS}"
                )
            return cls("replicas", read_replicas=int(count))
        raise ValueError(
            f"store topology {text!r} is not built yet; choose from single, sentinel, "
            "cluster:N, replicas:N"
        )

    def __str__(self) -> str:
        if self.kind == "cluster":
            return f"cluster:{self.shards}"
        if self.kind == "replicas":
            return f"replicas:{self.read_replicas}"
        return self.kind


SINGLE_REDIS = StoreTopology()
SENTINEL = StoreTopology("sentinel")
MAX_SHARDS = 8  # cluster:N, N <= 8 (their ports fit a private port block)
MAX_READ_REPLICAS = 8  # replicas:N, N <= 8 (likewise)
STORES: tuple[str, ...] = ("single", "sentinel")  # --store choices wired into the commands

STORE_METAVAR = "{single,sentinel,cluster:N,replicas:N}"


def store_argument(text: str) -> str:
    """argparse's type for --store: the text, once StoreTopology.parse accepts it."""
    import argparse  # only the commands need it

    try:
        StoreTopology.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return text


# How Redis keeps its data: none, or an append-only file fsynced every second.
REDIS_PERSISTENCE: tuple[str, ...] = ("none", "aof")


@dataclass(frozen=True, slots=True)
class Group:
    """One gateway and the replicas behind it, with the settings they run."""

    name: str
    gateway_url: str
    replica_urls: tuple[str, ...]  # empty: not reachable from here (behind the gateway)
    settings: Mapping[str, str] = field(default_factory=dict)


class Deployment(ABC):
    """One running system under test; see the module's docstring."""

    target: ClassVar[str]  # the --target name: local, compose, ...
    store: StoreTopology = SINGLE_REDIS

    # --- life ---------------------------------------------------------------------------
    @abstractmethod
    def start(self) -> None:
        """Start (or attach to) the system; return once it is ready for load."""

    @abstractmethod
    def stop(self) -> None:
        """Stop what `start` started; a system that was found running stays running."""

    def describe(self) -> str:
        """One line for progress output: what is running, where."""
        return f"{self.target} deployment at {self.gateway_url}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where it is --------------------------------------------------------------------
    @property
    @abstractmethod
    def gateway_url(self) -> str: ...

    @property
    @abstractmethod
    def auth_url(self) -> str: ...

    @property
    @abstractmethod
    def redis_address(self) -> str | None:
        """host:port of Redis as seen from the harness; None when not reachable."""

    @property
    @abstractmethod
    def services_redis_url(self) -> str | None:
        """The Redis URL the services are given: through the delay proxy when there is
        one, else Redis itself, as the services' network names it (reachable from the
        harness only where `redis_address` is); None when the target does not know it."""

    def replica_urls(self) -> list[str]:
        """The replicas behind `gateway_url`, asked directly (empty: not reachable)."""
        return []

    @property
    @abstractmethod
    def settings(self) -> Mapping[str, str]:
        """The services' settings this deployment runs with (over the services' defaults)."""

    @property
    def redis_persistence(self) -> str:
        """One of REDIS_PERSISTENCE: none | aof (an append-only file, fsynced every second)."""
        return "none"

    def groups(self) -> list[Group]:
        """Every gateway, with its replicas and the settings they run (one by default)."""
        return [Group("main", self.gateway_url, tuple(self.replica_urls()), dict(self.settings))]

    def scale(self, replicas: int) -> None:
        raise NotSupported(self.target, "scale")

    def supports(self, operation: str) -> bool:
        """Whether this target implements `operation` (e.g. "slow_redis", "scale"), so a
        command can skip what it cannot do before starting, instead of failing midway."""
        mine = getattr(type(self), operation, None)
        return mine is not None and mine is not getattr(Deployment, operation, None)

    def unsupported_why(self, operation: str) -> str:
        """Why this deployment, as it runs, cannot do an operation its target implements
        (e.g. compose shards started without fixed addresses); "" when nothing stands in
        the way beyond `supports`."""
        return ""

    # --- Redis faults -------------------------------------------------------------------
    def kill_redis(self) -> None:
        """SIGKILL Redis; it stays down until `start_redis`."""
        raise NotSupported(self.target, "kill_redis")

    def pause_redis(self) -> None:
        """Freeze Redis: connections stay open, nothing is answered."""
        raise NotSupported(self.target, "pause_redis")

    def resume_redis(self) -> None:
        raise NotSupported(self.target, "resume_redis")

    def start_redis(self) -> None:
        """Start Redis again (same port, same persistence); return once it answers PING."""
        raise NotSupported(self.target, "start_redis")

    def wait_redis(self) -> None:
        """Return once Redis answers PING."""
        raise NotSupported(self.target, "wait_redis")

    def slow_redis(self, delay_ms: float) -> None:
        """Delay every byte between the services and Redis by `delay_ms` each way (0: off)."""
        raise NotSupported(self.target, "slow_redis")

    # --- store failover (store topology `sentinel`) -------------------------------------
    def kill_redis_primary(self) -> tuple[str, float]:
        """SIGKILL the primary the Sentinels name now: (the node's name, the target's own:
        `127.0.0.1:PORT` for processes, the service for compose; the wall clock just
        before the signal was sent, after whatever lookup found the primary)."""
        raise NotSupported(self.target, "kill_redis_primary")

    def wait_redis_failover(self, old: str, timeout_s: float = 30.0) -> tuple[float, str]:
        """Block until a primary other than the node `old` is named and answers as one:
        (wall clock when the Sentinels first named it, its name)."""
        raise NotSupported(self.target, "wait_redis_failover")

    def rejoin_redis(self) -> None:
        """Start the killed primary again, as a replica of the new one."""
        raise NotSupported(self.target, "rejoin_redis")

    def store_description(self) -> dict[str, object]:
        """What a run's results record about the store (its kind; a Sentinel set adds its
        tuning: quorum, down-after-milliseconds, failover-timeout)."""
        return {"kind": str(self.store)}

    def cut_redis_replica_link(self) -> dict[str, object]:
        """Partition the replica from the primary (its replication link passes nothing;
        both still answer everyone else); returns what was done."""
        raise NotSupported(self.target, "cut_redis_replica_link")

    def redis_replication(self) -> dict[str, object]:
        """The primary's and the replica's replication state: offsets, lag in bytes."""
        raise NotSupported(self.target, "redis_replication")

    # --- shard faults (store topology `cluster:N`, the shard-kill scenario) ---------------
    def kill_shard(self, index: int) -> None:
        """SIGKILL Redis Cluster shard `index` (0-based); it stays down until `start_shard`."""
        raise NotSupported(self.target, "kill_shard")

    def start_shard(self, index: int) -> None:
        """Start shard `index` again (it takes its slots back); return once the cluster is ok."""
        raise NotSupported(self.target, "start_shard")

    def shard_of_keys(self, keys: list[str]) -> list[int]:
        """The shard (0-based) holding each key, by CLUSTER KEYSLOT."""
        raise NotSupported(self.target, "shard_of_keys")

    # --- read-replica faults (store topology `replicas:N`, the read-replica scenarios) ---
    def kill_read_replica(self, index: int) -> None:
        """SIGKILL read replica `index` (0-based) of the store; it stays down until
        `start_read_replica`."""
        raise NotSupported(self.target, "kill_read_replica")

    def start_read_replica(self, index: int) -> None:
        """Start read replica `index` again (empty, it syncs from the primary); return once
        its replication link is up."""
        raise NotSupported(self.target, "start_read_replica")

    def pause_read_replica(self, index: int) -> None:
        """Freeze read replica `index`: connections stay open, nothing is answered."""
        raise NotSupported(self.target, "pause_read_replica")

    def resume_read_replica(self, index: int) -> None:
        raise NotSupported(self.target, "resume_read_replica")

    def read_replica_reads(self) -> dict[str, int | None]:
        """GET calls served so far by the primary (`redis-primary`) and each read replica
        (`redis-replica-N`), INFO commandstats; None for a node that does not answer."""
        raise NotSupported(self.target, "read_replica_reads")

    # --- replica faults (the replica-crash scenario) ------------------------------------
    def kill_replica(self, index: int) -> None:
        """SIGKILL resource replica `index` (of `replica_urls()`); it stays down."""
        raise NotSupported(self.target, "kill_replica")

    def start_replica(self, index: int) -> None:
        """Start replica `index` again; return once it answers /readyz."""
        raise NotSupported(self.target, "start_replica")

    def upstream_health(self) -> dict[str, bool]:
        """The gateway's own view: upstream URL -> in its rotation (its health gauge)."""
        raise NotSupported(self.target, "upstream_health")

    # --- auth-service faults (mode opaque resolves every read there) --------------------
    def kill_auth(self) -> None:
        """SIGKILL the auth service; it stays down until `start_auth`."""
        raise NotSupported(self.target, "kill_auth")

    def pause_auth(self) -> None:
        """Freeze the auth service: connections are accepted, nothing is answered."""
        raise NotSupported(self.target, "pause_auth")

    def resume_auth(self) -> None:
        raise NotSupported(self.target, "resume_auth")

    def start_auth(self) -> None:
        """Start the auth service again (or wait for a resumed one); return once /readyz
        answers 200."""
        raise NotSupported(self.target, "start_auth")

    # --- what samplers read -------------------------------------------------------------
    def redis_info(self) -> Mapping[str, Any]:
        """`INFO all` as a flat dict; a `cmdstat_*` value is a dict or the text
        `calls=N,usec=...`. Raises DeploymentError when Redis cannot be asked."""
        raise NotSupported(self.target, "redis_info")

    def redis_infos(self) -> dict[str, Mapping[str, Any]]:
        """`INFO all` of every node of the store, by name: one for a single Redis (the
        default), one per shard of a Redis Cluster (`redis-shard-N`), the primary and
        each read replica of a replicas store (`redis-primary`, `redis-replica-N`)."""
        return {"redis": self.redis_info()}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each component (redis, auth, gateway, resource-N);
        components that cannot be measured are left out."""
        return {}

    def metrics_pages(self) -> list[str]:
        """The /metrics text of each replica that answered."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what sampling holds open (connections); `stop()` calls it too."""


def http_status(url: str, timeout_s: float = 1.0) -> int | None:
    """The status a URL answers (a readiness probe); None when there is no valid answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException):
        # HTTPException: no valid answer yet. On a port of the ephemeral range that nothing
        # listens on yet, the kernel may even connect the probe to itself, and it then
        # reads back its own request ("BadStatusLine: GET /readyz"): not ready either.
        return None
