"""The compose stack for tests: a real engine, real images, a project of its own.

In CI (the CI variable set) a missing engine or compose v2 fails the run loudly; elsewhere
the docker tests are skipped with the reason. The stack is always taken down, volumes
included, whatever the tests did.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from authbench.compose import ComposeTarget

PROJECT = "authbench-test"
# Small enough that seeding argon2id hashes does not compete with the tests for CPU.
SEED_USERS = 40


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_engine() -> None:
    problem = ComposeTarget.engine_problem()
    if problem is None:
        return
    if _in_ci():
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


@pytest.fixture(scope="session")
def compose_stack() -> Iterator[ComposeTarget]:
    """The whole stack (3 replicas) up and healthy; taken down at the end of the session."""
    require_engine()
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
        },
    )
    target.down()  # a stack left over by a killed run would hold the port
    try:
        started = time.monotonic()
        target.up(replicas=3, timeout_s=240)
        print(f"compose stack up in {time.monotonic() - started:.1f} s")
        yield target
    except BaseException:
        print(target.logs(tail=80))
        raise
    finally:
        target.down()
