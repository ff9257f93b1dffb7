"""`authbench bench --live`: Locust's web UI answers while a cell runs, and the run still
ends by itself with the same files as a headless one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from authbench.bench import locust_runner
from authbench.process import PROJECT_ROOT, free_port_block


def test_the_job_command_swaps_headless_for_a_self_ending_web_ui(tmp_path: Path) -> None:
    headless = locust_runner.command(locust_runner.LocustJob(None, ("U",), tmp_path))
    assert "--headless" in headless and "--web-port" not in headless
    live = locust_runner.command(locust_runner.LocustJob(None, ("U",), tmp_path, web_port=18089))
    assert "--headless" not in live
    assert live[live.index("--web-port") + 1] == "18089"
    assert live[live.index("--web-host") + 1] == "127.0.0.1"  # never on every interface
    assert "--autostart" in live and "--autoquit" in live  # it starts and ends by itself


def test_a_bad_live_port_is_one_clear_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "authbench", "bench", "--live", "80"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--live" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_the_web_ui_answers_during_a_cell_and_the_run_completes(tmp_path: Path) -> None:
    base = free_port_block()
    ui_port = base + 45  # inside our block, clear of the cluster's own ports
    bench = subprocess.Popen(
        [
            sys.executable, "-m", "authbench", "bench", "--modes", "jwt", "--replicas", "1",
            "--loads", "4@10", "--warmup", "1", "--capture", "6", "--rest", "0",
            "--accounts", "20", "--port-base", str(base), "--results-dir", str(tmp_path),
            "--run-id", "live", "--no-report", "--no-locust-html", "--live", str(ui_port),
        ],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen: dict[str, object] | None = None
    try:
        deadline = time.monotonic() + 90
        while seen is None and bench.poll() is None and time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{ui_port}/stats/requests"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    stats = json.load(answer)
                if stats.get("state") == "running" and stats.get("user_count", 0) > 0:
                    seen = stats
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(0.3)
        out, _ = bench.communicate(timeout=120)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    assert seen is not None, "the web UI never showed a running test"
    assert bench.returncode == 0, out
    assert f"http://127.0.0.1:{ui_port}" in out
    manifest = json.loads((tmp_path / "live" / "manifest.json").read_text())
    assert manifest["complete"] is True
    (cell,) = manifest["cells"].values()
    assert (tmp_path / "live" / cell["dir"] / "locust_stats.csv").stat().st_size > 0
