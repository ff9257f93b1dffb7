"""Issue 2: `authbench up` starts everything, reports a dead child, and leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from authbench.process import PROJECT_ROOT, free_port_block
from authbench.targets.base import http_status
from tests.client import bearer, login, request

pytestmark = pytest.mark.slow  # runs `authbench up` as a user does, start to stop


def _wait_for(proc: subprocess.Popen[str], text: str, lines: list[str], timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("authbench up ended early:\n" + "".join(lines))
        lines.append(line)
        if text in line:
            return
    raise AssertionError(f"no {text!r} within {timeout}s:\n" + "".join(lines))


def test_up_runs_the_cluster_survives_a_dead_redis_and_stops_clean(tmp_path: Path) -> None:
    base = free_port_block()
    gateway = f"http://127.0.0.1:{base}"
    env = {**os.environ, "AUTH_SEED_USERS": "10", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authbench", "up", "--replicas", "2",
         "--gateway-port", str(base), "--redis-port", str(base + 10)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    try:
        _wait_for(proc, "authbench is up", lines, timeout=60)
        output = "".join(lines)
        assert gateway in output and f"127.0.0.1:{base + 10}" in output
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5  # redis, auth, 2 replicas, gateway
        token = bearer(login(gateway, 1, "jwt"))

        redis = next(c for c in children if "redis-server" in c.name())
        redis.kill()  # Redis killed on purpose is a normal scenario
        _wait_for(proc, "redis", lines, timeout=5)
        assert "exited" in lines[-1] and "rest keep running" in lines[-1]
        assert request(gateway, "GET", "/api/me", headers=token).status == 200

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    time.sleep(0.2)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left behind: {alive}"
    assert http_status(gateway + "/healthz") is None


def test_up_says_how_to_install_redis_when_it_is_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # an empty PATH: no redis-server
    base = free_port_block()
    result = subprocess.run(
        [sys.executable, "-m", "authbench", "up", "--gateway-port", str(base),
         "--redis-port", str(base + 10)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "redis-server was not found" in result.stderr
    assert "apt-get install redis-server" in result.stderr
