"""`authbench bench` end to end on a tiny matrix: real cluster, real Locust, real files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from authbench.process import PROJECT_ROOT, free_port_block

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHARTS = ("latency.png", "throughput.png", "redis.png", "validation.png", "cpu.png", "errors.png")
CELL_FILES = (
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "locust_exceptions.csv",
    "locust.html",
    "locust_histogram.json",
    "cell.json",
)


def authbench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authbench", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("results")
    # Each flag beside its value, as typed on a command line (hence the fmt: skip).
    done = authbench(
        "bench", "--modes", "session,jwt", "--replicas", "1", "--loads", "4@10",
        "--warmup", "1", "--capture", "3", "--rest", "0", "--accounts", "20",
        "--port-base", str(free_port_block()), "--results-dir", str(results),
        "--run-id", "tiny",
        timeout=110,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    last_line = done.stdout.strip().splitlines()[-1]
    assert last_line == str(results / "tiny" / "report.html")
    return results / "tiny"


def summary_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_every_file_of_the_contract_appears(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["kind"] == "bench"
    if (PROJECT_ROOT / ".git").exists():
        assert len(manifest["git"]["commit"]) == 40
    assert manifest["settings"]["matrix"]["modes"] == ["session", "jwt"]
    assert manifest["versions"]["locust"] and manifest["machine"]["logical_cpus"]
    assert manifest["complete"] is True
    for cell in manifest["cells"].values():
        for name in CELL_FILES:
            assert (run_dir / cell["dir"] / name).stat().st_size > 0, (cell["dir"], name)
    for name in CHARTS:
        data = (run_dir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 5000, name


@pytest.mark.slow
def test_summary_has_one_measured_row_per_cell(run_dir: Path) -> None:
    rows = summary_rows(run_dir)
    assert sorted(row["mode"] for row in rows) == ["jwt", "session"]
    for row in rows:
        assert int(row["requests"]) > 0 and float(row["rps"]) > 0, row
        assert row["error"] == ""
        assert float(row["p50_ms"]) <= float(row["p99_ms"]) <= float(row["max_ms"])
        assert int(row["validations"]) > 0  # scraped from the replica's /metrics
        assert float(row["cpu_loadgen_pct"]) > 0 and float(row["cpu_replicas_pct"]) > 0


@pytest.mark.slow
def test_sessions_cost_redis_commands_per_request_and_jwts_do_not(run_dir: Path) -> None:
    by_mode = {row["mode"]: row for row in summary_rows(run_dir)}
    # Every session read is a GETEX; JWT reads touch Redis only on login/refresh/logout.
    assert float(by_mode["session"]["redis_cmds_per_req"]) > 0.8
    assert float(by_mode["jwt"]["redis_cmds_per_req"]) < 0.5


@pytest.mark.slow
def test_logout_revokes_a_session_at_once_but_not_a_stateless_jwt(run_dir: Path) -> None:
    by_mode = {row["mode"]: row for row in summary_rows(run_dir)}
    assert by_mode["session"]["after_logout_status"] == "401"
    assert by_mode["jwt"]["after_logout_status"] == "200"
    # the window, measured after the cell as `authbench revocation-window` measures it
    assert 0 < float(by_mode["session"]["revocation_window_ms"]) < 1000
    assert by_mode["jwt"]["revocation_window_ms"] == ""  # not revoked within 1 s: empty


@pytest.mark.slow
def test_report_embeds_and_links_every_chart(run_dir: Path) -> None:
    report = (run_dir / "report.html").read_text()
    for name in CHARTS:
        assert f"href='{name}'" in report
    assert report.count("data:image/png;base64,") == len(CHARTS)
    assert "Findings" in report and "Redis commands per request" in report


@pytest.mark.slow
def test_report_command_redraws_from_the_files(run_dir: Path) -> None:
    for name in (*CHARTS, "report.html"):
        (run_dir / name).unlink()
    done = authbench("report", str(run_dir), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_dir / "report.html")
    for name in CHARTS:
        assert (run_dir / name).read_bytes().startswith(PNG_SIGNATURE)
