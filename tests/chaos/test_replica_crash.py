"""The replica-crash scenario's pieces on a real cluster: the gateway's own view of its
upstreams, a replica SIGKILLed under load and ejected within the health interval, and
the per-phase figures drawn from recorded requests."""

from __future__ import annotations

import threading
import time

from authbench.chaos import replica_crash, timeline
from tests.client import bearer, login, request
from tests.conftest import ClusterFactory


def test_a_killed_replica_is_ejected_within_the_health_interval_and_rejoins(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(replicas=2, env={"HEALTH_INTERVAL_S": "0.5"})
    victim = cluster.replica_urls()[1]
    health = cluster.upstream_health()  # the auth service is one of its upstreams too
    assert all(health[url] for url in cluster.replica_urls())
    token = bearer(login(cluster.gateway_url, 1, "jwt"))
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:  # bounded: stops on the event or after 30 s
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            statuses.append(request(cluster.gateway_url, "GET", "/api/me", headers=token).status)

    worker = threading.Thread(target=load)
    worker.start()
    events: dict[str, float] = {}
    try:
        time.sleep(0.3)
        window, times = replica_crash.inject(cluster, 1.0, events, lambda _m: None)
    finally:
        stop.set()
        worker.join()
    assert times.victim == victim
    assert times.ejected_s is not None and times.ejected_s <= 0.5 + 0.3  # interval + polling
    assert times.rejoined_s is not None
    assert cluster.upstream_health()[victim] is True
    assert window.fault_at < window.back_at == events["back_at"]
    # One client, one request in flight at a time: the kill costs at most that one.
    assert len(statuses) > 20 and sum(s != 200 for s in statuses) <= 1


def _record(start: float, status: int, mode: str = "session") -> timeline.Record:
    return timeline.Record(start, mode, "/api/me", status, 100.0)


def test_failures_are_counted_by_the_phase_their_request_started_in() -> None:
    window = timeline.FaultWindow(10.0, 10.5, 10.5)
    times = replica_crash.CrashTimes("http://r2", 0.5, 1.0, 3.0)
    records = [
        _record(9.5, 200),  # answered before the kill
        _record(9.95, 502),  # in flight at the kill (ends at 10.05)
        _record(10.2, 502),  # between the kill and the ejection
        _record(10.6, 200),  # after the ejection
        _record(10.7, 200, "jwt"),
    ]
    found = replica_crash.figures(records, window, times, {"session": "main", "jwt": "other"}, 1.0)
    session = found["modes"]["session"]
    assert (session["in_flight"], session["in_flight_failed"]) == (1, 1)
    assert (session["before_ejection"], session["before_ejection_failed"]) == (1, 1)
    assert (session["after_ejection"], session["after_ejection_failed"]) == (1, 0)
    assert session["statuses"] == {"502": 2}
    assert found["modes"]["jwt"]["after_ejection_failed"] == 0
    assert found["health_interval_s"] == 1.0 and found["times"]["ejected_s"] == 0.5
