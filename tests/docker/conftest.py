"""The compose stack for tests: a real engine, real images, a project of its own.

In CI (the CI variable set) a missing engine or compose v2 fails the run loudly; elsewhere
the docker tests are skipped with the reason. The stack is always taken down, volumes
included, whatever the tests did.

The stack comes up the way a user's first `docker compose up` does: the images are built by
that `up` (each session tags its own, so the build always happens, and removes them at the
end). The gateway is published on 127.0.0.1:8080, as for users. Two runs of this suite on one
machine (engineers sharing it) would fight over that port and over the project, so a run
first takes a machine-wide lock; and outside CI, when something else holds 8080, the stack
is published on a free port instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authbench.process import free_port_block
from authbench.targets.compose import ComposeTarget

PROJECT = "authbench-test"
# This session's own tags of the two images (removed at the end).
SERVICE_IMAGE = f"authbench-test:{os.getpid()}"
LOAD_IMAGE = f"authbench-test-load:{os.getpid()}"
GATEWAY_PORT = 8080
LOCK = Path(tempfile.gettempdir()) / "authbench-docker-tests.lock"
LOCK_WAIT_S = 240.0
# Small enough that seeding argon2id hashes does not compete with the tests for CPU.
SEED_USERS = 40


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_engine() -> None:
    problem = ComposeTarget.engine_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(
            f"CI needs Docker for the compose tests and it is not usable: {problem}. "
            ".ci/run installs and starts it (scripts/setup-docker.sh); see its output.",
            pytrace=False,
        )
    pytest.skip(f"no usable Docker engine ({problem}); run scripts/setup-docker.sh")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test against the stack shows the containers' state and last log lines."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    target = getattr(item, "funcargs", {}).get("compose_stack")
    if report.when == "call" and report.failed and isinstance(target, ComposeTarget):
        states = "\n".join(str(c) for c in target.containers(all=True))
        report.sections.append(("compose ps", states))
        report.sections.append(("compose logs", target.logs(tail=40)))


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    with LOCK.open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another run of the docker tests held {LOCK} for too long")
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _gateway_port() -> int:
    chosen = os.environ.get("GATEWAY_PORT", "")
    if chosen.isdigit() and not in_ci():  # an engineer on a shared machine names a port
        return int(chosen)
    if _port_free(GATEWAY_PORT):
        return GATEWAY_PORT
    if in_ci():
        pytest.fail(f"127.0.0.1:{GATEWAY_PORT} is taken; CI publishes the gateway there")
    port = free_port_block()
    print(f"127.0.0.1:{GATEWAY_PORT} is taken by something else; gateway on :{port}")
    return port


@pytest.fixture(scope="session")
def compose_stack() -> Iterator[ComposeTarget]:
    """The whole stack (3 replicas) up and healthy; taken down at the end of the session."""
    require_engine()
    with _machine_lock():
        yield from _stack()


def _stack() -> Iterator[ComposeTarget]:
    target = ComposeTarget(
        project_name=PROJECT,
        env={
            "AUTH_SEED_USERS": str(SEED_USERS),
            "JWT_REVOCATION": "none",
            "REDIS_APPENDONLY": "no",
            "LOG_LEVEL": "INFO",
            # The default 250 ms is for a quiet benchmark host; on a shared, busy one a
            # slow (not dead) Redis would turn into 503s and fail the no-failure checks.
            # A killed Redis still fails at once (its name stops resolving).
            "REDIS_TIMEOUT_MS": "1000",
            "AUTHBENCH_IMAGE": SERVICE_IMAGE,
            "AUTHBENCH_LOAD_IMAGE": LOAD_IMAGE,
        },
    )
    target.down()  # a stack left over by a killed run would hold the port
    target.env["GATEWAY_PORT"] = str(_gateway_port())
    try:
        started = time.monotonic()
        # No separate build: `up` builds the missing image itself, as for a user.
        target.up(replicas=3, build=False, timeout_s=240)
        print(f"compose stack built and up in {time.monotonic() - started:.1f} s")
        yield target
    except BaseException:
        print(target.logs(tail=80))
        raise
    finally:
        target.down()
        subprocess.run(
            ["docker", "image", "rm", SERVICE_IMAGE, LOAD_IMAGE],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
