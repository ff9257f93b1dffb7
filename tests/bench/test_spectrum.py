"""The spectrum's placing rules: measured windows, expiry at the TTL, nothing guessed."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from authbench import modes
from authbench.bench import revocation_window as rw
from authbench.bench import spectrum
from authbench.bench.spectrum import CellCost


def cell(mode: modes.Mode, ttl: int, reads: int, commands: int, refreshes: int = 0) -> CellCost:
    return CellCost(
        run="r", cell_id=f"{mode.slug}-{ttl}", mode=mode.key, ttl_s=ttl, users=10,
        capture_s=100.0, reads=reads, refreshes=refreshes, redis_commands=commands,
        cpu_auth_pct=2.0 if refreshes else 1.0, store_rtt_ms=0.0, store_link="direct",
        read_p50_ms=math.nan,
    )  # fmt: skip


def window(mode: modes.Mode, p99_ms: float | None) -> dict[str, object]:
    verdict = rw.NEVER if p99_ms is None else "measured"
    return {"mode": mode.key, "p99_ms": p99_ms, "revoked": 100, "verdict": verdict, "run": "w"}


def test_points_take_measured_windows_place_never_revoked_tokens_at_their_ttl() -> None:
    cells = [
        cell(modes.SESSION, 300, reads=1000, commands=1000),
        cell(modes.JWT, 300, reads=1000, commands=0),
        cell(modes.JWT_SHORT, 5, reads=1000, commands=500, refreshes=100),
        cell(modes.JWT_SHORT, 60, reads=1000, commands=50, refreshes=10),
        cell(modes.JWT_DENYLIST, 300, reads=1000, commands=1000),  # no window run: left out
    ]
    windows = {
        modes.SESSION.key: window(modes.SESSION, 8.0),
        modes.JWT.key: window(modes.JWT, None),
        modes.JWT_SHORT.key: window(modes.JWT_SHORT, None),
    }
    found = {(p.mode, p.window_s): p for p in spectrum.points(cells, windows)}
    assert set(found) == {
        (modes.SESSION.key, 0.008),
        (modes.JWT.key, 300.0),
        (modes.JWT_SHORT.key, 5.0),
        (modes.JWT_SHORT.key, 60.0),
    }
    assert found[(modes.SESSION.key, 0.008)].store_calls_per_read == 1.0
    assert found[(modes.JWT_SHORT.key, 5.0)].store_calls_per_read == 0.5
    assert "expiry" in found[(modes.JWT.key, 300.0)].window_basis
    assert "measured" in found[(modes.SESSION.key, 0.008)].window_basis


def test_refresh_cost_is_per_ttl_of_the_refreshing_mode_only(tmp_path: Path) -> None:
    cells = [
        cell(modes.JWT, 300, reads=1000, commands=0),
        cell(modes.JWT_SHORT, 5, reads=1000, commands=500, refreshes=100),
    ]
    [cost] = spectrum.refresh_costs(cells)
    assert (cost.mode, cost.ttl_s) == (modes.JWT_SHORT.key, 5)
    assert cost.refreshes_per_user_hour == 360.0  # 100 / 10 users / 100 s x 3600
    assert cost.redis_cmds_per_refresh == 5.0
    # auth CPU over the idle baseline (1% of a core): 1% x 100 s / 100 refreshes = 10 ms
    assert cost.auth_cpu_ms_per_refresh == 10.0
    assert cost.redis_cmds_per_user_hour == 1800.0


def test_opaque_and_the_gateway_placement_get_points_of_their_own(tmp_path: Path) -> None:
    # Cells of one mode at both placements, and windows measured at both: two points, each
    # from its own cells and its own window (before, the placement was merged into one).
    cells = [
        cell(modes.SESSION, 300, reads=1000, commands=1000),
        replace(cell(modes.SESSION, 300, reads=1000, commands=1010), validate_at="gateway"),
        cell(modes.OPAQUE, 300, reads=1000, commands=1050),
    ]
    windows = {
        spectrum.placed(modes.SESSION.key, "replica"): window(modes.SESSION, 8.0),
        spectrum.placed(modes.SESSION.key, "gateway"): window(modes.SESSION, 3.0),
        modes.OPAQUE.key: window(modes.OPAQUE, 6.0),
    }
    found = {(p.mode, p.validate_at): p for p in spectrum.points(cells, windows)}
    assert set(found) == {
        (modes.SESSION.key, "replica"), (modes.SESSION.key, "gateway"),
        (modes.OPAQUE.key, "replica"),
    }  # fmt: skip
    at_gateway = found[(modes.SESSION.key, "gateway")]
    assert at_gateway.window_s == 0.003 and at_gateway.store_calls_per_read == 1.01
    assert at_gateway.label.endswith("at the gateway")
    assert found[(modes.SESSION.key, "replica")].window_s == 0.008
    assert found[(modes.OPAQUE.key, "replica")].store_calls_per_read == 1.05
    # A windows run's summary says where it was measured; older ones (no key) at the replicas.
    run_dir = tmp_path / "w"
    run_dir.mkdir()
    summaries = [
        {**window(modes.SESSION, 8.0)},
        {**window(modes.SESSION, 3.0), "validate_at": "gateway"},
    ]
    (run_dir / "summary.json").write_text(json.dumps(summaries))
    read = spectrum.read_windows([run_dir])
    assert read["session"]["p99_ms"] == 8.0 and read["session at gateway"]["p99_ms"] == 3.0
