"""One naming scheme for run folders: `<kind>-<UTC yyyymmddThhmmssZ>`, bench and chaos alike."""

from __future__ import annotations

import datetime as dt
import re

from authbench import provenance
from authbench.bench import runner
from authbench.chaos import run


def test_a_run_id_is_its_kind_then_its_utc_start() -> None:
    when = dt.datetime(2026, 12, 1, 14, 21, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert provenance.new_run_id("bench", when) == "bench-20261201T122100Z"
    assert re.fullmatch(r"chaos-\d{8}T\d{6}Z", provenance.new_run_id("chaos"))


def test_bench_and_chaos_name_their_folders_with_the_one_function() -> None:
    assert runner.new_run_id is provenance.new_run_id
    assert run.new_run_id is provenance.new_run_id
