"""Charts and report.html of a chaos run, drawn from its files only (`authbench report DIR`).

Reads `manifest.json` (the scenario list), and per scenario `<name>/timeline.csv` and
`<name>/result.json`; writes `<name>/timeline.png`, `overview.png`, `failover.png` (runs
with a failover scenario) and `report.html`.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from authbench import modes as registry
from authbench.modes import CHAOS_MODES as MODES


def _label(mode: str) -> str:
    return registry.label(mode)


def _key(name: str) -> str:
    """A mode's key, also for a former key written by an earlier run (`denylist`)."""
    mode = registry.find(name)
    return mode.key if mode is not None else name


def normalized(result: dict[str, Any]) -> dict[str, Any]:
    """A scenario's result.json with every mode named by its current key."""
    figures = {_key(name): f for name, f in result.get("figures", {}).items()}
    revocation = [{**w, "mode": _key(w["mode"])} for w in result.get("revocation", [])]
    return {**result, "figures": figures, "revocation": revocation}


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_timeline(path: Path) -> dict[str, list[dict[str, float]]]:
    """mode -> rows (second, ok, failed, status_*, p50_ms, p99_ms), in time order."""
    per_mode: dict[str, list[dict[str, float]]] = {}
    if not path.exists() or path.stat().st_size == 0:
        return per_mode
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            values = {k: _number(v) for k, v in row.items() if k not in ("scenario", "mode")}
            per_mode.setdefault(_key(row["mode"]), []).append(values)
    for rows in per_mode.values():
        rows.sort(key=lambda r: r["second"])
    return per_mode


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


STATUS_COLORS = {503: "#d62728", 401: "#9467bd", 504: "#8c564b", 0: "#000000"}


