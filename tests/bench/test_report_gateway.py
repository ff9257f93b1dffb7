"""The report of a run through both gateways (`--gateway ours,nginx`, issue 15): each cell
shows the gateway that served it, and the two are never merged into one configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from authbench.bench import report
from authbench.bench.aggregate import aggregate, series_of
from authbench.bench.summary import read_summary
from tests.bench.runs import row, write_run


def _run(tmp_path: Path) -> Path:
    rows = []
    for repeat in (1, 2):
        for gateway, rps in (("ours", 900.0), ("nginx", 1200.0)):
            for mode in ("session", "jwt"):
                cell = row(mode, 2, "32", repeat, rps + (100 if mode == "jwt" else 0), 800.0, 1.0)
                suffix = "-nginx" if gateway == "nginx" else ""
                rows.append(
                    dataclasses.replace(
                        cell, gateway=gateway, validate_at="replica", cell_id=cell.cell_id + suffix
                    )
                )
    return write_run(tmp_path / "bench-gateways", rows)


def test_configurations_keep_the_gateways_apart(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    configs = aggregate(run_dir, read_summary(run_dir / "summary.csv"))
    found = {(c.mode, c.variant): c.median("read_rps") for c in configs}
    assert found == {
        ("session", ""): 900.0,
        ("session", "nginx"): 1200.0,
        ("jwt", ""): 1000.0,
        ("jwt", "nginx"): 1300.0,
    }  # fmt: skip  (merged, session would read 1050 in both)
    labels = {s.label for s in series_of(configs)}
    assert labels == {"session", "session [nginx]", "jwt", "jwt [nginx]"}


def test_the_summary_table_shows_the_gateway_of_each_cell(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    page = report.render(run_dir).read_text()
    shown = report.table_columns(read_summary(run_dir / "summary.csv"))
    assert "gateway" in shown
    assert "validate_at" not in shown  # the same in every row: says nothing per row
    assert '<td class="t">nginx</td>' in page and '<td class="t">ours</td>' in page
    assert "gateway, placement" in page  # the spread table names each configuration's
