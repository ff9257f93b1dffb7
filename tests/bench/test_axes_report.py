"""The axes' report from known rows: the charts exist, the findings quote medians with
their spread, and repeats that disagree by more than 15% are named, never averaged away."""

from __future__ import annotations

import math
from pathlib import Path

from authbench.bench import axes_report
from authbench.bench.summary import SummaryRow

PNG = b"\x89PNG\r\n\x1a\n"


def row(mode: str, repeat: int, p50_us: float, rps: float, **axes: object) -> SummaryRow:
    values: dict[str, object] = {
        "mode": mode, "replicas": 1, "users": 30, "requests": 100, "failures": 0,
        "load": "30@15", "jwt_alg": "EdDSA", "repeat": repeat, "read_p50_us": p50_us,
        "read_rps": rps, "store_link": "direct", "cell_id": f"r{repeat}-{mode}",
        "redis_cpu_pct": 2.0, "store_ping_us": 80.0,
    }  # fmt: skip
    values.update(axes)
    return SummaryRow(**values)  # type: ignore[arg-type]


def distance_rows() -> list[SummaryRow]:
    rows = []
    for r in (1, 2, 3):
        rows += [
            row("session", r, 900 + r, 450),
            row("session", r, 1100 + r, 450, store_link="proxy", store_rtt_ms=0.0),
            row("session", r, 6200 + r, 450, store_link="proxy", store_rtt_ms=5.0),
            row("jwt", r, 800 + r, 450),
            row("jwt", r, 820 + r, 450, store_link="proxy", store_rtt_ms=5.0),
        ]
    return rows


def test_distance_finding_quotes_median_spread_and_rise(tmp_path: Path) -> None:
    rows = distance_rows()
    assert axes_report.has_axes(rows)
    lines = axes_report.findings(rows)
    session = next(line for line in lines if line.startswith("Store distance, session"))
    assert "direct 902 (901-903) µs" in session
    assert "5 ms: 6202 (6201-6203) µs (+5300 µs over direct" in session
    assert "5100 (5100-5100) µs over the proxy at 0 ms" in session  # paired per repeat
    assert not [line for line in lines if line.startswith("Repeats disagree")]
    drawn = axes_report.draw(tmp_path, rows)
    assert [name for name, _ in drawn] == ["distance.png"]
    assert (tmp_path / "distance.png").read_bytes().startswith(PNG)


def test_capacity_chart_and_finding_for_a_capped_redis(tmp_path: Path) -> None:
    rows = []
    for r in (1, 2, 3):
        for replicas in (1, 4):
            rows += [
                row("session", r, 3000, 1200 + r, load="32", replicas=replicas,
                    redis_cpus=0.05, redis_cpu_pct=5.0, redis_throttled_pct=60.0),
                row("session", r, 2000, 2500 + r, load="32", replicas=replicas),
                row("jwt", r, 2000, 2600 + r, load="32", replicas=replicas, redis_cpus=0.05),
                row("jwt", r, 2000, 2610 + r, load="32", replicas=replicas),
            ]  # fmt: skip
    lines = axes_report.findings(rows)
    capped = [line for line in lines if line.startswith("Store capacity, session x4")]
    assert capped and "1202 (1201-1203) reads/s" in capped[0]
    assert "uncapped 2502 (2501-2503) reads/s" in capped[0]
    assert [name for name, _ in axes_report.draw(tmp_path, rows)] == ["capacity.png"]


def test_repeats_that_disagree_by_more_than_15_percent_are_named() -> None:
    rows = [row("session", 1, 1000, 450), row("session", 2, 1100, 450),
            row("session", 3, 1400, 450)]  # fmt: skip
    lines = axes_report.disagreements(axes_report.configurations(rows))
    assert len(lines) == 1
    assert "36% on read_p50_us" in lines[0] and "r3-session: 1400" in lines[0]
    calm = [row("session", r, 1000 + 10 * r, 450) for r in (1, 2, 3)]
    assert axes_report.disagreements(axes_report.configurations(calm)) == []


def test_a_run_without_axes_has_none() -> None:
    rows = [row("session", 1, 1000, 450, redis_cpus=math.nan)]
    assert not axes_report.has_axes(rows)
