"""A real redis-server that a test may pause, kill and start again on the same port."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from authbench.process import free_port_block


class RedisProcess:
    def __init__(self, port: int, workdir: Path) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server must be installed (scripts/setup.sh does it)"
        self.port = port
        self._argv = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir",
            str(workdir), "--appendonly", "no",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self._argv, stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1)
        try:
            for _ in range(200):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.02)
            raise RuntimeError("redis-server did not start")
        finally:
            client.close()

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(free_port_block(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_port(redis_server: RedisProcess) -> int:
    return redis_server.port
