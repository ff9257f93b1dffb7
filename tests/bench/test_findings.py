"""The report's findings, one function each, read from a committed run's own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authbench.bench.aggregate import aggregate
from authbench.bench.findings import (
    FINDINGS,
    RunView,
    failure_reasons,
    findings,
    flagged_cells,
    scaling,
)
from authbench.bench.summary import read_summary
from authbench.process import PROJECT_ROOT

RUN = PROJECT_ROOT / "results" / "20261130-062753-bench"  # paced, replicas 1/2/4, 2 repeats

pytestmark = pytest.mark.skipif(not RUN.is_dir(), reason="the committed bench run is gone")


def _view(keep_replicas: set[int] | None = None) -> RunView:
    rows = read_summary(RUN / "summary.csv")
    if keep_replicas is not None:
        rows = [r for r in rows if r.replicas in keep_replicas]
    manifest = json.loads((RUN / "manifest.json").read_text())
    return RunView(rows, aggregate(RUN, rows), manifest, RUN)


def test_every_finding_has_something_to_say_about_a_full_run() -> None:
    run = _view()
    for finding in FINDINGS:
        said = finding(run)
        if finding is failure_reasons:  # says something only when requests failed
            assert bool(said) == any(r.failures for r in run.rows)
            continue
        assert said and all(s.strip() for s in said), finding.__name__


def test_a_finding_without_its_data_stays_silent() -> None:
    one_size = _view({2})
    assert scaling(one_size) == []  # one replica count: nothing scaled
    assert scaling(_view()) != []


def test_flagged_cells_are_named_with_their_flags() -> None:
    run = _view()
    flagged = [r for r in run.rows if r.flags]
    said = flagged_cells(run)[0]
    if flagged:
        assert all(f"{r.cell_id}: {r.flags}" in said for r in flagged[:8])
    else:
        assert said.startswith("No cell was flagged")


def test_a_run_without_measurements_says_so(tmp_path: Path) -> None:
    assert findings([], [], {}, tmp_path) == [
        "No cell produced measurements; see the errors below."
    ]
