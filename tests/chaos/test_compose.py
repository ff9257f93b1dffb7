"""The kill scenario in containers: `authbench chaos --target compose` on a real stack.

A compose project of its own (its own network, volume and gateway port), with the
denylist on, so the stack runs `session` and `jwt+denylist`; Redis is SIGKILLed with
`docker compose kill` and started again with `docker compose start`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from authbench.chaos.load import LoadShape
from authbench.chaos.run import run_chaos
from authbench.chaos.scenarios import SCENARIOS, ChaosOptions, Timing, cannot_run, modes_served
from authbench.modes import JWT_DENYLIST, OPAQUE, SESSION
from authbench.process import free_port_block
from authbench.targets.compose import ComposeTarget

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeTarget]:
    problem = ComposeTarget.engine_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI needs Docker for the compose chaos test: {problem}", pytrace=False)
        pytest.skip(f"no usable Docker engine ({problem})")
    target = ComposeTarget(
        project_name="authbench-chaos-test",
        env={
            "GATEWAY_PORT": str(free_port_block()),
            "AUTH_SEED_USERS": "40",
            "JWT_REVOCATION": "denylist",
            "DENYLIST_FAIL": "closed",
            "REDIS_APPENDONLY": "no",
        },
    )
    target.down()
    try:
        target.up(replicas=2, timeout_s=240)
        yield target
    except BaseException:
        print(target.logs(tail=80))
        raise
    finally:
        target.down()


def test_kill_in_containers_fails_sessions_and_denylist_with_503_then_recovers(
    stack: ComposeTarget, tmp_path: Path
) -> None:
    # What the stack runs decides what chaos loads: its one JWT mode is the denylist's, and
    # opaque (the target hands the stack its introspection secret).
    served = [m.key for m, _group in modes_served(stack)]
    assert served == [SESSION.key, JWT_DENYLIST.key, OPAQUE.key]
    assert stack.redis_persistence == "none"
    assert cannot_run(SCENARIOS["slow"], stack) == "target compose cannot slow_redis"
    assert "persistence is none" in str(cannot_run(SCENARIOS["restart-aof"], stack))
    assert cannot_run(SCENARIOS["kill"], stack) is None
    options = ChaosOptions(
        shape=LoadShape(users_per_mode=2, user_rps=5.0),
        # 2 s: the same allowance for a shared 2-core machine as test_scenarios.py.
        timing=Timing(warmup_s=2.0, outage_s=3.0, after_s=4.0, aof_margin_s=1.5, hang_ms=2000.0),
        planted_each=3,
    )
    out = run_chaos(options, [SCENARIOS["kill"]], tmp_path, "compose", lambda _m: None, stack)
    result = json.loads((out / "kill" / "result.json").read_text())
    for mode in (SESSION.key, JWT_DENYLIST.key, OPAQUE.key):  # each asks Redis per read
        f = result["figures"][mode]
        assert f["outage_requests"] > 0 and set(f["outage_statuses"]) == {"503"}, f
        assert f["recovery_s"] <= 3.0 and f["hung"] == 0, f
    losses = result["losses"]
    n = losses["planted_each"]
    assert (losses["sessions_lost"], losses["revoked_valid_again"]) == (n, n)
    assert json.loads((out / "manifest.json").read_text())["settings"]["target"] == "compose"
    assert (out / "report.html").stat().st_size > 0
    # The stack is left running, with Redis up again.
    assert stack.is_up()
