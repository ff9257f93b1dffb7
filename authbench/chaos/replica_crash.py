"""The `replica-crash` scenario: SIGKILL one resource replica of the main group under load.

What should happen: only the requests in flight on that replica fail (the gateway
cannot finish them), and the gateway ejects it at once (a refused connection, passively,
EJECT_AFTER_FAILURES) or at the latest at its next active health check
(HEALTH_INTERVAL_S); after that no request goes to it. So the figures are:

- time to ejection: from the kill to the gateway's own gauge
  `authbench_gateway_upstream_healthy{upstream=...}` reading 0 (polled on its operator
  port every 10 ms), against the health interval;
- failures by phase, per mode: requests started before the kill that failed (in flight),
  started between the kill and the ejection, and started after it (should be none);
  modes served by other gateways are the control (their replicas were not touched);
- time to rejoin: the replica started again, until the gauge reads 1.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from authbench.chaos import timeline
from authbench.targets.base import Deployment

Progress = Callable[[str], None]
POLL_S = 0.01


@dataclass(slots=True)
class CrashTimes:
    victim: str  # the replica's URL, as the gateway names it
    ejected_s: float | None  # kill -> the gateway's gauge reads 0 (None: not within the wait)
    rejoined_s: float | None  # restart issued -> the gauge reads 1 again
    down_s: float  # how long the replica stayed down


def _wait_gauge(target: Deployment, victim: str, healthy: bool, timeout_s: float) -> float | None:
    """Wall clock when the gateway's gauge for `victim` first reads `healthy`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if target.upstream_health().get(victim) is healthy:
            return time.time()
        time.sleep(POLL_S)
    return None


def inject(
    target: Deployment, outage_s: float, events: dict[str, float], say: Progress
) -> tuple[timeline.FaultWindow, CrashTimes]:
    """Kill the last replica of the main group, time its ejection, start it again after
    `outage_s`, and time its return to the rotation."""
    victims = target.replica_urls()
    if len(victims) < 2:
        raise ValueError("replica-crash needs at least two replicas behind the gateway")
    index = len(victims) - 1
    victim = victims[index]
    if target.upstream_health().get(victim) is not True:
        raise ValueError(f"{victim} is not in the gateway's rotation before the kill")
    fault_at = time.time()
    target.kill_replica(index)
    say(f"fault: replica {victim} SIGKILLed")
    ejected_at = _wait_gauge(target, victim, False, max(10.0, outage_s))
    back_at = ejected_at if ejected_at is not None else time.time()
    say(
        "ejected by the gateway after "
        + (f"{ejected_at - fault_at:.3f} s" if ejected_at is not None else "(not seen)")
    )
    _sleep_until(fault_at + outage_s)
    restart_at = time.time()
    target.start_replica(index)
    rejoined_at = _wait_gauge(target, victim, True, 30.0)
    say(
        "replica back in the rotation "
        + (f"{rejoined_at - restart_at:.2f} s after its restart" if rejoined_at else "(not seen)")
    )
    events.update(
        fault_at=fault_at, restore_at=back_at, back_at=back_at, replica_restarted_at=restart_at
    )
    times = CrashTimes(
        victim=victim,
        ejected_s=round(ejected_at - fault_at, 3) if ejected_at is not None else None,
        rejoined_s=round(rejoined_at - restart_at, 3) if rejoined_at is not None else None,
        down_s=round(restart_at - fault_at, 3),
    )
    return timeline.FaultWindow(fault_at, back_at, back_at), times


def figures(
    records: Sequence[timeline.Record],
    window: timeline.FaultWindow,
    times: CrashTimes,
    modes: dict[str, str],
    health_interval_s: float,
) -> dict[str, Any]:
    """Per mode (with the gateway group serving it): failures by the phase in which the
    failed request started, and how many requests were answered in each phase."""
    fault_at, ejected_at = window.fault_at, window.back_at
    per_mode: dict[str, dict[str, Any]] = {}
    for mode, group in modes.items():
        mine = [r for r in records if r.mode == mode]
        # In flight: started before the kill and still unanswered when it came.
        in_flight = [r for r in mine if r.start < fault_at <= r.end]
        between = [r for r in mine if fault_at <= r.start < ejected_at]
        after = [r for r in mine if r.start >= ejected_at]
        per_mode[mode] = {
            "group": group,
            "in_flight": len(in_flight),
            "in_flight_failed": sum(not r.ok for r in in_flight),
            "before_ejection": len(between),
            "before_ejection_failed": sum(not r.ok for r in between),
            "after_ejection": len(after),
            "after_ejection_failed": sum(not r.ok for r in after),
            "statuses": dict(
                sorted(
                    _count(str(r.status) for r in mine if not r.ok and r.end >= fault_at).items()
                )
            ),
        }
    return {
        "times": asdict(times),
        "health_interval_s": health_interval_s,
        "modes": per_mode,
    }


def _count(values: Any) -> dict[str, int]:
    counted: dict[str, int] = {}
    for value in values:
        counted[value] = counted.get(value, 0) + 1
    return counted


def report_section(
    results: Sequence[dict[str, Any]],
    table: Callable[[Sequence[str], Sequence[Sequence[Any]]], str],
) -> str:
    """report.html's section for the replica-crash scenario; empty without it."""
    parts = []
    for r in results:
        crash = r.get("replica_crash")
        if not crash:
            continue
        t = crash["times"]
        rows = [
            [
                mode,
                f["group"],
                f"{f['in_flight_failed']} of {f['in_flight']}",
                f"{f['before_ejection_failed']} of {f['before_ejection']}",
                f"{f['after_ejection_failed']} of {f['after_ejection']}",
                " ".join(f"{k}: {v}" for k, v in f["statuses"].items()) or "-",
            ]
            for mode, f in crash["modes"].items()
        ]
        parts.append(
            "<h3 id=replica-crash>A replica crashed mid-request</h3>"
            f"<p>{html.escape(t['victim'])} SIGKILLed under load; the gateway ejected it "
            + (f"{t['ejected_s']:.3f} s" if t["ejected_s"] is not None else "(not seen)")
            + f" after the kill (its health interval: {crash['health_interval_s']:g} s; "
            "read from its own upstream gauge on the operator port); restarted after "
            f"{t['down_s']:.1f} s, it was back in the rotation "
            + (f"{t['rejoined_s']:.2f} s later" if t["rejoined_s"] is not None else "(not seen)")
            + ". Failed requests by when they started; modes of other gateways are the "
            "control.</p>"
            + table(
                [
                    "mode",
                    "gateway group",
                    "in flight at the kill: failed",
                    "kill to ejection: failed",
                    "after ejection: failed",
                    "statuses",
                ],
                rows,
            )
        )
    return "".join(parts)


def _sleep_until(wall_clock: float) -> None:
    delay = wall_clock - time.time()
    if delay > 0:
        time.sleep(delay)
