"""summary.csv's schema: one typed row, written and read through it, documented from it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from authbench.bench.summary import (
    COLUMNS,
    SummaryRow,
    describe,
    markdown_table,
    read_summary,
    write_summary,
)
from authbench.process import PROJECT_ROOT

COMMITTED = sorted((PROJECT_ROOT / "results").glob("*/summary.csv"))
BENCH_RUNS = [p for p in COMMITTED if (p.parent / "cells").is_dir()]
# The contract (summary.csv: mode, replicas, users, requests, failures, rps, percentiles,
# Redis ops/s and CPU, CPU of each service and of the load generator) comes first.
CONTRACT = (
    "mode",
    "replicas",
    "users",
    "requests",
    "failures",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "redis_ops_s",
    "redis_cpu_pct",
)


@pytest.mark.parametrize("path", BENCH_RUNS, ids=lambda p: p.parent.name)
def test_committed_summaries_read_and_write_back_byte_for_byte(path: Path, tmp_path: Path) -> None:
    rows = read_summary(path)
    assert rows and all(isinstance(r, SummaryRow) for r in rows)
    assert all(isinstance(r.replicas, int) and isinstance(r.rps, float) for r in rows)
    # Written with the file's own columns (a run predates the columns added since).
    header = path.read_text().splitlines()[0].split(",")
    assert set(header) <= set(COLUMNS)
    write_summary(tmp_path / "summary.csv", rows, header)
    assert (tmp_path / "summary.csv").read_bytes() == path.read_bytes()


def test_bench_runs_are_committed() -> None:
    assert BENCH_RUNS, "the round-trip test needs at least one committed bench run"


def test_the_contract_columns_come_first() -> None:
    assert COLUMNS[: len(CONTRACT)] == CONTRACT


def test_a_missing_figure_is_an_empty_field_and_reads_back_as_not_measured(tmp_path: Path) -> None:
    row = SummaryRow(mode="jwt", replicas=2, users=5, error="cluster did not start")
    write_summary(tmp_path / "s.csv", [row])
    text = (tmp_path / "s.csv").read_text()
    assert "nan" not in text.lower() and "None" not in text
    back = read_summary(tmp_path / "s.csv")[0]
    assert back.requests is None and math.isnan(back.rps) and back.error == row.error
    assert math.isnan(back.number("requests")) and back.as_dict()["rps"] is None


def test_reading_is_lenient_with_older_and_newer_files(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text(
        "mode,replicas,requests,after_logout_status,some_future_column\n"
        "session,2,100,401,whatever\n"
    )
    row = read_summary(tmp_path / "s.csv")[0]
    assert (row.mode, row.replicas, row.requests, row.after_logout_status) == (
        "session",
        2,
        100,
        401,
    )
    assert row.users == 0 and math.isnan(row.p50_ms)  # absent: the column's blank


def test_every_column_is_documented_with_a_type_and_a_meaning() -> None:
    described = describe()
    assert [name for name, *_ in described] == list(COLUMNS)
    for name, kind, _unit, doc in described:
        assert kind.split()[0] in ("str", "int", "float"), name
        assert len(doc) > 10, name


def test_results_readme_holds_the_generated_column_table() -> None:
    text = (PROJECT_ROOT / "results" / "README.md").read_text()
    found = re.search(
        r"<!-- summary-columns[^>]*-->\n(.*?)<!-- /summary-columns -->", text, re.DOTALL
    )
    assert found, "results/README.md lost its summary-columns markers"
    assert found.group(1) == markdown_table(), (
        "results/README.md's summary.csv table differs from SummaryRow; replace it with "
        "the output of `python -m authbench.bench.summary`"
    )
