"""ReplicaSet: one Redis primary and N read replicas as loopback processes.

The `replicas:N` store topology (`--store replicas:N`, issue 17 item 6). Real
`redis-server` processes: the primary a plain server, each replica `--replicaof` it (a
replica refuses writes by default, `replica-read-only yes`). `start` returns once every
replica reports `master_link_status:up`, so the first session a test writes reaches them.
Zero replicas is allowed: the primary alone, started and reported the same way (the
baseline of a replicas:0 vs replicas:N comparison).

The services reach the primary through REDIS_URL and the replicas through
REDIS_READ_REPLICAS; session reads go to the replicas only with SESSION_RENEW_INTERVAL_S
> 0 (authcore.sessions), which the local target sets for this topology unless told.

    with ReplicaSet(ports=(p0, r1, r2), workdir=d) as store:
        store.replicas_setting       # "127.0.0.1:r1,127.0.0.1:r2"
        store.replication_lag()      # {r1: bytes behind, r2: ...}
        store.read_lag_ms(100)       # DEL on the primary -> a replica's GET sees it gone
        store.kill_replica(1); store.restart_replica(1)   # chaos: read replica 2
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from authbench.stores.node import NodeSet, wait_ping
from authbench.stores.node import StoreNode as _Node
from authbench.targets.base import MAX_READ_REPLICAS

PRIMARY_NAME = "redis-primary"
# --store replicas:N without SESSION_RENEW_INTERVAL_S in the settings (local and compose
# targets): renew a session's idle TTL at most once a minute (as SESSION_CACHE_RENEW_S
# does by default); 0 would renew on every read (GETEX, on the primary), none on a replica.
REPLICAS_DEFAULT_RENEW_INTERVAL_S = 60


def replica_name(index: int) -> str:
    """The name of read replica `index` (0-based): `redis-replica-1`, ... (process names,
    INFO sampling's nodes, the read-replica chaos scenarios)."""
    return f"redis-replica-{index + 1}"


class ReplicaStoreError(RuntimeError):
    """The primary and its read replicas could not be started or did not sync in time."""


@dataclass
class ReplicaSet(NodeSet):
    ports: tuple[int, ...]  # the primary first, then one port per read replica
    workdir: Path
    nodes: list[_Node] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.ports) <= MAX_READ_REPLICAS + 1:
            raise ReplicaStoreError(
                f"a replicas store has 0 to {MAX_READ_REPLICAS} read replicas, "
                f"not {len(self.ports) - 1}"
            )
        if len(set(self.ports)) != len(self.ports):
            raise ReplicaStoreError("the primary and its replicas need a port each")

    # --- where it is ------------------------------------------------------------------
    @property
    def primary_port(self) -> int:
        return self.ports[0]

    @property
    def replica_ports(self) -> tuple[int, ...]:
        return self.ports[1:]

    @property
    def replicas_setting(self) -> str:
        """REDIS_READ_REPLICAS for the services (empty with no replica)."""
        return ",".join(f"127.0.0.1:{port}" for port in self.replica_ports)

    def describe(self) -> dict[str, object]:
        """What the manifest records about this store."""
        return {
            "kind": "replicas",
            "primary_port": self.primary_port,
            "replica_ports": list(self.replica_ports),
            "replication": "asynchronous (replicaof), replica-read-only",
        }

    def replication_lag(self) -> dict[int, int]:
        """replica port -> bytes of the primary's replication stream it has not acked."""
        with self._client(self.primary_port) as client:
            info = client.info("replication")
        offset = int(info.get("master_repl_offset", 0))
        lag = {}
        for key, value in info.items():
            if key.startswith("slave") and isinstance(value, dict):
                lag[int(value["port"])] = offset - int(value.get("offset", 0))
        return lag

    def read_lag_ms(self, samples: int, timeout_s: float = 5.0) -> list[float]:
        """How long a deleted key stays readable on a replica, `samples` times (replicas
        taken in turn): SET a key on the primary and WAIT until every replica has it, DEL
        it, then GET it on one replica in a tight loop until it is gone; the time from
        the DEL's reply to that first nil, in ms. A logout is such a DEL, so this is what
        replication adds to a session's revocation window, without HTTP around it."""
        if not self.replica_ports:
            return []
        found: list[float] = []
        primary = self._client(self.primary_port)
        replicas = [self._client(port) for port in self.replica_ports]
        try:
            for i in range(samples):
                key = f"authbench:read-lag:{i}"
                primary.set(key, "1", ex=60)
                primary.wait(len(replicas), 2000)
                replica = replicas[i % len(replicas)]
                if replica.get(key) is None:
                    raise ReplicaStoreError("a replica did not get a key within WAIT's 2 s")
                primary.delete(key)
                deleted = time.perf_counter()
                while replica.get(key) is not None:
                    if time.perf_counter() - deleted > timeout_s:
                        raise ReplicaStoreError(f"a DEL did not reach a replica in {timeout_s} s")
                found.append((time.perf_counter() - deleted) * 1000.0)
        finally:
            primary.close()
            for replica in replicas:
                replica.close()
        return found

    def reads_served(self) -> dict[str, int | None]:
        """GET calls each node has served so far (INFO commandstats; a session read is a
        GET + PTTL), by name, primary first; None for a node that does not answer within
        0.2 s (killed or paused). A restarted node counts from 0 again."""
        found: dict[str, int | None] = {}
        for node in self.nodes:
            try:
                with redis.Redis(
                    port=node.port,
                    socket_timeout=0.2,
                    socket_connect_timeout=0.2,
                    retry=Retry(NoBackoff(), 0),  # redis-py's default retries for seconds
                ) as client:
                    stats = client.info("commandstats")
                found[node.name] = int(stats.get("cmdstat_get", {}).get("calls", 0))
            except redis.RedisError:
                found[node.name] = None
        return found

    # --- faults (chaos): read replica `index`, 0-based ---------------------------------
    def _replica_index(self, index: int) -> int:
        if not 0 <= index < len(self.replica_ports):
            raise ReplicaStoreError(
                f"there is no read replica {index + 1}; this store has {len(self.replica_ports)}"
            )
        return index + 1  # its place in `nodes`, after the primary

    def kill_replica(self, index: int) -> None:
        """SIGKILL read replica `index`; it stays down until `restart_replica`."""
        self.kill(self._replica_index(index))

    def pause_replica(self, index: int) -> None:
        self.pause(self._replica_index(index))

    def resume_replica(self, index: int) -> None:
        self.unpause(self._replica_index(index))

    def restart_replica(self, index: int, timeout_s: float = 30.0) -> None:
        """Start a killed read replica again (same port, `replicaof` the primary, empty:
        no persistence); return once its link is up, its full sync done."""
        node = self.nodes[self._replica_index(index)]
        if node.alive():
            raise ReplicaStoreError(f"{node.name} is still running")
        node.start()
        deadline = time.monotonic() + timeout_s
        wait_ping(node, self._client(node.port), deadline, ReplicaStoreError)
        self._wait_link_up(node, deadline)

    # --- life -------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise ReplicaStoreError("redis-server was not found on PATH")
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        names = [PRIMARY_NAME, *(replica_name(i) for i in range(len(self.ports) - 1))]
        self.nodes = [
            _Node(name, port, self._argv(server, port, i > 0), logs / f"{name}.log")
            for i, (name, port) in enumerate(zip(names, self.ports, strict=True))
        ]
        deadline = time.monotonic() + timeout_s
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                wait_ping(node, self._client(node.port), deadline, ReplicaStoreError)
            for node in self.nodes[1:]:
                self._wait_link_up(node, deadline)
        except BaseException:
            self.stop()
            raise

    def _argv(self, server: str, port: int, replica: bool) -> list[str]:
        data_dir = self.workdir / f"redis-{port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--loglevel", "warning", "--logfile", "",
        ]  # fmt: skip
        if replica:
            # Diskless sync: the replica loads the primary's data from the socket, no RDB
            # file on the way (nothing is persisted anywhere in this topology).
            argv += ["--replicaof", "127.0.0.1", str(self.primary_port)]
            argv += ["--repl-diskless-load", "on-empty-db"]
        else:
            argv += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        return argv

    @staticmethod
    def _client(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)

    def _wait_link_up(self, node: _Node, deadline: float) -> None:
        """Until the replica says its link to the primary is up (the first sync done)."""
        with self._client(node.port) as client:
            info: dict[str, object] = {}
            while True:
                if not node.alive():
                    raise ReplicaStoreError(f"{node.name} exited; see {node.log_path}")
                try:
                    info = client.info("replication")
                    if info.get("master_link_status") == "up":
                        return
                except redis.RedisError as err:
                    info = {"error": str(err)}
                if time.monotonic() > deadline:
                    raise ReplicaStoreError(
                        f"{node.name} did not sync with the primary in time: "
                        f"{info.get('master_link_status', info)}"
                    )
                time.sleep(0.05)
