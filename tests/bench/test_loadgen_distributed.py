"""Distributed load over loopback: a bench's Locust master and `authbench loadgen` workers
as separate processes that find each other only by address (HOST:PORT).

The workers are started before the bench and know nothing but the master's address; the
bench waits for them (`--expect-workers`), and the users are spread over them and the
bench's own generator, which joins the master by the same path.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from authbench.bench.locust_runner import LocustJob, command
from authbench.process import PROJECT_ROOT, free_port_block
from tests.conftest import ClusterFactory


def authbench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authbench", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_distributed_job_is_a_master_on_its_address_and_local_workers_joining_it(
    tmp_path: Path,
) -> None:
    job = LocustJob(
        host="http://127.0.0.1:1", user_classes=("JwtUser",), out_dir=tmp_path,
        processes=2, expect_workers=3, master_bind="0.0.0.0:15557",
    )  # fmt: skip
    argv = command(job)
    assert argv[:2] == ["sh", "-c"]
    workers, _, master = argv[2].partition(" & exec ")
    assert "--master-bind-port 15557" in master and "--expect-workers 5" in master
    assert "--processes" not in master  # Locust refuses --master with --processes
    # The local workers join like remote ones: by address (loopback for a 0.0.0.0 bind).
    assert "--worker --master-host 127.0.0.1 --master-port 15557 --processes 2" in workers
    # Without --expect-workers nothing changes: Locust's own --processes.
    plain = command(LocustJob(host="http://x", user_classes=(), out_dir=tmp_path, processes=2))
    assert plain[0] == sys.executable and "--processes" in plain


def test_loadgen_and_bench_refuse_a_malformed_address() -> None:
    done = authbench("loadgen", "--master", "no-port-here", "--once", timeout=30)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr
    done = authbench("bench", "--expect-workers", "1", "--master-bind", "x", timeout=30)
    assert done.returncode == 2 and "HOST:PORT" in done.stderr


@pytest.mark.timeout(180)
def test_remote_workers_join_the_bench_master_by_address(
    make_cluster: ClusterFactory, tmp_path: Path
) -> None:
    cluster = make_cluster(replicas=1)
    port = free_port_block()  # a free port for the master, not Locust's default 5557
    master = f"127.0.0.1:{port}"
    workers = []
    for i in range(2):
        with (tmp_path / f"worker{i}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "authbench", "loadgen", "--master", master, "--once"],
                    cwd=tmp_path,  # nothing shared with the bench but the address
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        done = authbench(
            "bench", "--target", "external", "--gateway-url", cluster.gateway_url,
            "--modes", "jwt", "--replicas", "1", "--loads", "6@5", "--warmup", "2",
            "--capture", "4", "--rest", "0", "--accounts", "20", "--expect-workers", "2",
            "--master-bind", master, "--worker-wait", "60", "--results-dir", str(tmp_path),
            "--run-id", "dist", "--no-report", "--no-locust-html",
            timeout=170,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        # --once: each worker ended by itself when the master's run was over.
        codes = [w.wait(timeout=30) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=10)
    logs = {i: (tmp_path / f"worker{i}.log").read_text() for i in range(2)}
    assert codes == [0, 0], logs
    run_dir = tmp_path / "dist"
    [cell_dir] = (run_dir / "cells").iterdir()
    master_log = (cell_dir / "locust.log").read_text()
    # Three workers: the bench's own generator and the two loadgen processes.
    assert "3 workers connected" in master_log, master_log[-3000:]
    assert "Sending spawn jobs of 6 users" in master_log and "to 3 ready workers" in master_log
    for log in logs.values():
        assert "joining the master at " + master in log
        assert "worker run 1 ended (exit 0)" in log
    with (run_dir / "summary.csv").open(newline="") as f:
        [row] = list(csv.DictReader(f))
    assert not row["error"], row["error"]
    assert int(row["requests"]) > 0 and int(row["failures"]) == 0, row
    protocol = json.loads((run_dir / "manifest.json").read_text())["settings"]["protocol"]
    assert protocol["expect_workers"] == 2 and protocol["master_bind"] == master
    # Every worker's µs histograms and own CPU reached the master by message (a remote
    # host has no cell folder): one file per worker, named by its Locust id, not a pid.
    reports = [json.loads(p.read_text()) for p in sorted((cell_dir / "hdr").glob("hdr-*.json"))]
    assert len(reports) == 3 and all(r["role"] == "worker" for r in reports), reports
    assert all(not str(r["pid"]).isdigit() and r["cpu"]["window_s"] > 3 for r in reports)
    assert all(r["cpu"]["cpu_s"] > 0 and r["counts"]["reads"] > 0 for r in reports), reports
    assert int(row["loadgen_workers"]) == 3 and float(row["cpu_workers_pct"]) > 0, row
    # The merged µs reads are the reads Locust counted in the window (the histograms stop
    # at the window's end, Locust's counts a moment later).
    hdr_reads = sum(r["counts"]["reads"] for r in reports)
    locust_reads = float(row["read_rps"]) * float(row["capture_s"])
    assert 0.8 * locust_reads <= hdr_reads <= 1.05 * locust_reads, (hdr_reads, locust_reads)
