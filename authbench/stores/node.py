"""One redis-server (or Sentinel) process of a store topology, waiting for it to answer,
and what every topology of several such processes shares (NodeSet): what `sentinel.py`,
`cluster.py` and `replicas.py` start."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from authbench import process


@dataclass
class StoreNode:
    name: str
    port: int
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = process.spawn(self.argv, self.log_path, env=process.python_env())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def wait_ping(
    node: StoreNode, client: redis.Redis, deadline: float, error: type[RuntimeError]
) -> None:
    """Return once `node` answers PING on `client`; `error` when it exits or the deadline
    passes (each topology names its own error)."""
    with client:
        while True:
            if not node.alive():
                raise error(f"{node.name} exited; see {node.log_path}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise error(f"{node.name} did not answer PING in time")
            time.sleep(0.05)


class NodeSet:
    """A store of several processes (Sentinel, Cluster, read replicas): stopping them all,
    and `with` around start and stop. Each topology starts its own way."""

    nodes: list[StoreNode]  # the data nodes, a field of each topology

    def start(self, timeout_s: float = 30.0) -> None:
        raise NotImplementedError

    def processes(self) -> dict[str, int]:
        """name -> pid of every live data node (CPU sampling, --redis-cpus)."""
        return {n.name: n.pid for n in self.nodes if n.alive() and n.pid}

    def spawned(self) -> list[subprocess.Popen[bytes]]:
        """Every process the store started: its data nodes (a topology adds its others)."""
        return [n.proc for n in self.nodes if n.proc is not None]

    def stop(self, grace_s: float = 3.0) -> None:
        for node in self.nodes:  # a paused node would never act on SIGTERM: a lost grace
            if node.proc is not None and node.alive():
                node.proc.send_signal(signal.SIGCONT)
        process.stop(self.spawned(), grace_s)

    # --- faults (chaos): one data node, by its index in `nodes` ------------------------
    def _proc(self, index: int) -> subprocess.Popen[bytes]:
        proc = self.nodes[index].proc
        if proc is None:
            raise RuntimeError(f"{self.nodes[index].name} was never started")
        return proc

    def kill(self, index: int) -> None:
        """SIGKILL data node `index`; it stays down until the topology restarts it."""
        proc = self._proc(index)
        proc.kill()
        proc.wait()

    def pause(self, index: int) -> None:
        """SIGSTOP data node `index`: its connections stay open, nothing is answered."""
        self._proc(index).send_signal(signal.SIGSTOP)

    def unpause(self, index: int) -> None:
        """SIGCONT data node `index` (`stop` does it for every node anyway)."""
        self._proc(index).send_signal(signal.SIGCONT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()
