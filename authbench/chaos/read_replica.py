"""The `read-replica-kill` and `read-replica-pause` scenarios: one read replica of a
`replicas:2` store SIGKILLed (or SIGSTOPped) under load.

What should happen: nothing a client sees. authcore sends each session read (GET + PTTL)
to the read replicas in turn, each behind its own breaker; a read that fails on one goes
on to the next, then to the primary (authcore.redis_store `RedisStore.read`).

- Killed: a refused connection fails at once, that replica's breaker opens, and the
  other replica takes its reads; once the breaker's cooldown has passed, one probe
  read is tried on it per cooldown (and fails fast) until it is back.
- Paused: a read sent to it waits REDIS_TIMEOUT_MS before it moves on, so a few reads
  are slower by that much, then the breaker keeps it out (one probe per cooldown,
  each waiting out the timeout).
- Back (restarted empty, it syncs from the primary before it is called back; or
  resumed): the next probe succeeds, its breaker closes and reads return to it.

The figures:

- probe sessions logged in before the fault, read in sweeps during it: reads, failed
  reads and their statuses, the slowest read;
- the GET calls (INFO commandstats) each node served per second before the fault,
  during it and after the replica's return, so the session reads are seen moving (the
  primary's GETs come from the other modes, and from the misses a replica passes on);
- rejoined: from "back" to the first read the replica serves again (INFO polled);
- the load's requests per mode during the outage (as shard-kill reports them).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from authbench.chaos import probes, timeline
from authbench.stores.replicas import replica_name
from authbench.targets.base import Deployment
from authcore.config import documented_settings

Progress = Callable[[str], None]
SWEEP_PAUSE_S = 0.1  # between two reads of every probe session
RATE_WINDOW_S = 1.0  # reads per node are counted over this long before and after
POLL_S = 0.05  # how often the replica's GET count is asked while it rejoins
REJOIN_WAIT_S = 10.0  # longest wait for the replica's first read after it is back
Reads = dict[str, int | None]
# What bounds a read on a frozen replica, and how often a dead one is tried again.
TIMEOUT_SETTINGS = ("REDIS_TIMEOUT_MS", "REDIS_BREAKER_COOLDOWN_MS")


@dataclass(slots=True)
class Sweeps:
    """Every read of the probe sessions during the outage."""

    statuses: list[int] = field(default_factory=list)
    slowest_ms: float = 0.0
    count: int = 0  # sweeps made

    def sweep(self, gateway: str, cookies: Sequence[dict[str, str]]) -> list[int]:
        found = []
        for cookie in cookies:
            started = time.perf_counter()
            found.append(probes.call(gateway, "GET", "/api/me", headers=cookie).status)
            self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000.0)
        self.count += 1
        self.statuses += found
        return found


def rates(start: Reads, end: Reads, seconds: float) -> dict[str, float | None]:
    """Reads per second of each node between two counts (None: not answering at either
    end, or restarted in between)."""
    found: dict[str, float | None] = {}
    for name, last in end.items():
        first = start.get(name)
        found[name] = None
        if first is not None and last is not None and last >= first and seconds > 0:
            found[name] = round((last - first) / seconds, 1)
    return found


def _counted(target: Deployment) -> tuple[Reads, float]:
    reads = target.read_replica_reads()
    return reads, time.monotonic()


def inject(
    target: Deployment,
    pause: bool,
    session_gateway: str,
    cookies: Sequence[dict[str, str]],
    outage_s: float,
    events: dict[str, float],
    say: Progress,
) -> tuple[timeline.FaultWindow, dict[str, Any]]:
    """Kill (or pause) the last read replica, read the probe sessions until `outage_s`
    has passed, restart (or resume) it, and time its first read; returns the window and
    the scenario's figures."""
    count = target.store.read_replicas
    if count < 1:
        raise ValueError("the read-replica scenarios need a read replica (--store replicas:N)")
    victim = count - 1
    name = replica_name(victim)
    before_0, at_0 = _counted(target)
    time.sleep(RATE_WINDOW_S)
    before_1, at_1 = _counted(target)
    fault_at = time.time()
    if pause:
        target.pause_read_replica(victim)
    else:
        target.kill_read_replica(victim)
    say(f"fault: read replica {victim + 1} of {count} ({name}) " + ("SIGSTOPped" if pause else
        "SIGKILLed"))  # fmt: skip
    outage_0, out_at_0 = _counted(target)
    sweeps = Sweeps()
    while True:  # at least one sweep, however long the counting above took
        sweeps.sweep(session_gateway, cookies)
        if time.time() >= fault_at + outage_s:
            break
        time.sleep(SWEEP_PAUSE_S)
    outage_1, out_at_1 = _counted(target)
    restore_at = time.time()
    if pause:
        target.resume_read_replica(victim)
        while target.read_replica_reads().get(name) is None:  # answering again
            if time.time() > restore_at + REJOIN_WAIT_S:
                break
            time.sleep(POLL_S)
    else:
        target.start_read_replica(victim)  # returns once its link to the primary is up
    back_at = time.time()
    baseline = target.read_replica_reads().get(name)
    rejoined_at = None
    while time.time() < back_at + REJOIN_WAIT_S:
        served = target.read_replica_reads().get(name)
        if served is not None and baseline is not None and served > baseline:
            rejoined_at = time.time()
            break
        time.sleep(POLL_S)
    say(
        f"{name} back after {back_at - fault_at:.2f} s; its first read "
        + (f"{rejoined_at - back_at:.2f} s later" if rejoined_at else "not seen")
        + f"; {sweeps.count} sweeps, {sum(s != 200 for s in sweeps.statuses)} failed reads"
    )
    after_0, aft_at_0 = _counted(target)
    time.sleep(RATE_WINDOW_S)
    after_1, aft_at_1 = _counted(target)
    after = [probes.call(session_gateway, "GET", "/api/me", headers=c).status for c in cookies]
    events.update(fault_at=fault_at, restore_at=restore_at, back_at=back_at)
    if rejoined_at is not None:
        events["replica_rejoined_at"] = rejoined_at
    settings = {name: default for name, default, _doc in documented_settings()}
    settings.update(target.settings)
    figures = summary(
        fault="pause" if pause else "kill",
        read_replicas=count,
        victim=name,
        probe_sessions=len(cookies),
        sweeps=sweeps,
        reads_per_s={
            "before": rates(before_0, before_1, at_1 - at_0),
            "outage": rates(outage_0, outage_1, out_at_1 - out_at_0),
            "after": rates(after_0, after_1, aft_at_1 - aft_at_0),
        },
        back_s=back_at - fault_at,
        rejoined_s=None if rejoined_at is None else rejoined_at - back_at,
        after=after,
        timeouts={name: settings.get(name, "") for name in TIMEOUT_SETTINGS},
    )
    return timeline.FaultWindow(fault_at, restore_at, back_at), figures


