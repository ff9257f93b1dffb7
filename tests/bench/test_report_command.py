"""`authbench report DIR` dispatches on the manifest's kind and says why when it cannot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authbench.cli import main


def test_a_directory_without_manifest_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_an_unknown_kind_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "teapot"}))
    assert main(["report", str(tmp_path)]) == 2
    assert "teapot" in capsys.readouterr().err


def test_a_bench_run_without_measurements_still_gets_a_report(tmp_path: Path) -> None:
    """A run whose every cell failed is reported as such (charts say so), not a crash."""
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "bench", "run_id": "x"}))
    (tmp_path / "summary.csv").write_text(
        "mode,replicas,users,requests,cell_id,repeat,load,jwt_alg,flags,error\n"
        "session,1,5,,r1-session-x1-u5-EdDSA,1,5,EdDSA,cluster,cluster did not start\n"
    )
    assert main(["report", str(tmp_path)]) == 0
    report = (tmp_path / "report.html").read_text()
    assert "No cell produced measurements" in report
    assert "cluster did not start" in report
    assert (tmp_path / "latency.png").read_bytes().startswith(b"\x89PNG")
