"""Mode opaque in the harness: the bench's --introspect-cache flag and the auth-service
chaos scenarios (issue 15). The services' side is in tests/e2e/test_opaque_flows.py."""

from __future__ import annotations

import pytest

from authbench import modes
from authbench.chaos.scenarios import SCENARIOS, cannot_run
from authbench.cli import build_parser
from authbench.commands.bench import build_config
from authbench.targets.external import Endpoints, ExternalTarget
from authbench.targets.local import LocalCluster


def _config(*argv: str) -> dict[str, str]:
    return build_config(build_parser().parse_args(["bench", *argv])).settings_env


def test_introspect_cache_reaches_the_deployment_as_its_setting() -> None:
    assert _config("--modes", modes.OPAQUE.key, "--introspect-cache", "2.5") == {
        "INTROSPECT_CACHE_S": "2.5"
    }
    assert _config("--modes", modes.OPAQUE.key) == {}  # absent: the services' default


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_introspect_cache_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(ValueError, match="--introspect-cache: INTROSPECT_CACHE_S="):
        _config("--introspect-cache", value)


def test_opaque_is_benched_and_chaos_tested() -> None:
    assert modes.OPAQUE in modes.BENCH_MODES and modes.OPAQUE in modes.CHAOS_MODES
    assert modes.get("opaque") is modes.OPAQUE


def test_auth_service_faults_run_locally_and_are_refused_where_unsupported() -> None:
    local = LocalCluster(replicas=1)
    external = ExternalTarget(Endpoints("http://127.0.0.1:9"), probe=False)
    assert cannot_run(SCENARIOS["auth-kill"], local) is None
    assert cannot_run(SCENARIOS["auth-pause"], local) is None
    assert cannot_run(SCENARIOS["auth-kill"], external) == (
        "target external cannot kill_auth, start_auth"
    )
    assert "pause_auth" in str(cannot_run(SCENARIOS["auth-pause"], external))


def test_compose_implements_the_auth_faults_through_the_engine() -> None:
    """Checked by definition only here (tests/docker runs containers); the local ones are
    exercised for real by tests/e2e/test_opaque_flows.py."""
    from authbench.targets.base import Deployment
    from authbench.targets.compose import ComposeTarget

    for operation in ("kill_auth", "pause_auth", "resume_auth", "start_auth"):
        assert getattr(ComposeTarget, operation) is not getattr(Deployment, operation)
