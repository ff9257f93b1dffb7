"""The chaos building blocks on their own: delay proxy, timeline arithmetic, the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from authbench.chaos.timeline import FaultWindow, Record, buckets, mode_figures
from authbench.delay_proxy import DelayLink, DelayProxy


def _median_ping_ms(client: redis.Redis, n: int = 15) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        client.ping()
        times.append((time.perf_counter() - started) * 1000)
    return sorted(times)[n // 2]


def test_delay_proxy_adds_its_delay_to_each_direction_only_while_on(
    redis_port: int, tmp_path: Path
) -> None:
    listen = redis_port + 1
    proxy = DelayProxy(listen, redis_port, 25.0, tmp_path / "proxy.log")
    try:
        proxy.start()
        client = redis.Redis(port=listen, socket_timeout=2)
        off = _median_ping_ms(client)
        proxy.delay(True)
        time.sleep(0.2)  # the signal is handled asynchronously
        on = _median_ping_ms(client)
        proxy.delay(False)
        time.sleep(0.2)
        off_again = _median_ping_ms(client)
        client.set("k", "v" * 100_000)  # large values still pass through intact
        assert client.get("k") == b"v" * 100_000
        client.close()
    finally:
        proxy.stop()
    assert off < 20 and off_again < 20, (off, off_again)
    assert 50 <= on < 150, on  # 2 x 25 ms per round trip


def test_delay_proxy_cut_holds_bytes_until_healed_and_drops_a_connection_closed_meanwhile(
    redis_port: int, tmp_path: Path
) -> None:
    """The partition switch (failover-partition scenarios): while cut, nothing reaches
    Redis; healed, what was held follows; a connection closed during the cut is dropped
    with what it held (a peer that died during a partition)."""
    listen = redis_port + 1
    proxy = DelayProxy(listen, redis_port, 0.0, tmp_path / "proxy.log")
    direct = redis.Redis(port=redis_port, socket_timeout=2)
    try:
        proxy.start()
        proxy.cut()
        held = socket.create_connection(("127.0.0.1", listen), timeout=2)
        held.sendall(b"SET held 1\r\n")
        closed = socket.create_connection(("127.0.0.1", listen), timeout=2)
        closed.sendall(b"SET dropped 1\r\n")
        time.sleep(0.3)
        assert direct.exists("held", "dropped") == 0  # nothing passed the cut
        closed.close()
        time.sleep(0.2)
        proxy.delay(False)  # heal
        assert held.recv(64) == b"+OK\r\n"
        assert direct.get("held") == b"1"
        time.sleep(0.2)
        assert direct.exists("dropped") == 0
        held.close()
    finally:
        direct.close()
        proxy.stop()


def test_delay_link_switches_between_zero_and_its_delay() -> None:
    link = DelayLink(0.005)
    assert link.delay_s == 0.0
    link.switch(True)
    assert link.delay_s == 0.005
    link.switch(False)
    assert link.delay_s == 0.0


def _r(start: float, status: int, latency_ms: float = 5.0) -> Record:
    return Record(start, "session", "/api/me", status, latency_ms)


def test_figures_separate_outage_recovery_and_hangs() -> None:
    window = FaultWindow(fault_at=100.0, restore_at=101.95, back_at=102.0)
    records = [
        _r(98.0, 200, 1200.0),  # slow before the fault: not a hang caused by it
        _r(99.95, 200, 80.0),  # in flight at the fault, answered in time
        _r(100.2, 503),
        _r(101.0, 503),
        _r(101.9, 503, 200.0),  # ends at 102.1: after Redis was back
        _r(101.97, 401),  # restart issued, PING not seen yet: not the outage's answer
        _r(102.3, 401),  # session lost with the restart
        _r(102.5, 200),
        _r(103.0, 200, 1500.0),  # hung past the 1 s threshold
    ]
    f = mode_figures("session", records, window, hang_ms=1000.0)
    assert f.first_error_s == pytest.approx(0.205)
    assert (f.outage_requests, f.outage_failures, f.outage_error_rate) == (3, 3, 1.0)
    assert f.outage_statuses == {"503": 3}
    assert f.failures_after_back == 2  # 102.1 and 102.305; 101.97's 401 ended at 101.975
    assert f.recovery_s == pytest.approx(0.305)
    assert f.hung == 1


def test_buckets_are_seconds_relative_to_the_fault_with_gaps_filled() -> None:
    per_mode = buckets([_r(98.5, 200), _r(100.1, 503), _r(101.7, 200)], fault_at=100.0)
    seconds = per_mode["session"]
    assert [b.second for b in seconds] == [-2, -1, 0, 1]
    assert [(b.ok, dict(b.failures)) for b in seconds] == [(1, {}), (0, {}), (0, {503: 1}), (1, {})]


@pytest.mark.slow
def test_chaos_cli_has_help_and_refuses_bad_options(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "authbench", "chaos"]
    shown = subprocess.run([*base, "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--scenarios" in shown.stdout and "pause" in shown.stdout
    bad = subprocess.run(
        [*base, "--scenarios", "nope", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr
    margin = subprocess.run(
        [*base, "--aof-margin", "0.5", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert margin.returncode == 2 and "aof-margin" in margin.stderr


def test_the_chaos_report_names_the_modes_that_ran_with_what_they_check() -> None:
    from authbench import modes
    from authbench.chaos.report import _modes_sentence, normalized

    # A compose run serves two modes; an earlier run wrote the denylist as `denylist`.
    result = normalized({"figures": {"session": {}, "denylist": {}}, "revocation": []})
    sentence = _modes_sentence([result])
    assert sentence.startswith("All two modes run at once")
    assert f"<b>{modes.JWT_DENYLIST.label}</b> ({modes.JWT_DENYLIST.checks})" in sentence
    assert modes.JWT.label + "</b>" not in sentence


def test_chaos_refuses_a_partition_a_sentinel_would_undo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past ~10 s a Sentinel re-points the partitioned replica: refused before any start
    (in process: a subprocess costs seconds of CI on a busy machine)."""
    import argparse

    from authbench.commands import chaos

    parser = argparse.ArgumentParser()
    chaos.register(parser.add_subparsers())
    args = parser.parse_args(
        ["chaos", "--scenarios", "failover-partition", "--partition", "9", "--results",
         str(tmp_path)]
    )  # fmt: skip
    assert args.func(args) == 2
    assert "--partition must be in (0, 8]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _failover_result(name: str, cut: bool, lost: int, refused: int) -> dict[str, object]:
    kinds = ("session", "refresh", "revocation")
    writes = {
        k: {"acknowledged": 10, "lost": lost, "unanswered": 0, "acknowledged_last": 1,
            "lost_last": 0, "acknowledged_cut": lost, "lost_cut": lost}
        for k in kinds
    }  # fmt: skip
    times = {"promoted_s": 2.0, "primary_answers_s": 2.1, "writes_back_s": 2.5,
             "rejoined_s": 2.4, "old_primary": "127.0.0.1:1",
             "new_primary": "127.0.0.1:2"}  # fmt: skip
    partition = {"cut_at": 97.0, "proxy_port": 3,
                 "at_kill": {"replica_lag_bytes": 1234, "through_proxy": True}}  # fmt: skip
    return {
        "scenario": {"name": name},
        "window": {"fault_at": 100.0},
        "failover": {
            "store": {"quorum": 2}, "settings": {}, "times": times, "writes": writes,
            "last_ms": 100.0, "latency": {},
            "write_errors": {"refresh: 503": refused} if refused else {},
            "write_errors_cut": {"refresh: 503": refused} if refused else {},
            "partition": partition if cut else None,
        },
    }  # fmt: skip


def test_the_failover_report_splits_the_losses_at_the_cut_and_says_it_is_simulated(
    tmp_path: Path,
) -> None:
    from authbench.chaos import failover
    from authbench.chaos.report import _pyplot, _table

    runs = [
        _failover_result("failover-partition", cut=True, lost=4, refused=0),
        _failover_result("failover-partition-wait", cut=True, lost=0, refused=7),
    ]
    section = failover.report_section(runs, _table)
    assert "during the cut: 4 of 4" in section and "during the cut: 0 of 0" in section
    assert "userspace TCP proxy" in section  # the partition is said to be simulated
    assert "1234; yes" in section  # the replica's lag at the kill, the cut held
    assert "<td>3.00</td>" in section  # cut 3 s before the kill
    assert failover.chart_losses(runs, tmp_path / "failover.png", _pyplot())
    assert (tmp_path / "failover.png").stat().st_size > 0
    # A plain failover run (no cut) keeps its table: no partition rows, no note.
    plain = failover.report_section([_failover_result("failover", False, 0, 0)], _table)
    assert "during the cut" not in plain and "userspace TCP proxy" not in plain
