"""`authbench compare`: shared configurations only, differences judged against the repeats'
spread, a clear refusal naming what differs, and a folder with its own report."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from authbench.bench import compare
from authbench.cli import main
from authbench.process import PROJECT_ROOT
from tests.bench.runs import row, write_run

COMMITTED = PROJECT_ROOT / "results"
PACED_ONLY = COMMITTED / "20261130-062753-bench"  # loads 30@15, 2 repeats
CLOSED_ONLY = COMMITTED / "20261130-064011-bench"  # load 48, 1 repeat


def _runs(tmp_path: Path) -> tuple[Path, Path]:
    """Run a (baseline) and run b: b's session reads are 30% faster at x1 (beyond the
    repeats' spread), its jwt reads 1 rps apart (within it); b also has a load a lacks."""
    a_rows, b_rows = [], []
    for repeat in (1, 2):
        for replicas in (1, 2):
            for mode in ("session", "jwt"):
                per_req = 1.1 if mode == "session" else 0.1
                a_rows.append(row(mode, replicas, "30@15", repeat, 449.0, 900.0 + repeat, per_req))
                base = 1000.0 + 10 * repeat
                a_rows.append(row(mode, replicas, "32", repeat, base, 9000.0, per_req))
                faster = 1.3 * base if mode == "session" and replicas == 1 else base + 1
                b_rows.append(row(mode, replicas, "32", repeat, faster, 8000.0, per_req))
                b_rows.append(row(mode, replicas, "8", repeat, 300.0, 2000.0, per_req))
    return (
        write_run(tmp_path / "a", a_rows, "run-a", commit="aaaa"),
        write_run(tmp_path / "b", b_rows, "run-b", commit="bbbb"),
    )


def _verdicts(folder: Path) -> dict[tuple[str, str, str, str], list[dict[str, str]]]:
    out: dict[tuple[str, str, str, str], list[dict[str, str]]] = {}
    with (folder / "compare.csv").open() as f:
        for line in csv.DictReader(f):
            key = (line["mode"], line["replicas"], line["load"], line["figure"])
            out.setdefault(key, []).append(line)
    return out


def test_compare_writes_its_folder_with_differences_and_verdicts(tmp_path: Path) -> None:
    a, b = _runs(tmp_path)
    report = compare.compare([a, b], tmp_path / "results")
    folder = report.parent
    # the project's one run-folder name: <kind>-<UTC yyyymmddThhmmssZ>
    assert re.fullmatch(r"compare-\d{8}T\d{6}Z", folder.name)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "compare" and manifest["run_ids"] == ["run-a", "run-b"]
    for name, _title in compare.CHARTS:
        assert (folder / name).read_bytes().startswith(b"\x89PNG")
        assert f"data-file='{name}'" in report.read_text()

    lines = _verdicts(folder)
    # only the load both runs measured is compared
    assert {key[2] for key in lines} == {"32"}
    session = lines[("session", "1", "32", "read_rps")]
    assert [line["run"] for line in session] == ["run-a", "run-b"]
    assert float(session[0]["median"]) == pytest.approx(1015.0)  # repeats 1010 and 1020
    assert float(session[1]["diff_from_first"]) == pytest.approx(0.3 * 1015.0)
    assert float(session[1]["diff_pct"]) == pytest.approx(30.0)
    assert session[1]["verdict"] == "beyond spread"
    # 2 repeats each: one order in 3 separates two equal runs, so the verdict says so
    assert float(session[1]["chance_if_equal"]) == pytest.approx(1 / 3, abs=1e-3)
    assert session[0]["verdict"] == "baseline"
    jwt = lines[("jwt", "1", "32", "read_rps")]
    assert float(jwt[1]["diff_from_first"]) == pytest.approx(1.0)
    assert jwt[1]["verdict"] == "within spread"
    assert jwt[1]["chance_if_equal"] == ""

    page = report.read_text()
    assert "only in run-a" in page and "only in run-b" in page  # the unshared loads, named
    assert "git commit: run-a: aaaa; run-b: bbbb" in page  # what differs besides the matrix
    assert "<details><summary>Manifest</summary>" in page
    assert page.count("<table>") == page.count("<div class='table-wrap'><table>")


def test_a_single_repeat_is_not_judged_against_a_spread(tmp_path: Path) -> None:
    a, _ = _runs(tmp_path)
    single = write_run(
        tmp_path / "c",
        [row("session", 1, "32", 1, 2000.0, 9000.0, 1.1)],
        "run-c",
    )
    folder = compare.compare([a, single], tmp_path / "results", "one").parent
    rps = _verdicts(folder)[("session", "1", "32", "read_rps")]
    assert rps[1]["verdict"] == "one repeat"


