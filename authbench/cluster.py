"""LocalCluster: Redis, the auth service, N replicas and the gateway as loopback processes.

This is `authbench up`, and the harness that tests, `bench` and `chaos` use. Children are
real processes (`python -m <service>`, a real `redis-server`), each with its own log file.
Every child gets PR_SET_PDEATHSIG, so even a SIGKILLed supervisor leaves nothing behind;
`stop()` terminates them (SIGTERM, then SIGKILL after a grace period) and reaps them.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

REDIS_MISSING = (
    "redis-server was not found on PATH. Install it first, e.g.\n"
    "  Debian/Ubuntu: sudo apt-get install redis-server\n"
    "  macOS:         brew install redis\n"
    "authbench starts its own redis-server on a port of its own; it never touches yours."
)


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Ports:
    gateway: int = 8080
    auth: int = 8081
    resource_base: int = 8101
    redis: int = 6390

    @classmethod
    def block(cls, base: int) -> Ports:
        """A private block of ports (tests and benchmarks never clash with `up`)."""
        return cls(gateway=base, auth=base + 1, resource_base=base + 21, redis=base + 10)


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


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """preexec_fn for children: the kernel SIGKILLs them if their parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class LocalCluster:
    replicas: int = 3
    ports: Ports = field(default_factory=Ports)
    settings_env: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: PROJECT_ROOT / ".authbench")
    redis_persistence: str = "none"  # none | aof
    children: list[Child] = field(default_factory=list, init=False)
    redis: Child | None = field(default=None, init=False)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.auth}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports.redis}/0"

    def replica_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.ports.resource_base + i}" for i in range(self.replicas)]

    # --- building the children ----------------------------------------------------
    def _service_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(self.settings_env)
        env.update(
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(PROJECT_ROOT),
            REDIS_URL=self.redis_url,
            AUTH_URL=self.auth_url,
            RESOURCE_URLS=",".join(self.replica_urls()),
        )
        if env.get("JWT_ALG") == "HS256" and not env.get("JWT_HS256_SECRET"):
            # One random secret for this cluster's lifetime, handed to every process.
            self.settings_env["JWT_HS256_SECRET"] = secrets.token_urlsafe(48)
            env["JWT_HS256_SECRET"] = self.settings_env["JWT_HS256_SECRET"]
        env.update(extra)
        return env

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
        return Child("redis", argv, dict(os.environ), self.workdir / "logs" / "redis.log")

    def _python_child(self, name: str, module: str, port: int, extra: dict[str, str]) -> Child:
        env = self._service_env({"PORT": str(port), "HOST": "127.0.0.1", **extra})
        return Child(
            name,
            [sys.executable, "-m", module],
            env,
            self.workdir / "logs" / f"{name}.log",
            health_url=f"http://127.0.0.1:{port}/readyz",
        )

    def plan(self) -> list[Child]:
        children = [
            self._python_child("auth", "auth_service", self.ports.auth, {}),
        ]
        for i in range(self.replicas):
            port = self.ports.resource_base + i
            children.append(
                self._python_child(
                    f"resource-{i + 1}",
                    "resource_service",
                    port,
                    {"REPLICA_ID": f"replica-{i + 1}"},
                )
            )
        children.append(self._python_child("gateway", "gateway", self.ports.gateway, {}))
        return children

    # --- lifecycle --------------------------------------------------------------------
    def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = child.log_path.open("ab")
        try:
            child.process = subprocess.Popen(
                child.argv,
                env=child.env,
                cwd=str(PROJECT_ROOT),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def start(self, timeout_s: float = 60.0, progress: Callable[[str], None] | None = None) -> None:
        """Start everything and wait until each service reports ready."""
        say = progress or (lambda _msg: None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.redis = self._redis_child()
            self._spawn(self.redis)
            self.wait_redis(timeout_s)
            say(f"redis-server ready on 127.0.0.1:{self.ports.redis} (pid {self.redis.pid})")
            self.children = self.plan()
            for child in self.children:
                self._spawn(child)
            deadline = time.monotonic() + timeout_s
            for child in self.children:
                self._wait_ready(child, deadline)
                say(f"{child.name} ready (pid {child.pid})")
        except BaseException:
            self.stop()
            raise

    def wait_redis(self, timeout_s: float = 30.0) -> None:
        import redis

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
        for child in reversed(self.all_children()):
            if child.alive():
                assert child.process is not None
                child.process.send_signal(signal.SIGCONT)  # a paused Redis must hear TERM
                child.process.terminate()
        deadline = time.monotonic() + grace_s
        for child in self.all_children():
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    # --- faults (chaos scenarios and tests) -------------------------------------------
    def kill_redis(self) -> None:
        assert self.redis is not None and self.redis.process is not None
        self.redis.process.kill()
        self.redis.process.wait()

    def pause_redis(self) -> None:
        assert self.redis is not None and self.redis.process is not None
        self.redis.process.send_signal(signal.SIGSTOP)

    def resume_redis(self) -> None:
        assert self.redis is not None and self.redis.process is not None
        self.redis.process.send_signal(signal.SIGCONT)

    def start_redis(self, wait: bool = True) -> None:
        """(Re)start redis-server with the same port and persistence as before."""
        assert self.redis is not None
        if self.redis.alive():
            return
        self._spawn(self.redis)
        if wait:
            self.wait_redis()

    def child(self, name: str) -> Child:
        for child in self.all_children():
            if child.name == name:
                return child
        raise KeyError(name)

    def restart_child(self, name: str, timeout_s: float = 30.0) -> None:
        child = self.child(name)
        if child.alive():
            raise ClusterError(f"{name} is still running")
        self._spawn(child)
        self._wait_ready(child, time.monotonic() + timeout_s)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port_base(size: int) -> int:
    """The start of `size` consecutive free loopback ports (never the reserved 8080s/6390).

    Taken below the kernel's ephemeral range, so no client socket (ours or anyone's) is
    handed one of them between this check and the service binding it, and no readiness
    probe can connect to itself.
    """
    low = _ephemeral_start()
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(10000, max(10001, low - size))
        if all(_port_free(port) for port in range(base, base + size)):
            return base
    raise ClusterError("no free block of ports on 127.0.0.1")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_status(url: str, timeout_s: float = 1.0) -> int | None:
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


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@contextlib.contextmanager
def running(**kwargs: object) -> Iterator[LocalCluster]:
    cluster = LocalCluster(**kwargs)  # type: ignore[arg-type]
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
