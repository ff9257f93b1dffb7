"""A chaos run: every chosen scenario in turn, into one `results/<run-id>/` directory.

Layout (the contract's results directory, kind "chaos"):

    manifest.json          kind, git commit, versions, machine, every setting, scenarios
    summary.csv            one row per scenario and mode: the figures of timeline.py
    losses.csv             per scenario: planted credentials lost across the fault
    revocation.csv         per scenario and mode: the revocation window
    <scenario>/requests.csv  every request Locust made (raw)
    <scenario>/timeline.csv  1-second buckets per mode
    <scenario>/result.json   fault moments, figures, losses, revocation windows
    <scenario>/timeline.png, overview.png, report.html   (authbench.chaos.report)
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from authbench.chaos import report
from authbench.chaos.scenarios import (
    AUTH_FAULTS,
    READ_REPLICA_FAULTS,
    ChaosOptions,
    Scenario,
    ScenarioResult,
    modes_served,
    run_scenario,
)
from authbench.modes import CHAOS_MODES
from authbench.provenance import new_run_id, run_head
from authbench.targets.base import Deployment
from authcore.config import documented_settings

Progress = Callable[[str], None]


def estimated_seconds(options: ChaosOptions, scenarios: Sequence[Scenario]) -> float:
    """A rough duration, for the progress line: start-up, probes, outage, after, stop."""
    t = options.timing
    total = 0.0
    for s in scenarios:
        faults = ("kill", "pause", "slow", *AUTH_FAULTS, *READ_REPLICA_FAULTS)
        outage = t.outage_s if s.fault in faults else 0.5
        warm = max(t.warmup_s, t.revocation_observe_s * 2 + 2) + t.aof_margin_s
        total += 12 + warm + outage + t.after_s
    return total


def build_manifest(
    run_id: str, options: ChaosOptions, scenarios: Sequence[Scenario], target: str
) -> dict[str, Any]:
    return {
        **run_head("chaos", run_id),
        "settings": {
            "target": target,
            "replicas_per_group": options.replicas,
            "load": asdict(options.shape),
            "timing": asdict(options.timing),
            "planted_each": options.planted_each,
            "store_link": options.store_link.reason,  # the slow scenario's delay
            "store_link_via": options.store_link.via,
            "modes": {m.key: {"label": m.label, "group": m.chaos_group} for m in CHAOS_MODES},
            # The services' own settings: defaults, except what the chaos cluster sets.
            "service_defaults": {name: default for name, default, _doc in documented_settings()},
            "service_overrides": {
                "AUTH_SEED_USERS": str(options.seed_users),
                "JWT_REVOCATION": "denylist (main, open groups) / none (stateless group)",
                "DENYLIST_FAIL": "closed (main group) / open (open group)",
            },
        },
        "scenarios": [s.name for s in scenarios],
        "scenario_definitions": {s.name: asdict(s) for s in scenarios},
        "completed": [],
    }


def run_chaos(
    options: ChaosOptions,
    scenarios: Sequence[Scenario],
    results_root: Path,
    run_id: str | None = None,
    say: Progress = print,
    target: Deployment | None = None,
) -> Path:
    """Run the scenarios one after another; returns the results directory.

    Without `target` each scenario gets a fresh local cluster; with one (the compose
    stack), every scenario runs on it in turn.
    """
    run_id = run_id or new_run_id("chaos")
    out = results_root / run_id
    out.mkdir(parents=True, exist_ok=False)
    manifest = build_manifest(
        run_id, options, scenarios, "local" if target is None else target.target
    )
    if target is not None:
        manifest["settings"]["modes"] = {m.key: {"label": m.label} for m, _ in modes_served(target)}
        manifest["settings"]["redis_persistence"] = target.redis_persistence
    _write_json(out / "manifest.json", manifest)
    started = time.monotonic()
    eta = estimated_seconds(options, scenarios)
    say(f"chaos run {run_id}: {len(scenarios)} scenarios, about {eta / 60:.1f} min -> {out}")
    results: list[ScenarioResult] = []
    for index, scenario in enumerate(scenarios, 1):
        prefix = f"[{index}/{len(scenarios)} {scenario.name} +{{:.0f}}s]"
        say(f"{prefix.format(time.monotonic() - started)} {scenario.what}")

        def scenario_say(message: str, prefix: str = prefix) -> None:
            say(f"{prefix.format(time.monotonic() - started)} {message}")

        result = run_scenario(scenario, options, out / scenario.name, scenario_say, target)
        results.append(result)
        manifest["completed"].append(scenario.name)
        _write_json(out / "manifest.json", manifest)
        for mode, f in result.figures.items():
            rate = f.outage_error_rate
            scenario_say(
                f"  {mode:<14} outage errors "
                + (f"{100 * rate:5.1f}%" if rate is not None else "    - ")
                + f"  recovery {f.recovery_s:.2f} s  hung {f.hung}  max {f.max_latency_ms} ms"
            )
    manifest["duration_s"] = round(time.monotonic() - started, 1)
    _write_json(out / "manifest.json", manifest)
    write_tables(out, results)
    say(f"report: {report.render(out)}  ({manifest['duration_s']:.0f} s in all)")
    return out


def write_tables(out: Path, results: Sequence[ScenarioResult]) -> None:
    summary = []
    for r in results:
        for f in r.figures.values():
            summary.append({"scenario": r.scenario.name, **f.as_row()})
    _write_csv(out / "summary.csv", summary)
    _write_csv(
        out / "losses.csv",
        [
            {"scenario": r.scenario.name, "persistence": r.scenario.persistence, **asdict(r.losses)}
            for r in results
        ],
    )
    _write_csv(
        out / "revocation.csv",
        [{"scenario": r.scenario.name, **asdict(w)} for r in results for w in r.revocation],
    )


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        if not rows:
            return
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
