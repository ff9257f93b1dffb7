"""report.html of a bench results directory, drawn from its files alone.

`render(run_dir)` reads `manifest.json`, `summary.csv` (authbench.bench.summary) and each
cell's files, draws the PNG charts (charts.py) and writes one self-contained
`report.html` (charts embedded, each also linked as its own file). It never measures
anything: `authbench report DIR` redraws a finished run. Every sentence under "Findings"
is computed from the data (findings.py); nothing is typed in by hand.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from authbench import modes
from authbench.bench import axes_report
from authbench.bench.aggregate import Config, aggregate
from authbench.bench.charts import (
    CHARTS,
    chart_cpu,
    chart_empty,
    chart_errors,
    chart_latency,
    chart_redis,
    chart_throughput,
    chart_validation,
)
from authbench.bench.findings import findings
from authbench.bench.summary import SummaryRow, read_summary, rows_in_order, unit
from authbench.model import report as model_report

# The summary columns the HTML table shows, few enough to fit the page (summary.csv holds
# them all). Latency in µs where the run has the HdrHistograms, else Locust's ms; the store
# axes' columns only in runs that measured them; the gateway that served each cell whenever
# the run recorded it (ours or nginx, --gateway).
TABLE_COLUMNS = (
    "mode", "replicas", "load", "jwt_alg", "validate_at", "gateway", "repeat", "read_rps",
    "read_p50_us", "read_p99_us", "read_p50_ms", "read_p99_ms", "fail_pct", "redis_ops_s",
    "redis_cpu_pct", "cpu_replicas_pct", "cpu_loadgen_pct", "store_link", "store_rtt_ms",
    "redis_cpus", "token_bytes", "after_logout_status", "flags", "error",
)  # fmt: skip

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.table-wrap{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:.8em}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}
td.long{white-space:normal;max-width:18em;overflow-wrap:anywhere;text-align:left}
th{background:#f4f4f4} td.t{text-align:left} tr.flag{background:#fff4e0}
img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.8em}
li{margin:.4em 0}
"""


def _mode_css(shown: Sequence[modes.Mode]) -> str:
    """One colour rule per mode, from the registry."""
    return "".join(f".mode-{m.slug}{{color:{m.color}}}\n" for m in shown)


def draw_charts(run_dir: Path, rows: Sequence[SummaryRow], configs: Sequence[Config]) -> None:
    """Every chart file of the run (a placeholder where there is nothing to draw)."""
    good_rows = [r for r in rows if not r.error]
    for name, draw in (
        ("latency.png", chart_latency),
        ("throughput.png", chart_throughput),
        ("redis.png", chart_redis),
    ):
        draw(configs, run_dir / name) if configs else chart_empty(run_dir / name)
    chart_validation(configs, run_dir / "validation.png")
    chart_cpu(good_rows, run_dir / "cpu.png") if good_rows else chart_empty(run_dir / "cpu.png")
    chart_errors(rows, run_dir / "errors.png") if rows else chart_empty(run_dir / "errors.png")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "<td></td>"
        if value == int(value):
            return f"<td>{int(value):,}</td>"
        # three significant digits below 10: a 0.05-core quota must not read as 0.1
        return f"<td>{value:.3g}</td>" if abs(value) < 10 else f"<td>{value:,.1f}</td>"
    text = str(value)
    # long text (flags, errors) wraps in its own column; names stay on one line
    return f'<td class="t{" long" if len(text) > 24 else ""}">{html.escape(text)}</td>'


def _summary_cells(row: SummaryRow) -> dict[str, Any]:
    """A row as the table shows it: figures as numbers, names and status codes as text."""
    shown: dict[str, Any] = {}
    for column in TABLE_COLUMNS:
        value = getattr(row, column)
        if isinstance(value, str):
            shown[column] = value
        elif unit(column) == "HTTP status":  # a code, not a quantity
            shown[column] = "" if value is None else str(value)
        else:
            shown[column] = row.number(column)
    return shown


