"""A gateway in front of two real echo upstreams (tests/gateway/echo_upstream.py)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authbench.process import PROJECT_ROOT, free_port_block
from authbench.targets.base import http_status

ADMIN_OFFSET = 30  # the operator port: block base + 30 (upstreams sit right after base)


@dataclass
class GatewayRig:
    port: int
    upstream_ports: list[int]
    processes: dict[str, subprocess.Popen[bytes]]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.port + ADMIN_OFFSET}"


def _spawn(
    argv: list[str], env: dict[str, str], log: Path, nofile: int | None = None
) -> subprocess.Popen[bytes]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    full.update(PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1", **env)

    def _limit() -> None:  # pragma: no cover - runs in the child before exec
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=full,
            cwd=str(PROJECT_ROOT),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit,
        )


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while http_status(url) != 200:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


def start_rig(
    tmp: Path, env: dict[str, str] | None = None, upstreams: int = 2, nofile: int | None = None
) -> GatewayRig:
    """Echo upstreams and a gateway in front of them; `nofile` caps the gateway's
    open-files limit (soft and hard), as a small machine or container would."""
    base = free_port_block()
    ports = [base + 1 + i for i in range(upstreams)]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for port in ports:
            log = tmp / f"echo-{port}.log"
            procs[f"echo-{port}"] = proc = _spawn(
                [sys.executable, "-m", "tests.gateway.echo_upstream", str(port)], {}, log
            )
            _wait(f"http://127.0.0.1:{port}/healthz", proc, log)
        urls = ",".join(f"http://127.0.0.1:{p}" for p in ports)
        log = tmp / "gateway.log"
        procs["gateway"] = proc = _spawn(
            [sys.executable, "-m", "gateway"],
            {
                "PORT": str(base),
                "HOST": "127.0.0.1",
                "AUTH_URL": urls.split(",")[0],
                "RESOURCE_URLS": urls,
                "GATEWAY_WORKERS": "1",
                "HEALTH_INTERVAL_S": "0.2",
                "UPSTREAM_TIMEOUT_S": "0.5",
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "GATEWAY_ADMIN_PORT": str(base + ADMIN_OFFSET),
                **(env or {}),
            },
            log,
            nofile,
        )
        _wait(f"http://127.0.0.1:{base}/readyz", proc, log)
    except BaseException:
        stop_rig(procs)
        raise
    return GatewayRig(base, ports, procs, log)


def stop_rig(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayRig]:
    started = start_rig(tmp_path_factory.mktemp("gateway-rig"))
    yield started
    stop_rig(started.processes)
