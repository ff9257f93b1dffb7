"""`authbench model` on a committed run folder, and the Redis capacity measurement."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from authbench.cli import main
from authbench.model import redis_capacity
from authbench.model.report import section_for, section_html

pytestmark = pytest.mark.slow  # fits and draws whole model reports

ROOT = Path(__file__).resolve().parents[2]
CLOSED_LOOP_RUN = ROOT / "results" / "20261130-064011-bench"


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("summary.csv", "manifest.json"):
        shutil.copy(src / name, dst / name)
    return dst


def test_the_command_writes_model_json_with_validation_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy_run(CLOSED_LOOP_RUN, tmp_path / CLOSED_LOOP_RUN.name)
    assert main(["model", str(run)]) == 0
    doc = json.loads((run / "model.json").read_text())
    cells = doc["validation"]["cells"]
    assert len(cells) == 9  # every closed-loop cell of the run
    for v in cells:
        expected = (v["predicted_rps"] - v["measured_rps"]) / v["measured_rps"] * 100
        assert v["error_pct"] == pytest.approx(expected, abs=0.1)
        assert v["flagged"] == (abs(v["error_pct"]) > doc["inputs"]["flag_pct"])
    assert doc["validation"]["flagged"] == sum(v["flagged"] for v in cells)
    assert {s["mode"] for s in doc["saturation"]} == {"session", "jwt+denylist"}
    assert {p["replicas"] for p in doc["predictions"]} == set(range(1, 65))
    assert doc["assumptions"] and doc["command"][:2] == ["authbench", "model"]
    assert (run / "projection.png").read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "What this predicts beyond this machine" in out
    # Every validation error is printed, flagged ones marked as such.
    for v in cells:
        assert f"{v['error_pct']:+.1f}%" in out
    medians = doc["validation"]["medians_over_repeats"]
    marked = doc["validation"]["flagged"] + sum(m["flagged"] for m in medians)
    assert out.count("FLAGGED") == marked
    html_section = section_html(doc)
    assert html_section.count('style="background:#fdd"') == marked


def test_help_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["model", "--help"])
    assert exit_info.value.code == 0
    assert "RUN_DIR" in capsys.readouterr().out
    assert main(["model", str(tmp_path)]) == 2
    assert "no summary.csv" in capsys.readouterr().err
    run = _copy_run(CLOSED_LOOP_RUN, tmp_path / "run")
    assert main(["model", str(run), "--think-ms", "-1"]) == 2
    assert "--think-ms" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["model", str(run), "--redis-capacity", str(tmp_path / "bad.json")]) == 2
    assert "--redis-capacity" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-benchmark")
def test_redis_capacity_is_measured_with_a_real_redis(tmp_path: Path) -> None:
    out = tmp_path / "redis_capacity.json"
    argv = [str(out), "--requests", "2000", "--clients", "4", "--repeats", "2"]
    assert redis_capacity.main(argv) == 0
    data = redis_capacity.load(out)
    for name in ("GETEX", "EXISTS", "GET"):
        figures = data["commands"][name]
        assert len(figures["repeats"]) == 2
        assert figures["ops_per_s_wall"] > 0
        # Redis spends well under a millisecond and over a tenth of a µs per command.
        assert 1e-7 < figures["cpu_s_per_op"] < 1e-3
    run = _copy_run(CLOSED_LOOP_RUN, tmp_path / "run")
    assert main(["model", str(run), "--redis-capacity", str(out)]) == 0
    doc = json.loads((run / "model.json").read_text())
    assert "redis-benchmark" in doc["inputs"]["redis_source"]


def test_the_report_section_embeds_the_chart(tmp_path: Path) -> None:
    run = _copy_run(CLOSED_LOOP_RUN, tmp_path / "run")
    assert section_for(run) is None  # no model yet: nothing to add to the report
    assert main(["model", str(run)]) == 0
    section = section_for(run)
    assert section is not None
    assert section.startswith("<h2>What this predicts beyond this machine</h2>")
    assert 'src="data:image/png;base64,' in section