def table_columns(rows: Sequence[SummaryRow]) -> list[str]:
    """The TABLE_COLUMNS this run has something in: no column empty in every row, Locust's
    ms latency only where there are no µs figures, an axis only when it varies."""
    cells = [_summary_cells(r) for r in rows]

    def empty(column: str) -> bool:
        return all(c[column] in ("", None) or c[column] != c[column] for c in cells)  # NaN

    def constant(column: str) -> bool:
        return len({str(c[column]) for c in cells}) <= 1

    hidden = {c for c in TABLE_COLUMNS if empty(c)}
    if "read_p50_us" not in hidden:
        hidden |= {"read_p50_ms", "read_p99_ms"}
    hidden |= {
        c
        for c in ("jwt_alg", "validate_at", "repeat", "store_link", "store_rtt_ms", "token_bytes")
        if constant(c)
    }
    return [c for c in TABLE_COLUMNS if c not in hidden or c in ("mode", "replicas", "load")]


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    # a long column name may break after its underscores, so headers stay narrow
    head = "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in columns)
    body = []
    for row in rows:
        css = ' class="flag"' if row.get("flags") or row.get("error") else ""
        body.append(f"<tr{css}>" + "".join(_cell(row.get(c, "")) for c in columns) + "</tr>")
    # The wrapper scrolls sideways rather than letting a wide table push past the page.
    return f"<div class='table-wrap'><table><tr>{head}</tr>{''.join(body)}</table></div>"


def _spread_table(configs: Sequence[Config]) -> str:
    variants = any(c.variant for c in configs)  # a run through nginx or at the gateway
    rows = []
    for c in configs:
        rps = c.spread_of("read_rps")
        # µs from the HdrHistograms where the run has them, else Locust's 1-ms buckets
        us = c.hdr_reads is not None
        p99 = c.spread_of("read_p99_us" if us else "read_p99_ms")
        p99_merged = c.read_percentile_us(0.99) if us else c.read_percentile(0.99)
        unit_name = "µs" if us else "ms"
        rows.append(
            {
                "mode": c.mode,
                "replicas": float(c.replicas),
                "load": c.load,
                "jwt_alg": c.alg,
                **({"gateway, placement": c.variant} if variants else {}),
                "repeats": float(rps.n),
                "reads/s mean": rps.mean,
                "reads/s stdev": rps.stdev,
                "reads/s min": rps.low,
                "reads/s max": rps.high,
                f"read p99 {unit_name} (merged)": p99_merged,
                f"read p99 {unit_name} min": p99.low,
                f"read p99 {unit_name} max": p99.high,
                "cv of reads/s %": 100 * rps.relative if rps.n > 1 else math.nan,
            }
        )
    return _table(rows, list(rows[0]) if rows else [])


def settings_note(manifest: dict[str, Any]) -> str:
    """How the store link was made and why (authbench.store_link.choose), for the findings."""
    return str(manifest.get("settings", {}).get("store_link", ""))