def test_runs_without_a_shared_configuration_are_refused_naming_what_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_run(tmp_path / "a", [row("session", 1, "30@15", 1, 449.0, 900.0, 1.1)], "run-a")
    b = write_run(tmp_path / "b", [row("session", 2, "48", 1, 2000.0, 9000.0, 1.1)], "run-b")
    results = tmp_path / "results"
    assert main(["compare", str(a), str(b), "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert "share no configuration" in err
    assert "replicas (no value in common): run-a has 1; run-b has 2" in err
    assert "load (no value in common): run-a has 30@15; run-b has 48" in err
    assert "\n  mode" not in err  # both runs measured session: not a difference
    assert not results.exists()  # nothing written


def test_the_two_committed_runs_differ_in_load_and_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    code = main(["compare", str(PACED_ONLY), str(CLOSED_ONLY), "--results-dir", str(results)])
    assert code == 2
    err = capsys.readouterr().err
    assert "load (no value in common): 20261130-062753-bench has 30@15; " in err
    assert "20261130-064011-bench has 48" in err
    assert not results.exists()


def test_a_committed_run_against_a_copy_of_itself_differs_by_nothing(tmp_path: Path) -> None:
    """Runs that predate the µs columns compare on Locust's ms figures, said so."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("manifest.json", "summary.csv"):
        (copy / name).write_bytes((PACED_ONLY / name).read_bytes())
    report = compare.compare([PACED_ONLY, copy], tmp_path / "results", "self")
    lines = _verdicts(report.parent)
    assert len({key[:3] for key in lines}) == 9  # 3 modes x 3 replica counts x 1 load
    assert all(line["diff_from_first"] in ("", "0.0") for ls in lines.values() for line in ls)
    assert "1-ms buckets" in report.read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["only-one"], "at least two"),
        (["same", "same"], "the same run given twice"),
        (["missing", "same"], "is not a bench run folder"),
    ],
)
def test_bad_arguments_get_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    write_run(tmp_path / "same", [row("jwt", 1, "8", 1, 100.0, 900.0, 0.1)])
    paths = [str(tmp_path / a) for a in args]
    assert main(["compare", *paths, "--results-dir", str(tmp_path / "results")]) == 2
    assert message in capsys.readouterr().err


def test_compare_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["compare", "--help"])
    assert done.value.code == 0
    assert "one line style per run" in " ".join(capsys.readouterr().out.split())


def test_authbench_report_redraws_a_compare_folder(tmp_path: Path) -> None:
    a, b = _runs(tmp_path)
    report = compare.compare([a, b], tmp_path / "results", "again")
    (report.parent / "compare.csv").unlink()
    report.unlink()
    assert main(["report", str(report.parent)]) == 0
    assert report.exists() and (report.parent / "compare.csv").exists()


def test_runs_with_the_distance_axis_get_latency_against_the_round_trip(tmp_path: Path) -> None:
    folders = []
    for name, extra_us in (("near", 0.0), ("far", 500.0)):
        rows = []
        for repeat in (1, 2):
            rows.append(row("session", 1, "30@15", repeat, 449.0, 900.0, 1.1))
            for rtt in (0.0, 1.0):
                proxied = row(
                    "session", 1, "30@15", repeat, 449.0, 900 + 1000 * rtt + extra_us, 1.1
                )
                proxied.store_link, proxied.store_rtt_ms = "proxy", rtt
                rows.append(proxied)
        folders.append(write_run(tmp_path / name, rows, name))
    report = compare.compare(folders, tmp_path / "results", "distance")
    assert (report.parent / "compare_distance.png").read_bytes().startswith(b"\x89PNG")
    assert "data-file='compare_distance.png'" in report.read_text()
    lines = _verdicts(report.parent)
    stores = {line["store"] for ls in lines.values() for line in ls}
    assert stores == {"direct", "proxy 0 ms", "proxy 1 ms"}
    with (report.parent / "compare.csv").open() as f:
        p50 = [
            line for line in csv.DictReader(f)
            if line["figure"] == "read_p50_us" and line["store"] == "proxy 1 ms"
        ]  # fmt: skip
    assert float(p50[1]["diff_from_first"]) == pytest.approx(500.0)


def test_runs_without_the_distance_axis_draw_no_distance_chart(tmp_path: Path) -> None:
    a, b = _runs(tmp_path)
    report = compare.compare([a, b], tmp_path / "results", "plain")
    assert not (report.parent / "compare_distance.png").exists()


@pytest.mark.parametrize("width_in", [6.2, 9.0, 12.4])
def test_the_legend_stays_inside_a_narrow_chart(width_in: float) -> None:
    """Two runs with real run ids and two modes: the one-panel charts (one replica count)
    are 6.2 inches wide, too narrow for their five entries in one row (the committed
    compare folder's throughput chart lost its first marker and its last mode so)."""
    import matplotlib.pyplot as plt

    runs = [
        compare.Run(Path(name), {"run_id": name}, [])
        for name in ("bench-20261201T144747Z", "bench-20261201T145000Z")
    ]
    fig = plt.figure(figsize=(width_in, 4.5))
    try:
        bottom = compare._legend(fig, runs, ["session", "jwt", "jwt+denylist"])
        fig.canvas.draw()
        (legend,) = fig.legends
        box = legend.get_window_extent()
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (box, fig.bbox)
        assert box.y1 <= bottom * fig.bbox.height + 2  # the room kept for it below the panels
        assert len(legend.get_texts()) == 5
    finally:
        plt.close(fig)
