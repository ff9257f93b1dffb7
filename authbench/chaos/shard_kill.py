"""The `shard-kill` scenario: SIGKILL one shard of a Redis Cluster store under load.

What should happen: only the sessions whose keys live on that shard fail (a JSON 503),
every other one goes on answering, and the share that fails is the share of keys the
shard holds, about its share of the 16384 slots. So before the kill the scenario logs
in a probe set of sessions and asks the cluster which shard holds each one's key
(CLUSTER KEYSLOT, `Deployment.shard_of_keys`); during the outage it reads every probe
session over and over, and reports:

- expected: the probe sessions on the killed shard / all probe sessions, and the
  shard's share of the slots;
- observed: the share of probe sessions that failed at least once, split by where
  their key lives (on the killed shard: should all fail; elsewhere: should none);
- the shard started again after the outage (same port and nodes file, so it takes its
  slots back, empty: no persistence): its sessions are then gone (401), the others
  still answer.

The Locust load (every mode at once) gives the same per mode from its own users: its
error rate during the outage is compared with the expected share in the report.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from authbench.chaos import probes, timeline
from authbench.modes import Login
from authbench.targets.base import Deployment
from authcore.sessions import session_key

Progress = Callable[[str], None]
SLOTS = 16384
SWEEP_PAUSE_S = 0.2  # between two reads of every probe session


@dataclass(slots=True)
class Probe:
    cookie: dict[str, str]
    shard: int  # 0-based, by CLUSTER KEYSLOT
    statuses: list[int] = field(default_factory=list)  # each read during the outage
    after: int = 0  # the status of one read once the shard is back


LOGIN_ATTEMPTS = 3  # per probe session, before the fault


def log_in(gateway: str, accounts: Sequence[int]) -> list[dict[str, str]]:
    """One session per account (accounts may repeat): its cookie header. Before the fault a
    503 is the loaded host's (a store call past REDIS_TIMEOUT_MS; seen on compose at load
    average 15), not the scenario's: such a login is tried again, up to LOGIN_ATTEMPTS."""
    cookies = []
    for account in accounts:
        for attempt in range(1, LOGIN_ATTEMPTS + 1):
            try:
                answer = probes.login(gateway, account, Login.SESSION)
            except probes.ProbeError:
                if attempt == LOGIN_ATTEMPTS:
                    raise
                time.sleep(0.5)  # past the store breaker's default cooldown
            else:
                cookies.append(probes.credential_headers(answer))
                break
    return cookies


def _session_id(cookie: dict[str, str]) -> str:
    return cookie["Cookie"].partition("=")[2]


def _sweep(gateway: str, probe_set: Sequence[Probe]) -> list[int]:
    return [probes.call(gateway, "GET", "/api/me", headers=p.cookie).status for p in probe_set]


def inject(
    target: Deployment,
    session_gateway: str,
    cookies: Sequence[dict[str, str]],
    outage_s: float,
    events: dict[str, float],
    say: Progress,
) -> tuple[timeline.FaultWindow, dict[str, Any]]:
    """Kill the last shard, read every probe session until `outage_s` has passed, start
    the shard again, read them once more; returns the window and the scenario's figures."""
    shards = target.store.shards
    victim = shards - 1
    where = target.shard_of_keys([session_key(_session_id(c)) for c in cookies])
    probe_set = [Probe(c, s) for c, s in zip(cookies, where, strict=True)]
    on_victim = sum(p.shard == victim for p in probe_set)
    say(f"{len(probe_set)} probe sessions, {on_victim} on shard {victim + 1} of {shards}")
    fault_at = time.time()
    target.kill_shard(victim)
    say(f"fault: shard {victim + 1} of {shards} SIGKILLed")
    sweeps = 0
    while time.time() < fault_at + outage_s:
        for probe, status in zip(probe_set, _sweep(session_gateway, probe_set), strict=True):
            probe.statuses.append(status)
        sweeps += 1
        time.sleep(SWEEP_PAUSE_S)
    restore_at = time.time()
    target.start_shard(victim)  # returns once every node says cluster_state:ok
    back_at = time.time()
    say(f"shard {victim + 1} back (empty) after {back_at - fault_at:.2f} s; {sweeps} sweeps")
    # The shard's node breaker in each service waits out its cooldown before it tries it
    # again; read after that, so "after" tells lost from not yet retried.
    time.sleep(1.0)
    for probe, status in zip(probe_set, _sweep(session_gateway, probe_set), strict=True):
        probe.after = status
    events.update(fault_at=fault_at, restore_at=restore_at, back_at=back_at)
    return timeline.FaultWindow(fault_at, restore_at, back_at), summary(
        probe_set, victim, shards, sweeps
    )