def chart_timeline(
    title: str, per_mode: dict[str, list[dict[str, float]]], outage_s: float, path: Path
) -> None:
    """Per mode (one row each): requests per second, stacked as successes and failures by
    status, and p50/p99 latency; the fault is at t = 0, the outage shaded."""
    plt = _pyplot()
    modes = [m.key for m in MODES if m.key in per_mode]
    fig, axes = plt.subplots(
        len(modes), 2, figsize=(12, 2.3 * len(modes) + 1), sharex=True, squeeze=False
    )
    for row, mode in enumerate(modes):
        rows = per_mode[mode]
        ax_count, ax_lat = axes[row]
        xs = [r["second"] for r in rows]
        ok = [r["ok"] for r in rows]
        color = registry.color(mode, "#555555")
        ax_count.bar(xs, ok, width=1.0, align="edge", color=color, alpha=0.75, label="ok")
        bottom = list(ok)
        statuses = sorted(
            int(k.removeprefix("status_")) for k in rows[0] if k.startswith("status_")
        )
        for status in statuses:
            ys = [r[f"status_{status}"] for r in rows]
            if not any(ys):
                continue
            ax_count.bar(
                xs,
                ys,
                width=1.0,
                align="edge",
                bottom=bottom,
                color=STATUS_COLORS.get(status, "#7f7f7f"),
                hatch="//",
                label=str(status) if status else "no answer",
            )
            bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
        ax_count.set_ylabel(f"{_label(mode)}\nrequests / s", fontsize=9)
        ax_count.legend(loc="lower left", fontsize=7, ncol=4)
        mid = [x + 0.5 for x in xs]
        ax_lat.plot(mid, [r["p99_ms"] for r in rows], color=color, label="p99", marker=".")
        ax_lat.plot(mid, [r["p50_ms"] for r in rows], color=color, linestyle=":", label="p50")
        ax_lat.set_yscale("log")
        ax_lat.set_ylabel("latency (ms)", fontsize=9)
        ax_lat.legend(loc="upper left", fontsize=7)
    for ax in axes.flat:
        ax.axvspan(0, max(outage_s, 0.05), color="#999999", alpha=0.3, linewidth=0)
        ax.axvline(0, color="black", linewidth=1)
        ax.axvline(outage_s, color="black", linewidth=1, linestyle="--")
        ax.grid(True, alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the fault (shaded: Redis down or slow; dashed: back)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def chart_overview(results: Sequence[dict[str, Any]], path: Path) -> None:
    """Error rate during the outage and recovery time, per scenario and mode."""
    plt = _pyplot()
    names = [r["scenario"]["name"] for r in results]
    modes = [m.key for m in MODES if any(m.key in r["figures"] for r in results)]
    width = 0.8 / len(modes)
    fig, (ax_err, ax_rec) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, mode in enumerate(modes):
        xs = [j + (i - (len(modes) - 1) / 2) * width for j in range(len(names))]
        errors = [100 * (r["figures"][mode]["outage_error_rate"] or 0.0) for r in results]
        recovery = [r["figures"][mode]["recovery_s"] or 0.0 for r in results]
        color = registry.get(mode).color
        ax_err.bar(xs, errors, width, color=color, label=_label(mode))
        ax_rec.bar(xs, recovery, width, color=color, label=_label(mode))
    for ax in (ax_err, ax_rec):
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=15)
        ax.grid(True, axis="y", alpha=0.3)
    ax_err.set_ylabel("failed requests during the outage (%)")
    ax_rec.set_ylabel("Redis back -> last failure (s)")
    ax_err.set_title("Error rate while Redis is down or slow")
    ax_rec.set_title("Time to full recovery")
    ax_err.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } code { background: #f4f4f4; padding: 0 0.2em; }
.note { color: #555; font-size: 0.9em; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(run_dir: Path, name: str, alt: str) -> str:
    """The PNG inlined (report.html is self-contained; the PNG files stay alongside)."""
    data = base64.b64encode((run_dir / name).read_bytes()).decode()
    return f"<img alt='{html.escape(alt)}' data-file='{name}' src='data:image/png;base64,{data}'>"


def _pct(rate: float | None) -> str | None:
    return None if rate is None else f"{100 * rate:.1f}%"


def figures_table(result: dict[str, Any]) -> str:
    rows = []
    # Where each mode's credentials were checked (issue 15); runs before it did not say.
    placed = any("validate_at" in f for f in result["figures"].values())
    for mode in (m.key for m in MODES if m.key in result["figures"]):
        f = result["figures"][mode]
        statuses = " ".join(f"{k}: {v}" for k, v in f["outage_statuses"].items()) or "-"
        rows.append(
            [
                _label(mode),
                *([f.get("validate_at", "")] if placed else []),
                f["requests"],
                f["outage_requests"],
                _pct(f["outage_error_rate"]),
                statuses,
                f["first_error_s"],
                f["recovery_s"],
                f["hung"],
                f["max_latency_ms"],
                f["p99_before_ms"],
                f["p99_outage_ms"],
                f["p99_after_ms"],
            ]
        )
    return _table(
        [
            "mode",
            *(["checked at"] if placed else []),
            "requests",
            "during outage",
            "failed during outage",
            "statuses",
            "first error (s)",
            "recovery (s)",
            "hung",
            "max ms",
            "p99 before",
            "p99 outage",
            "p99 after",
        ],
        rows,
    )


def losses_table(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        loss = r["losses"]
        n = loss["planted_each"]
        again = loss["revoked_valid_again"]
        rows.append(
            [
                r["scenario"]["name"],
                r["scenario"]["persistence"],
                f"{loss['sessions_lost']}/{n}",
                f"{loss['refresh_tokens_lost']}/{n}",
                "-" if again is None else f"{again}/{n}",
                loss["unanswered"],
            ]
        )
    return _table(
        [
            "scenario",
            "Redis persistence",
            "sessions lost",
            "refresh tokens lost",
            "logged-out JWTs valid again (denylist)",
            "no definite answer",
        ],
        rows,
    )


def revocation_table(results: Sequence[dict[str, Any]]) -> str:
    """Per mode, over every scenario's measurement (each taken before its fault)."""
    rows = []
    for mode in (m.key for m in MODES):
        found = [w for r in results for w in r["revocation"] if w["mode"] == mode]
        if not found:
            continue
        complete = [w for w in found if w["window_ms"] is not None]
        worst = max((w["window_ms"] for w in complete), default=None)
        expires = [w["token_expires_in_s"] for w in found if w["token_expires_in_s"] is not None]
        observed = min(w["observed_s"] for w in found)
        if complete and len(complete) == len(found):
            verdict = f"refused by every replica within {worst:.0f} ms"
        elif not complete:
            verdict = f"still accepted by every replica after {observed:.1f} s" + (
                f"; valid until it expires ({min(expires):.0f} s later)" if expires else ""
            )
        else:
            verdict = f"refused everywhere in {len(complete)} of {len(found)} runs"
        asked = "gateway" if found[0].get("through_gateway") else found[0]["replicas"]
        rows.append([_label(mode), len(found), asked, worst, verdict])
    return _table(
        [
            "mode",
            "measurements",
            "replicas",
            "worst window (ms)",
            "what a logged-out credential did",
        ],
        rows,
    )


def findings(results: Sequence[dict[str, Any]]) -> list[str]:
    """Plain sentences built from the measured figures (nothing here is typed in)."""
    lines = []
    for r in results:
        name = r["scenario"]["name"]
        parts = []
        for mode in (m.key for m in MODES if m.key in r["figures"]):
            f = r["figures"][mode]
            rate = f["outage_error_rate"]
            if rate is None:
                outage_s = r["window"]["back_at"] - r["window"]["fault_at"]
                parts.append(f"{_label(mode)}: no request fell in the {outage_s:.2f} s outage")
                continue
            part = f"{_label(mode)}: {100 * rate:.0f}% failed during the outage"
            if f["outage_statuses"]:
                part += (
                    " (" + ", ".join(f"{v} x {k}" for k, v in f["outage_statuses"].items()) + ")"
                )
            if f["failures_after_back"]:
                part += f", last failure {f['recovery_s']:.2f} s after Redis was back"
            if f["hung"]:
                part += f", {f['hung']} requests hung"
            parts.append(part)
        lines.append(
            f"<b>{html.escape(name)}</b>: " + "; ".join(html.escape(p) for p in parts) + "."
        )
    return lines


_COUNT_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _modes_sentence(results: Sequence[dict[str, Any]]) -> str:
    """Which modes ran, each with what its replicas check (from the registry)."""
    shown = [m for m in MODES if any(m.key in r["figures"] for r in results)] or list(MODES)
    count = _COUNT_WORDS[len(shown)] if len(shown) < len(_COUNT_WORDS) else str(len(shown))
    parts = [f"<b>{html.escape(m.label)}</b> ({html.escape(m.checks)})" for m in shown]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return f"All {count} modes run at once on one Redis (see the README's chaos section): {listed}."


def _failover_section(results: Sequence[dict[str, Any]], run_dir: Path) -> str:
    """The failover scenarios side by side (authbench.chaos.failover), with failover.png,
    and the replica-crash, shard-kill and read-replica scenarios' own figures; empty
    without them."""
    from authbench.chaos import failover, read_replica, replica_crash, shard_kill

    drawn = failover.chart_losses(results, run_dir / "failover.png", _pyplot())
    chart = _img(run_dir, "failover.png", "acknowledged writes kept and lost") if drawn else ""
    return (
        failover.report_section(results, _table)
        + chart
        + replica_crash.report_section(results, _table)
        + shard_kill.report_section(results, _table)
        + read_replica.report_section(results, _table)
    )


def render(run_dir: Path) -> Path:
    """Draw every chart and write report.html; returns the report's path."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    results = []
    sections = []
    for name in manifest.get("scenarios", []):
        result_path = run_dir / name / "result.json"
        if not result_path.exists():
            continue
        result = normalized(json.loads(result_path.read_text()))
        results.append(result)
        window = result["window"]
        outage_s = window["back_at"] - window["fault_at"]
        per_mode = read_timeline(run_dir / name / "timeline.csv")
        chart = run_dir / name / "timeline.png"
        title = f"{name}: {result['scenario']['title']}"
        chart_timeline(title, per_mode, outage_s, chart)
        extra = ""
        if result.get("shard_kill"):
            from authbench.chaos import shard_kill

            shard_kill.chart(result["shard_kill"], run_dir / name / "shards.png")
            extra = _img(run_dir, f"{name}/shards.png", f"probe sessions by shard in {name}")
        sections.append(
            f"<h3>{html.escape(title)}</h3><p>{html.escape(result['scenario']['what'])} "
            f"Redis was down or slow for {outage_s:.2f} s.</p>"
            + _img(run_dir, f"{name}/timeline.png", f"timeline of {name}")
            + extra
            + figures_table(result)
        )
    if results:
        chart_overview(results, run_dir / "overview.png")
    settings = manifest.get("settings", {})
    settings_text = html.escape(json.dumps(settings, sort_keys=True))
    body = [
        f"<h1>authbench chaos run {html.escape(str(manifest.get('run_id', run_dir.name)))}</h1>",
        f"<p class=note>git {html.escape(str(manifest.get('git', {}).get('commit', '?')))}, "
        f"target {html.escape(str(settings.get('target', 'local')))}, started "
        f"{html.escape(str(manifest.get('started_utc', '?')))}.</p>"
        f"<details><summary>every setting</summary><code>{settings_text}</code></details>",
        "<h2 id=chaos>Chaos: what each mode loses when Redis fails</h2>",
        f"<p>{_modes_sentence(results)} Each chart: "
        "successes, failures by status and p50/p99 latency per second; the fault is at "
        "t = 0, the shaded band is the outage, the dashed line is Redis back.</p>",
        "<h3>Findings</h3><ul>"
        + "".join(f"<li>{line}</li>" for line in findings(results))
        + "</ul>",
        _img(run_dir, "overview.png", "error rate and recovery per scenario") if results else "",
        "<h3>What survived a restart</h3>"
        "<p>Credentials created and confirmed before the fault (at least "
        f"{html.escape(str(settings.get('timing', {}).get('aof_margin_s', '?')))} s before it, "
        "since AOF everysec may lose up to one second by design), checked after Redis came "
        "back.</p>" + losses_table(results),
        _failover_section(results, run_dir),
        "<h3>Revocation window</h3><p>Time from an acknowledged logout until every replica "
        "of the mode's group refuses the credential, asked directly, while Redis is up.</p>"
        + revocation_table(results),
        *sections,
    ]
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>authbench chaos</title>"
        f"<style>{STYLE}</style></head><body>" + "\n".join(body) + "</body></html>"
    )
    out = run_dir / "report.html"
    out.write_text(page)
    return out