def summary(
    *,
    fault: str,
    read_replicas: int,
    victim: str,
    probe_sessions: int,
    sweeps: Sweeps,
    reads_per_s: dict[str, dict[str, float | None]],
    back_s: float,
    rejoined_s: float | None,
    after: Sequence[int],
    timeouts: dict[str, str],
) -> dict[str, Any]:
    """The scenario's figures (see the module's docstring); never a session ID."""
    statuses: dict[str, int] = {}
    for s in sweeps.statuses:
        if s != 200:
            statuses[str(s)] = statuses.get(str(s), 0) + 1
    return {
        "fault": fault,
        "read_replicas": read_replicas,
        "victim": victim,
        "probe_sessions": probe_sessions,
        "sweeps": sweeps.count,
        "reads": len(sweeps.statuses),
        "reads_failed": sum(s != 200 for s in sweeps.statuses),
        "statuses": dict(sorted(statuses.items())),
        "slowest_read_ms": round(sweeps.slowest_ms, 1),
        "reads_per_s": reads_per_s,
        "back_s": round(back_s, 3),
        "rejoined_s": None if rejoined_s is None else round(rejoined_s, 3),
        "after_ok": sum(s == 200 for s in after),
        "after_not_ok": sum(s != 200 for s in after),
        "settings": timeouts,  # what bounds a read on a dead or frozen replica
    }


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report_section(
    results: Sequence[dict[str, Any]],
    table: Callable[[Sequence[str], Sequence[Sequence[Any]]], str],
) -> str:
    """report.html's section for the read-replica scenarios; empty without them."""
    parts = []
    for r in results:
        f = r.get("read_replica")
        if not f:
            continue
        done = "SIGSTOPped" if f["fault"] == "pause" else "SIGKILLed"
        returned = "resumed" if f["fault"] == "pause" else "restarted (empty, synced again)"
        phases = f["reads_per_s"]
        nodes = list(phases["before"])
        rows = [
            [node + (" (the fault)" if node == f["victim"] else "")]
            + [_rate(phases[p].get(node)) for p in ("before", "outage", "after")]
            for node in nodes
        ]
        load = [
            [mode, x["requests"], x["failed"],
             f"{100 * x['failed_share']:.1f}%" if x["failed_share"] is not None else "-"]
            for mode, x in f.get("load", {}).items()
        ]  # fmt: skip
        rejoined = f["rejoined_s"]
        parts.append(
            f"<h3 id=read-replica-{f['fault']}>One read replica {done}</h3>"
            f"<p>{html.escape(f['victim'])} of {f['read_replicas']} read replicas {done} "
            f"under load, {returned} after the outage; back after {f['back_s']:.2f} s, its "
            "first read served "
            + (f"{rejoined:.2f} s after that" if rejoined is not None else "(not seen)")
            + f". {f['probe_sessions']} probe sessions read {f['sweeps']} times each during "
            f"the outage: {f['reads_failed']} of {f['reads']} reads failed"
            + (
                " (" + html.escape(", ".join(f"{k}: {v}" for k, v in f["statuses"].items())) + ")"
                if f["statuses"]
                else ""
            )
            + f", the slowest took {f['slowest_read_ms']:.0f} ms; after the return "
            f"{f['after_ok']} of {f['after_ok'] + f['after_not_ok']} answered 200.</p>"
            "<p>GET calls each node served per second (INFO commandstats): a session read "
            "is one, on a replica; the primary's come from the other modes and from the "
            "misses a replica passes on to it:</p>"
            + table(["node", "before", "during the outage", "after its return"], rows)
            + (
                "<p>The load's own requests during the outage, per mode:</p>"
                + table(["mode", "requests", "failed", "failed share"], load)
                if load
                else ""
            )
        )
    return "".join(parts)
