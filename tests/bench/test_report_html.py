"""report.html's structure: every chart there and on disk, tables that fit the page, the
manifest folded away; the charts' honesty helpers; a default run that finds ceilings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from authbench.bench import charts, report
from authbench.bench.summary import COLUMNS
from authbench.cli import build_parser
from authbench.commands.bench import build_config
from tests.bench.runs import row, write_run

pytestmark = pytest.mark.slow  # draws whole bench reports


class Structure(HTMLParser):
    """The elements of a page with the chain of their open ancestors."""

    VOID = frozenset({"img", "br", "meta", "wbr", "hr", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.seen: list[tuple[str, dict[str, str], list[tuple[str, dict[str, str]]]]] = []
        self.style = ""
        self.headers: list[list[str]] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.seen.append((tag, attributes, list(self.stack)))
        if tag == "table":
            self.headers.append([])
        if tag == "th" and self.headers:
            self.headers[-1].append("")
        if tag not in self.VOID:
            self.stack.append((tag, attributes))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data
        elif any(tag == "th" for tag, _ in self.stack) and self.headers:
            self.headers[-1][-1] += data

    def elements(self, tag: str) -> list[tuple[dict[str, str], list[tuple[str, dict[str, str]]]]]:
        return [(attrs, parents) for t, attrs, parents in self.seen if t == tag]


def _run(tmp_path: Path) -> Path:
    rows = []
    for repeat in (1, 2):
        for replicas in (1, 2, 4):
            for mode, per_req in (("session", 1.1), ("jwt", 0.1), ("jwt+denylist", 1.1)):
                rows.append(row(mode, replicas, "30@15", repeat, 449.0, 900.0 + repeat, per_req))
                ceiling = 1000.0 * replicas**0.5 if mode == "jwt" else 800.0
                rows.append(row(mode, replicas, "32", repeat, ceiling, 9000.0, per_req))
    rows[0].flags = "behind-offered-rate;failures>1%;a long reason that must wrap in its column"
    return write_run(tmp_path / "run", rows)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Structure]:
    """The run folder, drawn once for the tests that only read it (drawing takes seconds)."""
    run_dir = _run(tmp_path_factory.mktemp("report"))
    return run_dir, _parse(report.render(run_dir))


def _parse(path: Path) -> Structure:
    page = Structure()
    page.feed(path.read_text())
    return page


def test_every_chart_is_referenced_and_on_disk(rendered: tuple[Path, Structure]) -> None:
    run_dir, page = rendered
    drawn = {attrs["data-file"] for attrs, _ in page.elements("img")}
    assert {name for name, _ in charts.CHARTS} <= drawn
    for name in drawn:
        assert (run_dir / name).read_bytes().startswith(b"\x89PNG"), name
    for attrs, _ in page.elements("a"):
        href = attrs.get("href", "")
        if href.endswith((".png", ".csv")) and "/" not in href:
            assert (run_dir / href).exists(), href


def test_every_table_scrolls_inside_a_container_that_fits_the_page(
    rendered: tuple[Path, Structure],
) -> None:
    _, page = rendered
    tables = page.elements("table")
    assert len(tables) >= 2  # the summary and the spread across repeats
    for _attrs, parents in tables:
        tag, attrs = parents[-1]
        assert tag == "div" and "table-wrap" in attrs.get("class", "").split()
    style = re.sub(r"\s+", "", page.style)
    wrap = re.search(r"\.table-wrap\{([^}]*)\}", style)
    assert wrap is not None
    assert "overflow-x:auto" in wrap.group(1) and "max-width:100%" in wrap.group(1)
    # long text (flags, errors) may wrap; it cannot stretch its column past a bound
    assert re.search(r"td\.long\{[^}]*max-width:\d+em", style)
    assert re.search(r"td\.long\{[^}]*white-space:normal", style)


# Issue 13: "check every chart and the report in headless Chromium at 1400 px". The page
# is laid out by a real browser 1400 px wide; a script at its end reports, once the
# charts are decoded, the page's own width and what reaches past the window's edge.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_MEASURE = """<script>
window.addEventListener("load", () => {
  const edge = window.innerWidth + 0.5;
  const scroller = (e) => {
    for (let p = e.parentElement; p; p = p.parentElement) {
      if (["auto", "scroll"].includes(getComputedStyle(p).overflowX)) return p;
    }
    return e;
  };
  const images = [...document.images];
  document.body.setAttribute("data-measured", JSON.stringify({
    window: window.innerWidth,
    page: document.documentElement.scrollWidth,
    images: images.length,
    broken: images.filter((i) => !i.complete || i.naturalWidth === 0).length,
    images_past_edge: images.filter((i) => i.getBoundingClientRect().right > edge).length,
    tables: document.querySelectorAll("table").length,
    tables_past_edge: [...document.querySelectorAll("table")]
      .filter((t) => scroller(t).getBoundingClientRect().right > edge).length,
  }));
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_report_fits_1400_px_in_headless_chromium(
    rendered: tuple[Path, Structure], tmp_path: Path
) -> None:
    run_dir, page = rendered
    probe = tmp_path / "report.html"
    probe.write_text((run_dir / "report.html").read_text() + _MEASURE)
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1400,1000", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    found = re.search(r'data-measured="([^"]*)"', done.stdout)
    assert found, (done.returncode, done.stderr[-2000:])
    measured = json.loads(unescape(found.group(1)))
    assert measured["window"] == 1400
    assert measured["images"] == len(page.elements("img")) >= len(charts.CHARTS)
    assert measured["broken"] == 0  # every embedded chart decodes
    assert measured["images_past_edge"] == 0  # and is scaled into the page
    assert measured["tables"] >= 2 and measured["tables_past_edge"] == 0
    assert measured["page"] <= 1400  # no sideways scrolling of the page itself


def test_the_summary_table_shows_a_few_columns_and_the_csv_all(
    rendered: tuple[Path, Structure],
) -> None:
    run_dir, page = rendered
    shown = report.table_columns(report.read_summary(run_dir / "summary.csv"))
    assert page.headers[0] == shown  # the first table is the summary
    assert len(shown) <= 16 < len(COLUMNS)
    assert set(shown) <= set(COLUMNS)
    # µs latency where the run has it: Locust's ms columns are not repeated beside it
    assert "read_p50_us" in shown and "read_p50_ms" not in shown
    # a column the same in every row (one JWT algorithm) says nothing per row
    assert "jwt_alg" not in shown
    header = (run_dir / "summary.csv").read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS)


def test_the_manifest_is_folded_in_details(rendered: tuple[Path, Structure]) -> None:
    _, page = rendered
    pres = page.elements("pre")
    assert pres, "the manifest is in the page"
    for _attrs, parents in pres:
        assert "details" in [tag for tag, _ in parents]
    assert page.elements("summary")


def test_redis_chart_claims_a_trend_only_across_load_levels() -> None:
    # commands per request is the slope through 0 of commands/s against requests/s
    assert charts.through_origin_slope([(100.0, 110.0), (1000.0, 1100.0)]) == 1.1
    assert charts.through_origin_slope([]) != charts.through_origin_slope([])  # NaN
    assert not charts.spans_load([449.0, 450.0, 452.0])  # one paced level: no trend
    assert charts.spans_load([450.0, 2400.0])


def test_the_default_run_finds_each_modes_ceiling_in_about_five_minutes() -> None:
    args = build_parser().parse_args(["bench"])
    config = build_config(args)
    loads = config.matrix.loads
    assert any(load.rate == 0 for load in loads), "a closed-loop level: the ceiling"
    assert any(load.rate > 0 for load in loads), "a paced level: latency without omission"
    assert config.estimate_s() <= 6 * 60


def test_a_run_with_store_axes_gets_their_charts_referenced_and_on_disk(tmp_path: Path) -> None:
    rows = []
    for repeat in (1, 2):
        for mode, per_req in (("session", 1.1), ("jwt", 0.1)):
            rows.append(row(mode, 1, "30@15", repeat, 449.0, 900.0, per_req))  # direct
            for rtt in (0.0, 1.0, 5.0):
                proxied = row(mode, 1, "30@15", repeat, 449.0, 900.0 + 1000 * rtt, per_req)
                proxied.store_link, proxied.store_rtt_ms = "proxy", rtt
                proxied.cell_id += f"-rtt{rtt:g}ms"
                rows.append(proxied)
            for replicas in (1, 2):
                rows.append(row(mode, replicas, "32", repeat, 800.0 * replicas, 9000.0, per_req))
                capped = row(mode, replicas, "32", repeat, 300.0, 20000.0, per_req)
                capped.redis_cpus = 0.05
                capped.cell_id += "-cpu0.05"
                rows.append(capped)
    run_dir = write_run(tmp_path / "axes", rows)
    page = _parse(report.render(run_dir))
    drawn = {attrs["data-file"] for attrs, _ in page.elements("img")}
    assert {"distance.png", "capacity.png"} <= drawn
    for name in drawn:
        assert (run_dir / name).read_bytes().startswith(b"\x89PNG"), name
    shown = report.table_columns(report.read_summary(run_dir / "summary.csv"))
    assert {"store_link", "store_rtt_ms", "redis_cpus"} <= set(shown)  # the axes it varied
    assert "<td>0.05</td>" in (run_dir / "report.html").read_text()  # the quota, not "0.1"
