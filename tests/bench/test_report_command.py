"""`authbench report DIR` dispatches on the manifest's kind and says why when it cannot."""

from __future__ import annotations

import json
import shutil
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


def test_every_renderer_imports_and_draws() -> None:
    from authbench.commands import report

    for kind in report.RENDERERS:
        assert callable(report.renderer(kind))


def test_a_missing_renderer_module_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A packaging bug (a renderer module not shipped) raises; it is never skipped."""
    from authbench.commands import report

    monkeypatch.setitem(report.RENDERERS, "bench", "authbench.no_such_renderer")
    with pytest.raises(ModuleNotFoundError):
        report.renderer("bench")


def test_every_command_is_registered_and_a_missing_one_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from authbench import cli

    parser = cli.build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command")
    assert set(subcommands.choices) == {name.replace("_", "-") for name in cli.COMMANDS}
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "no_such_command"))
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()


def test_report_takes_no_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A report reads files only; `--target` was accepted and ignored, so it is gone."""
    with pytest.raises(SystemExit):
        main(["report", str(tmp_path), "--target", "local"])
    assert "unrecognized arguments: --target" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_with_a_model_gets_the_projection_section_and_one_without_does_not(
    tmp_path: Path,
) -> None:
    committed = Path(__file__).resolve().parents[2] / "results" / "20261130-064011-bench"
    run = tmp_path / "run"
    shutil.copytree(committed, run)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "What this predicts beyond this machine" in page
    (run / "model.json").unlink()
    assert main(["report", str(run)]) == 0
    assert "What this predicts beyond this machine" not in (run / "report.html").read_text()
