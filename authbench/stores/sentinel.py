"""SentinelSet: a Redis primary, one replica and three Sentinels as loopback processes.

The `sentinel` store topology (`--store sentinel`, issue 16). Real `redis-server`
processes: the data nodes are plain servers (the replica with `--replicaof`), and each
Sentinel is `redis-server <conf> --sentinel` (what the `redis-sentinel` binary is), with
a config file of its own that it rewrites as it learns the topology. The services find
the primary by asking the Sentinels (REDIS_SENTINELS, REDIS_SENTINEL_MASTER).

Failover is tuned for a benchmark, not for a WAN: a primary that does not answer for
`down_after_ms` is subjectively down; two Sentinels agreeing (quorum 2 of 3) make it
objectively down and one of them promotes the replica. `failover_timeout_ms` bounds a
failover attempt. Both values go into the run's manifest.

    with SentinelSet(ports=(p0, p1), sentinel_ports=(s0, s1, s2), workdir=d) as store:
        store.primary_port()         # asked of the Sentinels
        old = store.kill_primary()   # SIGKILL
        store.wait_failover(old)     # until a new primary is named and answers as one
        store.rejoin()               # the killed node comes back as a replica

A partition of the replication link (`partition_proxy=True`, the failover-partition
scenarios): the delay proxy runs from the start, relaying to the primary, while the
replica still replicates directly. `cut_replica_link()` re-points the replica at the
proxy (a partial resync through it) and cuts the proxy's link: the primary goes on
acknowledging writes that never reach the replica, while the Sentinels still reach both
nodes directly. The re-point is made just before the cut, not at start, because a
Sentinel re-points a replica whose master address is not the one it monitors
(`+fix-slave-config`) once it has seen that address in two of its INFO polls of the
replica, which are 10 s apart while the replica's link looks up; so a partition followed
by a kill within some seconds is not undone. `replication()` tells whether it held.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from authbench.delay_proxy import DelayProxy
from authbench.stores.node import NodeSet, wait_ping
from authbench.stores.node import StoreNode as _Node

MASTER_NAME = "authbench"
QUORUM = 2


class SentinelError(RuntimeError):
    """The Sentinel set could not be started or did not fail over in time."""


@dataclass
class SentinelSet(NodeSet):
    ports: tuple[int, int]  # the data nodes: the first starts as primary, then a replica
    sentinel_ports: tuple[int, int, int]
    workdir: Path
    master_name: str = MASTER_NAME
    down_after_ms: int = 500
    failover_timeout_ms: int = 2000
    # Replica distance: the replica replicates through the delay proxy (on this port),
    # each byte held this many ms each way. None: directly on loopback. Caveat, found by
    # the failover runs: the Sentinels re-point a replica whose master address is not the
    # one they monitor (+fix-slave-config, some seconds after start), after which it
    # replicates directly; so no scenario uses this until the proxy sits at the address
    # the Sentinels know.
    replica_delay_ms: float | None = None
    proxy_port: int | None = None
    # The proxy runs from the start (delay off, the replica direct) so that
    # `cut_replica_link` can partition the replica from the primary.
    partition_proxy: bool = False
    proxy: DelayProxy | None = field(default=None, init=False)
    nodes: list[_Node] = field(default_factory=list, init=False)
    sentinels: list[_Node] = field(default_factory=list, init=False)
    killed: _Node | None = field(default=None, init=False)

    # --- where it is ------------------------------------------------------------------
    @property
    def sentinel_addresses(self) -> str:
        """REDIS_SENTINELS for the services."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def describe(self) -> dict[str, object]:
        """What the manifest records about this store."""
        return {
            "kind": "sentinel",
            "data_ports": list(self.ports),
            "sentinel_ports": list(self.sentinel_ports),
            "master_name": self.master_name,
            "quorum": QUORUM,
            "down_after_milliseconds": self.down_after_ms,
            "failover_timeout_ms": self.failover_timeout_ms,
            "replica_delay_ms_each_way": self.replica_delay_ms,
            "replica_link_proxy": self.proxy_port if self._wants_proxy else None,
        }

    @property
    def _wants_proxy(self) -> bool:
        return self.replica_delay_ms is not None or self.partition_proxy

    def processes(self) -> dict[str, int]:
        """name -> pid of every live process (CPU sampling)."""
        found = {n.name: n.pid for n in self.nodes + self.sentinels if n.alive() and n.pid}
        if self.proxy is not None and self.proxy.pid is not None:
            found["replica-proxy"] = self.proxy.pid
        return found

    # --- life -------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise SentinelError("redis-server was not found on PATH")
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        primary, replica = self.ports
        self.nodes = [
            _Node(
                f"redis-{i + 1}", port, self._data_argv(server, port), logs / f"redis-{i + 1}.log"
            )
            for i, port in enumerate(self.ports)
        ]
        upstream = primary
        deadline = time.monotonic() + timeout_s
        try:
            if self._wants_proxy:
                if self.proxy_port is None:
                    raise SentinelError("a replica delay or partition needs a proxy_port")
                self.proxy = DelayProxy(
                    self.proxy_port, primary, self.replica_delay_ms or 0.0,
                    logs / "replica-proxy.log",
                )  # fmt: skip
                self.proxy.start()
            if self.proxy is not None and self.replica_delay_ms is not None:
                self.proxy.set_delay(self.replica_delay_ms)
                upstream = self.proxy.listen
            self.nodes[1].argv += ["--replicaof", "127.0.0.1", str(upstream)]
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                self._wait_ping(node, deadline)
            self._wait_replica_synced(replica, deadline)
            for i, port in enumerate(self.sentinel_ports):
                conf = self.workdir / f"sentinel-{port}.conf"
                conf.write_text(self._sentinel_conf(port, primary))
                node = _Node(f"sentinel-{i + 1}", port, [server, str(conf), "--sentinel"],
                             logs / f"sentinel-{i + 1}.log")  # fmt: skip
                self.sentinels.append(node)
                node.start()
            self._wait_sentinels_agree(deadline)
        except BaseException:
            self.stop()
            raise

    def spawned(self) -> list[subprocess.Popen[bytes]]:
        """The Sentinels first, then the data nodes and the replica link's proxy."""
        procs = [n.proc for n in self.sentinels + self.nodes if n.proc is not None]
        if self.proxy is not None and self.proxy.process is not None:
            procs.append(self.proxy.process)
        return procs

    def _data_argv(self, server: str, port: int) -> list[str]:
        data_dir = self.workdir / f"redis-{port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        return [
            server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--loglevel", "notice", "--logfile", "",
            # A replica that (re)joins is sent the data at once, not after Redis's default
            # 5 s wait for more replicas to share one transfer.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def _sentinel_conf(self, port: int, primary: int) -> str:
        name = self.master_name
        return (
            f'port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile ""\n'
            f"dir {self.workdir}\n"
            f"sentinel monitor {name} 127.0.0.1 {primary} {QUORUM}\n"
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {name} 1\n"
        )

    # --- waiting ----------------------------------------------------------------------
    @staticmethod
    def _client(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)

    def _wait_ping(self, node: _Node, deadline: float) -> None:
        wait_ping(node, self._client(node.port), deadline, SentinelError)

    def _wait_replica_synced(self, port: int, deadline: float) -> None:
        with self._client(port) as client:
            state: dict[str, object] = {}
            while True:
                try:
                    state = client.info("replication")
                    if state.get("master_link_status") == "up":
                        return
                except redis.RedisError as err:
                    state = {"error": str(err)}
                if time.monotonic() > deadline:
                    raise SentinelError(f"the replica on {port} did not sync in time: {state}")
                time.sleep(0.05)

    def _wait_sentinels_agree(self, deadline: float) -> None:
        """Until every Sentinel knows the primary, its replica and the two other
        Sentinels: before that, a failover could not reach its quorum."""
        for node in self.sentinels:
            with self._client(node.port) as client:
                while True:
                    if not node.alive():
                        raise SentinelError(f"{node.name} exited; see {node.log_path}")
                    try:
                        state = client.sentinel_master(self.master_name)
                        if (
                            int(state.get("num-slaves", 0)) >= 1
                            and int(state.get("num-other-sentinels", 0)) >= 2
                        ):
                            break
                    except redis.RedisError:
                        pass
                    if time.monotonic() > deadline:
                        raise SentinelError(f"{node.name} did not learn the topology in time")
                    time.sleep(0.1)

    # --- the primary ------------------------------------------------------------------
    def primary_port(self) -> int:
        """The primary's port as the Sentinels name it (the first that answers)."""
        for node in self.sentinels:
            if not node.alive():
                continue
            try:
                with self._client(node.port) as client:
                    found = client.sentinel_get_master_addr_by_name(self.master_name)
                if found:
                    return int(found[1])
            except redis.RedisError:
                continue
        raise SentinelError("no Sentinel answered")

    def node(self, port: int) -> _Node:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def kill_primary(self) -> int:
        """SIGKILL the current primary; returns its port."""
        port = self.primary_port()
        victim = self.node(port)
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait()
        self.killed = victim
        return port

    def pause_primary(self) -> int:
        """SIGSTOP the current primary (a hung host: its connections stay open and never
        answer, unlike a dead one's, which are refused); returns its port. `unpause` (or
        `stop`) ends it."""
        port = self.primary_port()
        self.pause(self.nodes.index(self.node(port)))
        return port

    def wait_failover(self, old_port: int, timeout_s: float = 30.0) -> tuple[float, int]:
        """Block until the Sentinels name a primary other than `old_port` and it answers
        as a primary; returns (wall clock when first named, its port)."""
        deadline = time.monotonic() + timeout_s
        named_at: float | None = None
        while time.monotonic() < deadline:
            try:
                port = self.primary_port()
            except SentinelError:
                port = old_port
            if port != old_port:
                named_at = named_at or time.time()
                try:
                    with self._client(port) as client:
                        if client.execute_command("ROLE")[0] in (b"master", "master"):
                            return named_at, port
                except redis.RedisError:
                    pass
            time.sleep(0.02)
        raise SentinelError(f"no failover from port {old_port} within {timeout_s:g} s")

    def rejoin(self, timeout_s: float = 30.0) -> None:
        """Start the killed node again, as a replica of the current primary (as a
        supervisor would; started as a primary it would be an empty one until the
        Sentinels demote it)."""
        node = self.killed
        if node is None or node.alive():
            return
        primary = self.primary_port()
        server = node.argv[0]
        node.argv = [*self._data_argv(server, node.port), "--replicaof", "127.0.0.1", str(primary)]
        node.start()
        deadline = time.monotonic() + timeout_s
        self._wait_ping(node, deadline)
        self._wait_replica_synced(node.port, deadline)
        self.killed = None

    # --- a partitioned replica (partition_proxy) ----------------------------------------
    def cut_replica_link(self, timeout_s: float = 10.0) -> dict[str, object]:
        """Partition the replica from the primary: re-point it at the proxy, wait until it
        replicates through it, then cut the proxy's link. Returns what was done."""
        if self.proxy is None or self.proxy_port is None:
            raise SentinelError("this Sentinel set was started without partition_proxy")
        primary = self.primary_port()
        if primary != self.ports[0]:
            raise SentinelError(f"the proxy relays to {self.ports[0]}, the primary is {primary}")
        replica = next(n for n in self.nodes if n.port != primary and n.alive())
        started = time.monotonic()
        deadline = started + timeout_s
        with self._client(replica.port) as client:
            client.replicaof("127.0.0.1", self.proxy_port)
            while True:
                state = client.info("replication")
                if (
                    int(state.get("master_port", 0)) == self.proxy_port
                    and state.get("master_link_status") == "up"
                ):
                    break
                if time.monotonic() > deadline:
                    raise SentinelError(f"the replica did not resync through the proxy: {state}")
                time.sleep(0.02)
        resynced_s = time.monotonic() - started
        self.proxy.cut()
        return {
            "replica_port": replica.port,
            "proxy_port": self.proxy_port,
            "resync_through_proxy_s": round(resynced_s, 3),
            "cut_at": time.time(),
        }

    def replication(self) -> dict[str, object]:
        """The primary's and the replica's replication state now: offsets (the replica's
        lag in bytes of replication stream) and whether the replica still replicates
        through the proxy (the partition held; a Sentinel did not re-point it)."""
        primary = self.primary_port()
        found: dict[str, object] = {"primary_port": primary}
        offsets: dict[str, int] = {}
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                with self._client(node.port) as client:
                    state = client.info("replication")
            except redis.RedisError:
                continue
            if node.port == primary:
                offsets["primary_offset"] = int(state.get("master_repl_offset", 0))
            else:
                found["replica_port"] = node.port
                offsets["replica_offset"] = int(state.get("slave_repl_offset", 0))
                found["replica_master_port"] = int(state.get("master_port", 0))
                found["replica_link"] = state.get("master_link_status")
        found.update(offsets)
        if len(offsets) == 2:
            found["replica_lag_bytes"] = offsets["primary_offset"] - offsets["replica_offset"]
        found["through_proxy"] = (
            self.proxy_port is not None and found.get("replica_master_port") == self.proxy_port
        )
        return found

    def replica_offsets(self) -> dict[int, int]:
        """port -> replication offset of each live data node (diagnostics)."""
        offsets = {}
        for node in self.nodes:
            if node.alive():
                try:
                    with self._client(node.port) as client:
                        offsets[node.port] = int(client.info("replication")["master_repl_offset"])
                except (redis.RedisError, KeyError):
                    continue
        return offsets
