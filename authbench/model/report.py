"""The report section "What this predicts beyond this machine", from a model.json document.

`section_html(doc)` is what a run's report.html embeds (`section_for(run_dir)` reads the
run's model.json, None when the run has none); `section_text(doc)` is the same content as
plain text for the terminal. Both print every validation error: a flagged one is marked,
never left out.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

TITLE = "What this predicts beyond this machine"


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.{digits}f}"


def _crossover(s: dict[str, Any]) -> str:
    low, high = s.get("crossover_replicas_range") or (None, None)
    return f"{_n(s['crossover_replicas'], 1)} ({_n(low, 1)}-{_n(high, 1)})"


def _first_saturated(s: dict[str, Any]) -> str:
    if s["first_saturated_replicas"] is None:
        return "not within 64"
    return f"{s['first_saturated_replicas']} ({_n(s['rps_at_first_saturated'])} req/s)"


def _saturation_rows(doc: dict[str, Any]) -> list[list[str]]:
    alt = {(s["mode"], s["store_rtt_ms"]): s for s in doc.get("saturation_from_cell_redis_cpu", [])}
    rows = []
    for s in doc.get("saturation", []):
        a = alt.get((s["mode"], s["store_rtt_ms"]), {})
        rows.append(
            [
                s["mode"],
                _n(s["store_rtt_ms"], 0),
                _n(s["redis_demand_us_per_request"], 1),
                _n(s["redis_ceiling_rps"]),
                _crossover(s),
                _first_saturated(s),
                f"{_n(a.get('redis_ceiling_rps'))} req/s at {_n(a.get('crossover_replicas'), 1)}"
                if a
                else "—",
                ("yes" if s.get("pool_binds") else "no")
                + f" (from {_n(s.get('rtt_ms_from_which_pool_binds'), 2)} ms)",
            ]
        )
    return rows


SATURATION_HEAD = [
    "mode",
    "store RTT ms",
    "Redis µs/request",
    "one Redis core, req/s",
    "replicas where Redis becomes the bottleneck (range over cells)",
    "first replica count with Redis >= 90% (req/s there)",
    "Redis ceiling and bottleneck replicas from the cells' own Redis CPU",
    "the RTT caps a replica through its Redis pool",
]
VALIDATION_HEAD = [
    "run",
    "cell",
    "load",
    "Redis cap",
    "RTT ms",
    "how",
    "measured req/s",
    "predicted req/s",
    "error",
    "order run",
]


def _validation_rows(doc: dict[str, Any]) -> list[tuple[list[str], bool]]:
    flag = doc["inputs"]["flag_pct"]
    rows = []
    for v in doc["validation"]["cells"]:
        err = f"{v['error_pct']:+.1f}%" + (f"  FLAGGED (> {flag:g}%)" if v["flagged"] else "")
        rows.append(
            (
                [
                    v["run"],
                    v["cell_id"],
                    v["load"],
                    "none" if v["redis_cpus"] is None else f"{v['redis_cpus']:g} core",
                    _n(v["store_rtt_ms"], 1),
                    v["method"],
                    _n(v["measured_rps"]),
                    _n(v["predicted_rps"]),
                    err,
                    _n(v["schedule_position"]),
                ],
                bool(v["flagged"]),
            )
        )
    return rows


LATENCY_HEAD = [
    "run",
    "cell",
    "store RTT ms",
    "store PING µs (measured)",
    "base cell",
    "base read p50 µs",
    "round trips/read",
    "measured read p50 µs",
    "predicted read p50 µs",
    "error",
]


def _latency_rows(doc: dict[str, Any]) -> list[tuple[list[str], bool]]:
    flag = doc["inputs"]["flag_pct"]
    rows = []
    for v in doc["validation"].get("latency", []):
        err = f"{v['error_pct']:+.1f}%" + (f"  FLAGGED (> {flag:g}%)" if v["flagged"] else "")
        rows.append(
            (
                [
                    v["run"],
                    v["cell_id"],
                    _n(v["store_rtt_ms"], 1),
                    _n(v.get("measured_store_ping_us")),
                    v["base_cell_id"],
                    _n(v["base_read_p50_us"]),
                    _n(v["read_redis_round_trips"], 0),
                    _n(v["measured_read_p50_us"]),
                    _n(v["predicted_read_p50_us"]),
                    err,
                ],
                bool(v["flagged"]),
            )
        )
    return rows


MEDIANS_HEAD = [
    "run",
    "mode",
    "replicas",
    "Redis cap",
    "RTT ms (store link)",
    "figure",
    "repeats",
    "measured median (min-max)",
    "predicted median",
    "error",
]


def _median_rows(doc: dict[str, Any]) -> list[tuple[list[str], bool]]:
    flag = doc["inputs"]["flag_pct"]
    rows = []
    for m in doc["validation"].get("medians_over_repeats", []):
        err = f"{m['error_pct']:+.1f}%" + (f"  FLAGGED (> {flag:g}%)" if m["flagged"] else "")
        rows.append(
            (
                [
                    m["run"],
                    m["mode"],
                    str(m["replicas"]),
                    "none" if m["redis_cpus"] is None else f"{m['redis_cpus']:g} core",
                    f"{_n(m['store_rtt_ms'], 1)} ({m.get('store_link', '')})",
                    m["figure"],
                    str(m["repeats"]),
                    f"{_n(m['measured_median'])} ({_n(m['measured_min'])}-{_n(m['measured_max'])})",
                    _n(m["predicted_median"]),
                    err,
                ],
                bool(m["flagged"]),
            )
        )
    return rows


def _fitted_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    fitted = doc["demands"]["fitted"]
    names = sorted({k for f in fitted.values() for k in f["demand_us"]})
    head = ["mode", "basis", *[f"{n} µs" for n in names], "total µs", "Redis cmds/request"]
    rows = [
        [
            mode,
            f["basis"],
            *[_n(f["demand_us"].get(n), 1) for n in names],
            _n(f["total_us"], 1),
            _n(f["redis_cmds_per_req"], 3),
        ]
        for mode, f in fitted.items()
    ]
    return head, rows


def _summary(doc: dict[str, Any]) -> str:
    v = doc["validation"]
    n = len(v["cells"]) + len(v.get("latency", []))
    loads = "; ".join(
        f"{run}: {_n(a, 1)} at the start, {_n(b, 1)} at the end"
        for run, (a, b) in doc.get("load_average_at_start_and_end", {}).items()
    )
    return (
        f"{n} predictions of measured cells ({len(v['cells'])} throughputs, "
        f"{len(v.get('latency', []))} store-distance latencies); {v['flagged']} off by more "
        f"than {doc['inputs']['flag_pct']:g}% (largest error {v['max_abs_error_pct']:g}%). "
        f"The machine is shared: its 1-minute load average was {loads}. CPU taken by "
        "processes outside the run is in no demand, so a cell measured while the machine "
        "was busy can come out slower than predicted; the bench samples no machine-wide "
        "CPU, so the model cannot tell (the order-run column says when each cell ran)."
    )


def section_html(doc: dict[str, Any], image_src: str | None = None) -> str:
    """The section as an HTML fragment: h2, the chart when `image_src` is given (a URL or a
    data: URI), the assumptions and the tables."""

    def table(head: list[str], rows: list[list[str]], marks: list[bool] | None = None) -> str:
        th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = []
        for i, row in enumerate(rows):
            style = ' style="background:#fdd"' if marks and marks[i] else ""
            tds = "".join(f"<td>{html.escape(c)}</td>" for c in row)
            body.append(f"<tr{style}>{tds}</tr>")
        return f"<table><tr>{th}</tr>{''.join(body)}</table>"

    fitted_head, fitted_rows = _fitted_rows(doc)
    vrows = _validation_rows(doc)
    parts = [
        f"<h2>{html.escape(TITLE)}</h2>",
        "<p>A queueing model fitted to this run's measured service demands (utilisation "
        "law), checked against this machine's own cells, then used to project one core per "
        "replica and one Redis core. <code>model.json</code> holds every input and output; "
        "<code>projection.png</code> draws it.</p>",
        *(
            [
                f'<img src="{html.escape(image_src)}" alt="capacity model: projection and '
                'validation" style="max-width:100%">'
            ]
            if image_src
            else []
        ),
        "<h3>Assumptions</h3><ul>",
        *[f"<li>{html.escape(a)}</li>" for a in doc["assumptions"]],
        "</ul><h3>Fitted demands (CPU per request)</h3>",
        table(fitted_head, fitted_rows),
        "<h3>Where one Redis core runs out</h3>",
        table(SATURATION_HEAD, _saturation_rows(doc)),
        f"<h3>Validation on this machine</h3><p>{html.escape(_summary(doc))}</p>",
        "<h4>Medians over repeats</h4>",
        table(MEDIANS_HEAD, [r for r, _ in _median_rows(doc)], [f for _, f in _median_rows(doc)]),
        "<h4>Every cell</h4>",
        table(VALIDATION_HEAD, [r for r, _ in vrows], [f for _, f in vrows]),
    ]
    lrows = _latency_rows(doc)
    if lrows:
        parts += [
            "<h4>Store distance: read latency</h4>",
            table(LATENCY_HEAD, [r for r, _ in lrows], [f for _, f in lrows]),
        ]
    return "\n".join(parts)


def section_text(doc: dict[str, Any]) -> str:
    """The section as plain text (what `authbench model` prints)."""

    def table(head: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return [fmt.format(*head), *[fmt.format(*r) for r in rows]]

    fitted_head, fitted_rows = _fitted_rows(doc)
    lines = [TITLE, "=" * len(TITLE), "", "Assumptions:"]
    lines += [f"- {a}" for a in doc["assumptions"]]
    lines += ["", "Fitted demands (CPU per request):", *table(fitted_head, fitted_rows)]
    lines += ["", "Where one Redis core runs out:"]
    lines += table(SATURATION_HEAD, _saturation_rows(doc))
    lines += ["", "Validation on this machine: " + _summary(doc)]
    lines += ["", "Medians over repeats:", *table(MEDIANS_HEAD, [r for r, _ in _median_rows(doc)])]
    lines += ["", "Every cell:"]
    lines += table(VALIDATION_HEAD, [r for r, _ in _validation_rows(doc)])
    lrows = _latency_rows(doc)
    if lrows:
        lines += ["", "Store distance, read latency:"]
        lines += table(LATENCY_HEAD, [r for r, _ in lrows])
    return "\n".join(lines)


def section_for(run_dir: Path) -> str | None:
    """The HTML section of a run that has a model.json (its projection.png embedded, so
    the page stays self-contained), else None."""
    path = run_dir / "model.json"
    if not path.exists():
        return None
    png = run_dir / "projection.png"
    image = (
        "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        if png.exists()
        else None
    )
    return section_html(json.loads(path.read_text()), image)
