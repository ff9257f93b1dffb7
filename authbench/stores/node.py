"""One redis-server (or Sentinel) process of a store topology, and waiting for it to
answer: what `sentinel.py` and `cluster.py` both start."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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