def summary(probe_set: Sequence[Probe], victim: int, shards: int, sweeps: int) -> dict[str, Any]:
    """The scenario's figures from the probe sessions (see the module's docstring)."""
    from authbench.stores.cluster import slot_ranges

    first, last = slot_ranges(shards)[victim]
    mine = [p for p in probe_set if p.shard == victim]
    others = [p for p in probe_set if p.shard != victim]

    def failed(group: Sequence[Probe]) -> int:
        return sum(any(s != 200 for s in p.statuses) for p in group)

    statuses: dict[str, int] = {}
    for p in probe_set:
        for s in p.statuses:
            if s != 200:
                statuses[str(s)] = statuses.get(str(s), 0) + 1
    return {
        "shards": shards,
        "victim": victim + 1,
        "victim_slots": [first, last],
        "slot_share": round((last - first + 1) / SLOTS, 4),
        "probe_sessions": len(probe_set),
        "probe_sessions_on_victim": len(mine),
        "expected_share": round(len(mine) / len(probe_set), 4) if probe_set else None,
        "sweeps": sweeps,
        "failed_share": round(failed(probe_set) / len(probe_set), 4) if probe_set else None,
        "failed_on_victim": failed(mine),
        "failed_elsewhere": failed(others),
        "reads_elsewhere": sum(len(p.statuses) for p in others),
        "reads_failed_elsewhere": sum(s != 200 for p in others for s in p.statuses),
        "statuses": dict(sorted(statuses.items())),
        "after_restart": {
            "victim_lost": sum(p.after == 401 for p in mine),
            "victim_other": sum(p.after not in (200, 401) for p in mine),
            "elsewhere_ok": sum(p.after == 200 for p in others),
            "elsewhere_not_ok": sum(p.after != 200 for p in others),
        },
        "probes": [asdict(p) | {"cookie": None} for p in probe_set],  # never the secret
    }


def load_figures(
    records: Sequence[timeline.Record], window: timeline.FaultWindow, modes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per mode: the Locust requests answered during the outage, and the share failed."""
    found = {}
    for mode in modes:
        during = [
            r for r in records if r.mode == mode and window.fault_at <= r.start < window.restore_at
        ]
        bad = sum(not r.ok for r in during)
        found[mode] = {
            "requests": len(during),
            "failed": bad,
            "failed_share": round(bad / len(during), 4) if during else None,
        }
    return found


def report_section(
    results: Sequence[dict[str, Any]],
    table: Callable[[Sequence[str], Sequence[Sequence[Any]]], str],
) -> str:
    """report.html's section for the shard-kill scenario; empty without it."""
    parts = []
    for r in results:
        figures = r.get("shard_kill")
        if not figures:
            continue
        after = figures["after_restart"]
        expected = figures["expected_share"]
        rows = [
            [
                mode,
                f["requests"],
                f["failed"],
                f"{100 * f['failed_share']:.1f}%" if f["failed_share"] is not None else "-",
            ]
            for mode, f in figures.get("load", {}).items()
        ]
        parts.append(
            "<h3 id=shard-kill>One Redis Cluster shard killed</h3>"
            f"<p>Shard {figures['victim']} of {figures['shards']} (slots "
            f"{figures['victim_slots'][0]}-{figures['victim_slots'][1]}, "
            f"{100 * figures['slot_share']:.1f}% of 16384) SIGKILLed under load. Of "
            f"{figures['probe_sessions']} probe sessions, {figures['probe_sessions_on_victim']} "
            f"had their key on it by CLUSTER KEYSLOT: expected share "
            f"{100 * expected:.1f}%. Read {figures['sweeps']} times each during the outage, "
            f"{100 * figures['failed_share']:.1f}% failed at least once: "
            f"{figures['failed_on_victim']} of {figures['probe_sessions_on_victim']} on the "
            f"killed shard, {figures['failed_elsewhere']} elsewhere "
            f"({figures['reads_failed_elsewhere']} of {figures['reads_elsewhere']} reads). "
            "Statuses of failed reads: "
            + html.escape(", ".join(f"{k}: {v}" for k, v in figures["statuses"].items()) or "-")
            + f". Back (empty, no persistence): {after['victim_lost']} of its sessions gone "
            f"(401), {after['elsewhere_ok']} of the others still answering.</p>"
            + (
                "<p>The load's own requests during the outage, per mode:</p>"
                + table(["mode", "requests", "failed", "failed share"], rows)
                if rows
                else ""
            )
        )
    return "".join(parts)


def chart(figures: dict[str, Any], path: Path) -> None:
    """Left: the probe sessions on each shard, and how many failed during the outage.
    Right: the share failed per mode of the load, against the share expected."""
    from authbench.chaos.report import _pyplot
    from authbench.modes import get

    plt = _pyplot()
    shards = range(1, figures["shards"] + 1)
    on = [sum(p["shard"] + 1 == s for p in figures["probes"]) for s in shards]
    failed = [
        sum(p["shard"] + 1 == s and any(x != 200 for x in p["statuses"]) for p in figures["probes"])
        for s in shards
    ]
    fig, (ax_shards, ax_modes) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax_shards.bar([s - 0.2 for s in shards], on, 0.4, color="#1f77b4", label="probe sessions")
    ax_shards.bar([s + 0.2 for s in shards], failed, 0.4, color="#d62728", label="failed")
    ax_shards.set_xticks(list(shards))
    ax_shards.set_xticklabels([f"shard {s}" + (" (killed)" if s == figures["victim"] else "")
                               for s in shards])  # fmt: skip
    ax_shards.set_ylabel("sessions")
    ax_shards.set_title("Probe sessions by the shard holding their key (CLUSTER KEYSLOT)")
    ax_shards.legend(fontsize=8)
    load = figures.get("load", {})
    names = list(load)
    shares = [100 * (load[m]["failed_share"] or 0.0) for m in names]
    ax_modes.bar(range(len(names)), shares, color=[get(m).color for m in names])
    ax_modes.axhline(100 * figures["expected_share"], color="#333", linestyle="--",
                     label="expected: probe sessions on the killed shard")  # fmt: skip
    ax_modes.set_xticks(range(len(names)))
    ax_modes.set_xticklabels(names, rotation=20, fontsize=8)
    ax_modes.set_ylabel("failed requests during the outage (%)")
    ax_modes.set_title("The load's requests during the outage, per mode")
    ax_modes.legend(fontsize=8)
    for ax in (ax_shards, ax_modes):
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
