"""Mode opaque on compose (issue 15): a stack authbench brings up serves it, and the
harness, attached to that stack as chaos attaches, sees that it does, without the secret.

Before, compose passed INTROSPECT_SECRET only when .env set one, so `authbench bench
--target compose --modes opaque` failed every login and chaos left opaque out.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from authbench.chaos.scenarios import modes_served
from authbench.modes import OPAQUE
from authbench.targets.base import REDACTED
from authbench.targets.compose import INTROSPECT_SECRET, ComposeTarget
from tests.client import bearer, login, request


def _compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return done.returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="needs the docker compose CLI")
def test_a_stack_to_be_brought_up_gets_a_secret_that_settings_report_only_as_set() -> None:
    # A project nothing runs: `config` needs the CLI alone, no daemon and no build.
    target = ComposeTarget(project_name="authbench-never-started", env={"GATEWAY_PORT": "1"})
    services = target.config["services"]
    secret = services["resource"]["environment"][INTROSPECT_SECRET]
    assert len(secret) >= 32  # what the services require (authcore.config)
    assert services["auth"]["environment"][INTROSPECT_SECRET] == secret  # both sides
    assert target.settings[INTROSPECT_SECRET] == REDACTED
    assert secret not in str(dict(target.settings))
    assert OPAQUE.served_by(target.settings)
    # A secret the user names is used as it is.
    named = ComposeTarget(project_name="authbench-never-started", env={INTROSPECT_SECRET: "n" * 40})
    assert named.config["services"]["auth"]["environment"][INTROSPECT_SECRET] == "n" * 40


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_stack_serves_opaque_and_an_attached_harness_sees_it(
    compose_stack: ComposeTarget,
) -> None:
    if not compose_stack.is_up():  # test_compose_stack's last test takes the stack down
        compose_stack.up(replicas=1, build=False, timeout_s=240)
    url = compose_stack.gateway_url
    answer = login(url, 3, "opaque")
    assert answer.status == 200, answer.body
    me = request(url, "GET", "/api/me", headers=bearer(answer))
    assert me.status == 200, me.body
    assert me.json()["user"] == "user3"

    # A fresh object attached to the running stack (what `authbench chaos --target
    # compose` makes) adopts the stack's own secret: opaque is served, nothing recreated.
    attached = ComposeTarget(
        project_name=compose_stack.project_name,
        env={"GATEWAY_PORT": str(compose_stack.gateway_port)},
    )
    assert attached.settings[INTROSPECT_SECRET] == REDACTED
    assert attached.env[INTROSPECT_SECRET] == compose_stack.env[INTROSPECT_SECRET]
    assert compose_stack.env[INTROSPECT_SECRET] not in str(dict(attached.settings))
    assert OPAQUE in [mode for mode, _group in modes_served(attached)]