def render(run_dir: Path) -> Path:
    """Draw the charts and report.html of a bench results directory; return the report."""
    run_dir = Path(run_dir)
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    rows = read_summary(run_dir / "summary.csv")
    # A run with store axes: the replica charts and findings show the base cells (Redis
    # direct, uncapped, unpadded); the axes get charts and findings of their own.
    base = [r for r in rows if not axes_report.on_an_axis(r)] or list(rows)
    configs = aggregate(run_dir, base)
    draw_charts(run_dir, base, configs)
    axes_charts = axes_report.draw(run_dir, rows) if axes_report.has_axes(rows) else []
    axes_lines = axes_report.findings(rows, settings_note(manifest)) if axes_charts else []

    shown = [m for m in modes.MODES if any(r.mode == m.key for r in rows)]
    settings = manifest.get("settings", {})
    protocol = settings.get("protocol", {})
    matrix = settings.get("matrix", {})
    machine = manifest.get("machine", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>authbench bench {html.escape(manifest.get('run_id', ''))}</title>",
        f"<style>{STYLE}{_mode_css(shown)}</style></head><body>",
        "<h1>Session vs JWT vs JWT + denylist, as replicas grow</h1>",
        f"<p>Run <b>{html.escape(str(manifest.get('run_id', '')))}</b>, "
        f"{html.escape(str(manifest.get('started_utc', '')))} to "
        f"{html.escape(str(manifest.get('finished_utc', 'unfinished')))}, commit "
        f"<code>{html.escape(str(manifest.get('git', {}).get('commit', ''))[:12])}</code>"
        f"{' (with uncommitted changes)' if manifest.get('git', {}).get('dirty') else ''}, on "
        f"{html.escape(str(machine.get('cpu_model', '')))} x{machine.get('logical_cpus', '?')}. "
        f"Matrix: modes {html.escape(', '.join(matrix.get('modes', [])))}; replicas "
        f"{matrix.get('replicas')}; loads {html.escape(str(matrix.get('loads')))} (USERS@RATE: "
        "each user starts RATE tasks per second, constant arrival); JWT algorithms "
        f"{matrix.get('jwt_algs')}; {matrix.get('repeats')} repeat(s), order shuffled with seed "
        f"{matrix.get('seed')}. Per cell: {protocol.get('warmup_s')} s warm-up (excluded), "
        f"{protocol.get('capture_s')} s capture, {protocol.get('rest_s')} s rest.</p>",
        "<h2>Findings</h2><ul>",
        *(f"<li>{html.escape(line)}</li>" for line in findings(base, configs, manifest, run_dir)),
        *(f"<li>{html.escape(line)}</li>" for line in axes_lines),
        "</ul>",
        "<h2>Charts</h2>",
        "<p>Colours are fixed per mode: "
        + ", ".join(f"<b class='mode-{m.slug}'>{html.escape(m.label)}</b>" for m in shown)
        + ". Latency is client-side (Locust) for the authenticated reads GET /api/me and "
        "/api/items/[id]; percentiles merge the repeats' raw response-time buckets.</p>",
    ]
    for name, title in (*CHARTS, *axes_charts):
        data = base64.b64encode((run_dir / name).read_bytes()).decode()
        parts.append(
            f"<h3>{html.escape(title)}</h3><p><a href='{name}'>{name}</a></p>"
            f"<img alt='{html.escape(title)}' data-file='{name}' "
            f"src='data:image/png;base64,{data}'>"
        )
    # `authbench model RUN` leaves model.json beside the run: its projection and validation.
    model_section = model_report.section_for(run_dir)
    if model_section is not None:
        parts.append(model_section)
    parts += [
        "<h2>Summary (one row per cell; all columns in <a href='summary.csv'>summary.csv</a>)</h2>",
        _table([_summary_cells(r) for r in rows_in_order(rows)], table_columns(rows)),
        "<p>CPU is % of one core over the capture window; redis_cmds_per_req counts every "
        "Redis command during the window (logins and refreshes included) per Locust request.</p>",
        "<h2>Spread across repeats</h2>",
        _spread_table(configs),
        "<h2>Cells</h2><ul>",
    ]
    for row in rows_in_order(rows):
        cid = html.escape(row.cell_id)
        locust_html = (run_dir / "cells" / row.cell_id / "locust.html").exists()
        parts.append(
            f"<li>{cid}: "
            + (f"<a href='cells/{cid}/locust.html'>Locust report</a>, " if locust_html else "")
            + f"<a href='cells/{cid}/locust_stats.csv'>stats</a>, "
            f"<a href='cells/{cid}/locust_failures.csv'>failures</a>, "
            f"<a href='cells/{cid}/cell.json'>samplers</a></li>"
        )
    parts += [
        "</ul><h2>Manifest</h2>",
        "<details><summary>manifest.json: versions, machine, settings, schedule (click to "
        "open)</summary>",
        f"<pre>{html.escape(json.dumps(manifest, indent=2))}</pre></details>",
        "</body></html>",
    ]
    out = run_dir / "report.html"
    out.write_text("\n".join(parts))
    return out
