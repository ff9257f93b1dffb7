"""jwt-short and its --jwt-ttl axis: cells, settings, errors, and a real run's refreshes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from authbench import modes
from authbench.bench import axes, spectrum
from authbench.bench.matrix import MODE_ORDER, Cell, Load, Matrix, validate_modes
from authbench.process import PROJECT_ROOT, free_port_block


@pytest.mark.parametrize(
    ("text", "message"),
    [("0", "TTL of 0 s"), ("-5", "TTL of -5 s"), ("x", "not a whole number"), ("", "")],
)
def test_a_ttl_of_zero_or_less_is_a_clear_error_naming_the_flag(text: str, message: str) -> None:
    if not message:
        assert axes.parse_jwt_ttls(text) == ()  # empty: the mode's own TTL
        return
    with pytest.raises(ValueError, match=f"--jwt-ttl: .*{message}"):
        axes.parse_jwt_ttls(text)


def test_the_axis_crosses_only_the_modes_that_set_a_ttl() -> None:
    assert axes.parse_jwt_ttls("30, 300,3600,30") == (30, 300, 3600)
    both = (modes.JWT.key, modes.JWT_SHORT.key)
    cells = Matrix(both, (1,), (Load(4),), ("EdDSA",), jwt_ttls=(5, 60)).configs()
    assert sorted((c.mode, c.jwt_ttl_s) for c in cells) == [
        (modes.JWT.key, None),
        (modes.JWT_SHORT.key, 5),
        (modes.JWT_SHORT.key, 60),
    ]
    short = next(c for c in cells if c.jwt_ttl_s == 5)
    assert short.deployment[modes.TTL_SETTING] == "5" and short.ttl_s == 5
    assert short.deployment["JWT_REVOCATION"] == "none"
    assert short.cell_id.endswith("-ttl5s")
    groups = {c.group for c in cells}
    assert len(groups) == 3  # each TTL is its own deployment
    # Without the axis, the mode's own TTL; jwt keeps the services' default.
    assert Cell(modes.JWT_SHORT.key, 1, Load(4), "EdDSA").ttl_s == 30
    assert Cell(modes.JWT.key, 1, Load(4), "EdDSA").ttl_s == 300


def test_jwt_short_is_asked_for_by_name_not_in_the_default_run() -> None:
    assert modes.JWT_SHORT.key not in MODE_ORDER
    assert validate_modes([modes.JWT_SHORT.key]) == (modes.JWT_SHORT.key,)


def authbench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authbench", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_a_jwt_short_user_refreshes_before_expiry_at_the_rate_its_ttl_sets(
    tmp_path: Path,
) -> None:
    # TTL 2 s: the user refreshes at 0.8 x 2 = 1.6 s, so 4 users over 6 s make about 15
    # refreshes; a user that waited for expiry would instead see 401s (failures).
    done = authbench(
        "bench", "--modes", f"{modes.JWT.key},{modes.JWT_SHORT.key}", "--jwt-ttl", "2",
        "--replicas", "1", "--loads", "4@5", "--warmup", "1", "--capture", "6", "--rest", "0",
        "--accounts", "10", "--relogin-prob", "0", "--refresh-prob", "0", "--no-report",
        "--no-locust-html", "--port-base", str(free_port_block()),
        "--results-dir", str(tmp_path), "--run-id", "short",
        timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    cells = {c.mode: c for c in spectrum.read_cells(tmp_path / "short")}
    short, jwt = cells[modes.JWT_SHORT.key], cells[modes.JWT.key]
    assert short.ttl_s == 2 and jwt.ttl_s == 300
    # jwt's reads ask no store: at most background work (the auth service's key store)
    assert jwt.refreshes == 0 and jwt.redis_commands <= 0.1 * jwt.reads
    expected = short.users * short.capture_s / (0.8 * 2)
    assert 0.6 * expected <= short.refreshes <= 1.4 * expected, (short.refreshes, expected)
    assert short.redis_commands > jwt.redis_commands  # the refreshes' own Redis work
    [cost] = spectrum.refresh_costs(list(cells.values()))
    assert cost.ttl_s == 2 and cost.redis_cmds_per_refresh >= 1
    assert 1350 <= cost.refreshes_per_user_hour <= 3150  # 3600 / 1.6 = 2250
