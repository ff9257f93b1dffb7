"""The harness's child processes, private port blocks and project root: one definition each.

Every process the harness starts (redis-server, the services, Locust, the delay proxy,
the benchmark scripts' servers) goes through `spawn()`, so all share one policy:

- it dies with its parent: the kernel sends it SIGTERM when the process that spawned it
  ends, even by SIGKILL (PR_SET_PDEATHSIG), so no crash leaves load or servers behind.
  SIGTERM, not SIGKILL, so each child still shuts down its own way: Locust writes its
  CSVs and ends the workers it forked, the services close their connections;
- it leads a process group of its own, so Ctrl-C in a terminal reaches only the
  harness (which then stops its children in order) and `stop()` signals the child and
  anything it forked (Locust `--processes` workers, gateway workers) together;
- its output goes to a log file, never to the harness's terminal.

Private deployments (tests, bench, chaos) take a block of PORT_BLOCK consecutive loopback
ports from `free_port_block()`; their layouts (`cluster.Ports.block`,
`chaos.topology.ChaosPorts`) fit inside one block.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Ports one private deployment may use: the widest layout is the chaos cluster's (three
# replica groups of up to 10 replicas, their gateways, auth, Redis and the delay proxy).
PORT_BLOCK = 50

DEATH_SIGNAL = signal.SIGTERM
_PR_SET_PDEATHSIG = 1


class PortsError(RuntimeError):
    """No block of free loopback ports could be found, or the one asked for is taken."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, DEATH_SIGNAL)


def python_env(
    extra: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()
) -> dict[str, str]:
    """The environment of a Python child: ours without PYTHON* variables (a caller's
    PYTHONPATH or PYTHONHOME must not change what runs), the project importable, output
    unbuffered; variables starting with a prefix in `drop` are left out too."""
    prefixes = ("PYTHON", *drop)
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(PYTHONPATH=str(PROJECT_ROOT), PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT_ROOT,
    append: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a child under the one policy above; stdout and stderr go to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab" if append else "wb") as log:
        return subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send `signum` to the child's process group (the child and what it forked)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def stop(processes: Iterable[subprocess.Popen[bytes]], grace_s: float = 5.0) -> None:
    """Stop children: SIGTERM to each group now (in the order given), SIGKILL to the
    groups still alive after `grace_s`; every child is reaped."""
    children = list(processes)
    for process in children:
        if process.poll() is None:
            signal_group(process, signal.SIGCONT)  # a paused (SIGSTOPped) child must hear it
            signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in children:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (a service and the
    workers it forked, Locust and its --processes workers), re-walked at every call;
    0 when the process is gone."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


# --- private port blocks -------------------------------------------------------------------
def port_block_free(base: int, size: int = PORT_BLOCK) -> bool:
    """Whether every port of base..base+size-1 can be bound on 127.0.0.1 right now.

    Bound as the services bind (SO_REUSEADDR): a port whose old connections sit in
    TIME_WAIT is free for them, a port something listens on is not.
    """
    for port in range(base, base + size):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(size: int = PORT_BLOCK) -> int:
    """The start of `size` consecutive free loopback ports (never the contract's 8080s).

    Taken below the kernel's ephemeral range, so no client socket (ours or anyone's) is
    handed one of them between this check and the service binding it, and no readiness
    probe can connect to itself.
    """
    low = _ephemeral_start()
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(10000, max(10001, low - size))
        if port_block_free(base, size):
            return base
    raise PortsError("no free block of ports on 127.0.0.1")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default
