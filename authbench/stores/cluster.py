"""ShardedCluster: N Redis Cluster primaries (no replicas) as loopback processes.

The `cluster:N` store topology (`--store cluster:N`, issue 17 item 5). Real
`redis-server --cluster-enabled yes` processes, each with its own data directory and
nodes file, and the cluster bus on a port named explicitly (`--cluster-port`; Redis's
default, port + 10000, could land on anything). The 16384 slots are split evenly with
CLUSTER ADDSLOTSRANGE, the nodes are introduced with CLUSTER MEET, and `start` returns
once every node says `cluster_state:ok` and knows all N nodes. One shard works too (all
slots on one node): the same client code path as N shards.

The services reach it with REDIS_CLUSTER_NODES (redis-py's async RedisCluster learns the
slot map from any of them).

    with ShardedCluster(ports=(p0, p1, p2), bus_ports=(b0, b1, b2), workdir=d) as store:
        store.nodes_setting          # "127.0.0.1:p0,127.0.0.1:p1,127.0.0.1:p2"
        store.keys_per_node()        # {p0: 120, p1: 131, p2: 117}
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from authbench.stores.node import NodeSet, wait_ping
from authbench.stores.node import StoreNode as _Node

SLOTS = 16384
MAX_SHARDS = 8


class ClusterStoreError(RuntimeError):
    """The Redis Cluster could not be started or did not become ready in time."""


def slot_ranges(shards: int) -> list[tuple[int, int]]:
    """The slots of each shard: `shards` contiguous, even ranges covering 0..16383."""
    bounds = [SLOTS * i // shards for i in range(shards + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(shards)]


@dataclass
class ShardedCluster(NodeSet):
    ports: tuple[int, ...]  # one primary per port
    bus_ports: tuple[int, ...]  # each node's cluster bus, same order
    workdir: Path
    node_timeout_ms: int = 2000
    nodes: list[_Node] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.ports) <= MAX_SHARDS:
            raise ClusterStoreError(
                f"a Redis Cluster store has 1 to {MAX_SHARDS} shards, not {len(self.ports)}"
            )
        if len(self.bus_ports) != len(self.ports):
            raise ClusterStoreError("one cluster-bus port per shard is needed")
        if len(set(self.ports) | set(self.bus_ports)) != 2 * len(self.ports):
            raise ClusterStoreError("the shards' data and bus ports must all differ")

    # --- where it is ------------------------------------------------------------------
    @property
    def nodes_setting(self) -> str:
        """REDIS_CLUSTER_NODES for the services."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def describe(self) -> dict[str, object]:
        """What the manifest records about this store."""
        return {
            "kind": "cluster",
            "shards": len(self.ports),
            "ports": list(self.ports),
            "bus_ports": list(self.bus_ports),
            "replicas_per_shard": 0,
            "cluster_node_timeout_ms": self.node_timeout_ms,
            "cluster_require_full_coverage": "no",
            "slot_ranges": [list(r) for r in slot_ranges(len(self.ports))],
        }

    def shard_of(self, keys: list[str]) -> list[int]:
        """The shard index (0-based) serving each key, by CLUSTER KEYSLOT asked of a live
        node and this cluster's slot ranges."""
        node = next((n for n in self.nodes if n.alive()), None)
        if node is None:
            raise ClusterStoreError("no shard is running to ask CLUSTER KEYSLOT")
        ranges = slot_ranges(len(self.nodes))
        with self._client(node.port) as client:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.execute_command("CLUSTER", "KEYSLOT", key)
            slots = [int(s) for s in pipe.execute()]
        return [next(i for i, (a, b) in enumerate(ranges) if a <= slot <= b) for slot in slots]

    def restart(self, index: int, timeout_s: float = 30.0) -> None:
        """Start shard `index` again: same port and nodes file, so it rejoins the cluster
        with its slots (and no data: no persistence); return once every node says ok."""
        node = self.nodes[index]
        if node.alive():
            raise ClusterStoreError(f"{node.name} is still running")
        node.start()
        deadline = time.monotonic() + timeout_s
        self._wait_ping(node, deadline)
        for each in self.nodes:
            self._wait_state_ok(each, deadline)

    def keys_per_node(self) -> dict[int, int]:
        """port -> DBSIZE of each live shard."""
        found = {}
        for node in self.nodes:
            if node.alive():
                with self._client(node.port) as client:
                    found[node.port] = int(client.dbsize())
        return found

    # --- life -------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise ClusterStoreError("redis-server was not found on PATH")
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.nodes = [
            _Node(
                f"redis-shard-{i + 1}",
                port,
                self._argv(server, port, bus),
                logs / f"redis-shard-{i + 1}.log",
            )
            for i, (port, bus) in enumerate(zip(self.ports, self.bus_ports, strict=True))
        ]
        deadline = time.monotonic() + timeout_s
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                self._wait_ping(node, deadline)
            self._create(deadline)
        except BaseException:
            self.stop()
            raise

    def _argv(self, server: str, port: int, bus: int) -> list[str]:
        data_dir = self.workdir / f"redis-{port}"
        if data_dir.exists():  # a nodes file of an earlier run would rejoin its old cluster
            shutil.rmtree(data_dir)
        data_dir.mkdir(parents=True)
        return [
            server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--loglevel", "notice", "--logfile", "",
            "--cluster-enabled", "yes", "--cluster-port", str(bus),
            "--cluster-config-file", str(data_dir / f"nodes-{port}.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A dead shard fails only its own slots: by default the live shards refuse
            # every command (CLUSTERDOWN) once it is marked failed (measured: tests/e2e).
            "--cluster-require-full-coverage", "no",
        ]  # fmt: skip

    # --- creating the cluster -----------------------------------------------------------
    def _create(self, deadline: float) -> None:
        """ADDSLOTSRANGE on each node, MEET from the first, then wait for state ok."""
        for node, (first, last) in zip(self.nodes, slot_ranges(len(self.nodes)), strict=True):
            with self._client(node.port) as client:
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        with self._client(self.nodes[0].port) as client:
            for node in self.nodes[1:]:
                # MEET names the data port; Redis 7 takes the bus port as a third argument.
                bus = self.bus_ports[self.nodes.index(node)]
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
        for node in self.nodes:
            self._wait_state_ok(node, deadline)

    # --- waiting ----------------------------------------------------------------------
    @staticmethod
    def _client(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)

    def _wait_ping(self, node: _Node, deadline: float) -> None:
        wait_ping(node, self._client(node.port), deadline, ClusterStoreError)

    def _wait_state_ok(self, node: _Node, deadline: float) -> None:
        """Until the node reports cluster_state:ok, knows every node and every slot."""
        want = len(self.nodes)
        with self._client(node.port) as client:
            info: dict[str, object] = {}
            while True:
                if not node.alive():
                    raise ClusterStoreError(f"{node.name} exited; see {node.log_path}")
                try:
                    info = client.cluster("INFO")
                    if (
                        info.get("cluster_state") == "ok"
                        and int(str(info.get("cluster_known_nodes", 0))) == want
                        and int(str(info.get("cluster_slots_ok", 0))) == SLOTS
                    ):
                        return
                except redis.RedisError as err:
                    info = {"error": str(err)}
                if time.monotonic() > deadline:
                    raise ClusterStoreError(
                        f"{node.name} did not reach cluster_state:ok in time: {info}"
                    )
                time.sleep(0.05)
