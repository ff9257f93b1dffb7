"""How one cell is measured, so that its numbers can be trusted.

1. Health check: the gateway and every replica answer /readyz, and a real login plus an
   authenticated read go through (retried for up to 30 s). A cell on a sick cluster is
   recorded as failed, not run.
2. Warm-up: Locust starts all users and runs `warmup_s`; then the locustfile resets its
   stats and writes a `capture_start` marker. Nothing before it is in any figure (with
   `--processes`, workers report every few seconds, so up to one report interval of
   warm-up can still arrive after the reset).
3. Capture: the samplers (Redis INFO, process CPU, /metrics) snapshot at the marker and
   again `capture_s` later; Locust stops itself at the end of the same window.
4. Rest: `rest_s` of quiet before the next cell, so one cell's backlog is not the next's.

Flags, so a doubtful cell is marked rather than silently reported: the load generator
above `saturation_pct` of a core per process (it, not the system, was the limit), reads
achieved below 90% of the offered rate (the generator fell behind the pacing: latency then
hides queueing), failures above 1%, and a missing sampler.
"""

from __future__ import annotations

import csv
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authbench import modes
from authbench.bench import latency, locust_runner
from authbench.bench.axes import CellAxes
from authbench.bench.matrix import Cell
from authbench.bench.samplers import (
    ProcessCpuSampler,
    RedisSampler,
    RedisWindow,
    Sampling,
    ValidationSnapshot,
    validation_delta,
)
from authbench.bench.statistics import (
    bucket_quantile,
    merge_buckets,
    merge_response_times,
    response_time_percentile,
)
from authbench.bench.summary import READ_PREFIX, SummaryRow
from authbench.cgroups import CgroupError
from authbench.modes import Login
from authbench.targets.base import DeploymentError, http_status


@dataclass(frozen=True)
class Protocol:
    warmup_s: float = 8.0
    capture_s: float = 15.0
    rest_s: float = 2.0
    processes: int = 1
    accounts: int = 200
    relogin_prob: float = 0.005
    refresh_prob: float = 0.01
    saturation_pct: float = 90.0
    locust_html: bool = True
    live_port: int | None = None  # Locust's web UI on 127.0.0.1:<port> during each cell
    # Distributed load (`--expect-workers`): workers that join each cell's Locust master
    # at `master_bind` by address (`authbench loadgen --master HOST:PORT`), on top of
    # `processes`; the cell waits up to `worker_wait_s` for them.
    expect_workers: int = 0
    master_bind: str = "127.0.0.1:5557"
    worker_wait_s: float = 120.0

    def cell_seconds(self) -> float:
        """Rough wall time of one cell (Locust start-up and health check included)."""
        return self.warmup_s + self.capture_s + self.rest_s + 5.0


@dataclass(frozen=True)
class Target:
    """What a cell needs to know about the system under test.

    `sampling` builds the cell's samplers once the load generator's PID is known.
    """

    host: str
    replica_urls: tuple[str, ...]  # checked by the health check (empty: not reachable)
    sampling: Callable[[int], Sampling]
    axes: CellAxes | None = None  # the store axes around each cell (quota, ping, pinning)


def _post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - loopback or the user's stack
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10.0) as resp:  # noqa: S310
        return int(resp.status), json.loads(resp.read() or b"{}")


def _call(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange; an error status is an answer like any other, not an exception."""
    request = urllib.request.Request(  # noqa: S310 - loopback or the project's stack
        url, data=body, headers=headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10.0) as resp:  # noqa: S310
            return int(resp.status), dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        return int(err.code), dict(err.headers.items()), err.read()


def revocation_probe(host: str, mode: str, account: int = 0) -> int | None:
    """Log in, log out, present the old credential again: the status the system answers.

    The seed doc's "sessions are easy to revoke, JWTs are not" as a measurement: 401 means
    logout took effect at once; 200 means the credential still works (until it expires).
    None when the probe could not even log in.
    """
    login_mode = modes.get(mode).login
    body = json.dumps(
        {"username": f"user{account}", "password": f"password{account}", "mode": login_mode}
    ).encode()
    try:
        status, headers, raw = _call(
            host + "/auth/login", "POST", {"Content-Type": "application/json"}, body
        )
        if status != 200:
            return None
        if login_mode is Login.SESSION:
            cookie = headers.get("Set-Cookie", "").split(";", 1)[0]
            credential = {"Cookie": cookie}
        else:
            credential = {"Authorization": "Bearer " + json.loads(raw)["access_token"]}
        if _call(host + "/api/me", headers=credential)[0] != 200:
            return None
        _call(host + "/auth/logout", "POST", credential)
        return _call(host + "/api/me", headers=credential)[0]
    except (OSError, ValueError, KeyError):
        return None


def cell_revocation_window(target: Target, cell: Cell, timeout_s: float = 1.0) -> float:
    """One logout measured as `authbench revocation-window` measures it (every replica
    warmed, then asked until each answers 401): ms, or NaN when not every replica refused
    within `timeout_s` (a plain JWT) or the login failed."""
    from authbench.bench import revocation_window as rw

    replicas = target.replica_urls or (target.host,)  # unreachable replicas: the gateway
    try:
        logout = rw.measure_logout(target.host, replicas, cell.spec, 0, timeout_s)
    except (rw.WindowError, OSError, ValueError):
        return math.nan
    return logout.window_ms if logout.window_ms is not None else math.nan


def health_check(target: Target, patience_s: float = 30.0) -> str | None:
    """None when the system is ready for a cell; otherwise why it still is not after
    `patience_s` (a freshly recreated container or a re-resolved upstream takes a moment)."""
    deadline = time.monotonic() + patience_s
    while True:
        problem = _health_problem(target)
        if problem is None or time.monotonic() > deadline:
            return problem
        time.sleep(1.0)


def _health_problem(target: Target) -> str | None:
    for url in (target.host, *target.replica_urls):
        status = http_status(url.rstrip("/") + "/readyz", timeout_s=3.0)
        if status != 200:
            return f"{url}/readyz answered {status}"
    try:
        status, body = _post_json(
            target.host + "/auth/login",
            {"username": "user0", "password": "password0", "mode": Login.JWT},
        )
        token = str(body.get("access_token", ""))
        request = urllib.request.Request(  # noqa: S310
            target.host + "/api/me", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10.0) as resp:  # noqa: S310
            if resp.status != 200:
                return f"/api/me answered {resp.status}"
    except (OSError, ValueError) as err:
        return f"login + /api/me failed: {err}"
    return None


@dataclass
class CellResult:
    cell: Cell
    cell_dir: Path
    row: SummaryRow
    flags: list[str]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _read_histogram(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}


def _failure_reasons(hist: dict[str, Any], fallback_csv: Path) -> dict[str, int]:
    """ "<request name>: <reason>" -> occurrences, from the final dump (else Locust's CSV)."""
    reasons: dict[str, int] = {}
    rows: list[dict[str, Any]] = [
        {"Name": e.get("name", ""), "Error": e.get("error", ""), "Occurrences": e["occurrences"]}
        for e in hist.get("errors", [])
    ]
    if "errors" not in hist:
        try:
            with fallback_csv.open(newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            rows = []
    for row in rows:
        key = f"{row.get('Name', '')}: {row.get('Error', '')}"
        reasons[key] = reasons.get(key, 0) + int(row.get("Occurrences", 0) or 0)
    return reasons


def doubts(row: SummaryRow, cell: Cell, protocol: Protocol) -> list[str]:
    """Why a measured cell's figures should be read with care (empty: no reason)."""
    flags: list[str] = []
    loadgen = row.cpu_loadgen_pct
    if not math.isnan(loadgen) and loadgen > protocol.saturation_pct * max(1, protocol.processes):
        flags.append("generator-saturated")  # the generator, not the system, was the limit
    offered = cell.load.offered_rps
    if offered > 0 and row.read_rps < 0.9 * offered:
        flags.append("behind-offered-rate")  # the pacing slipped: queueing hides in latency
    requests, failures = row.requests or 0, row.failures or 0
    if requests == 0:
        flags.append("no-requests")
    elif failures / requests > 0.01:
        flags.append("failures>1%")
    return flags


def cell_row(cell: Cell) -> SummaryRow:
    """A summary row with the columns that describe the cell itself."""
    return SummaryRow(
        mode=cell.mode,
        replicas=cell.replicas,
        users=cell.load.users,
        cell_id=cell.cell_id,
        repeat=cell.repeat + 1,
        load=cell.load.label,
        offered_rps=cell.load.offered_rps,
        jwt_alg=cell.jwt_alg,
        revocation=cell.revocation,
        validate_at=cell.validate_at,
        gateway=cell.gateway,
        store_link=cell.store.kind,
        store_rtt_ms=cell.store.rtt_ms,
        redis_cpus=cell.redis_cpus if cell.redis_cpus is not None else math.nan,
        token_bytes=cell.token_bytes,
        store_topology=cell.topology,
    )


def _ms(value: float) -> float:
    return round(value, 1) if not math.isnan(value) else math.nan


def _client_figures(row: SummaryRow, hist: dict[str, Any], window: float) -> None:
    """Locust's figures over the capture window: all requests, then the reads alone."""
    total = hist.get("total", {})
    requests = int(total.get("num_requests", 0))
    failures = int(total.get("num_failures", 0))
    all_times = {int(k): int(v) for k, v in total.get("response_times", {}).items()}
    read_entries = [e for n, e in hist.get("entries", {}).items() if n.startswith(READ_PREFIX)]
    reads = merge_response_times(
        {int(k): int(v) for k, v in entry["response_times"].items()} for entry in read_entries
    )
    row.requests = requests
    row.failures = failures
    row.fail_pct = round(100.0 * failures / requests, 3) if requests else math.nan
    row.rps = round(requests / window, 1)
    # Locust files each time under a rounded key (13 for 12.8 ms), so a bucketed
    # percentile can exceed the exact slowest time; no request took longer than that.
    slowest = float(total.get("max_response_time", math.nan) or math.nan)

    def percentile(times: dict[int, int], q: float) -> float:
        value = response_time_percentile(times, q)
        return _ms(min(value, slowest) if not math.isnan(slowest) else value)

    row.p50_ms = percentile(all_times, 0.50)
    row.p95_ms = percentile(all_times, 0.95)
    row.p99_ms = percentile(all_times, 0.99)
    row.max_ms = _ms(slowest)
    row.read_rps = round(sum(int(e["num_requests"]) for e in read_entries) / window, 1)
    row.read_p50_ms = percentile(reads, 0.50)
    row.read_p95_ms = percentile(reads, 0.95)
    row.read_p99_ms = percentile(reads, 0.99)
    row.capture_s = round(window, 2)


def _redis_figures(row: SummaryRow, redis: RedisWindow, window: float) -> None:
    row.redis_ops_s = round(redis.ops_per_s, 1)
    row.redis_cpu_pct = round(redis.cpu_pct, 1)
    requests = row.requests or 0
    row.redis_cmds_per_req = round(redis.ops_per_s * window / requests, 3) if requests else math.nan
    if redis.nodes:  # each shard of a Redis Cluster, or the primary then each read replica
        shards = [redis.nodes[name] for name in sorted(redis.nodes, key=_shard_number)]
        row.redis_ops_each_shard = ";".join(f"{s.ops_per_s:.1f}" for s in shards)
        row.redis_cpu_each_shard = ";".join(f"{s.cpu_pct:.1f}" for s in shards)


def _shard_number(name: str) -> int:
    """`redis-shard-3` -> 3 (nodes sort by number, not as text); `redis-primary` -> 0, so
    a replicas store lists its primary first, then `redis-replica-1`, `-2`, ..."""
    tail = name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


def _store_node(name: str) -> bool:
    """A data node of a store of several (authbench.stores): `redis-shard-N` of
    cluster:N, `redis-primary` and `redis-replica-N` of replicas:N."""
    return name == "redis-primary" or name.startswith(("redis-shard-", "redis-replica-"))


def _cpu_figures(row: SummaryRow, cpu_pct: dict[str, float]) -> None:
    """CPU of each process the bench knows, % of one core over the window."""
    replica_cpu = [v for k, v in sorted(cpu_pct.items()) if k.startswith("resource-")]
    # One redis-server, or every data node of the store together (a Redis Cluster's
    # shards; a primary and its read replicas).
    shards = [v for k, v in cpu_pct.items() if _store_node(k)]
    row.cpu_redis_pct = round(sum(shards) if shards else cpu_pct.get("redis", math.nan), 1)
    row.cpu_auth_pct = round(cpu_pct.get("auth", math.nan), 1)
    row.cpu_gateway_pct = round(cpu_pct.get("gateway", math.nan), 1)
    row.cpu_replicas_pct = round(sum(replica_cpu), 1) if replica_cpu else math.nan
    row.cpu_each_replica_pct = ";".join(f"{v:.1f}" for v in replica_cpu)
    row.cpu_loadgen_pct = round(cpu_pct.get("loadgen", math.nan), 1)
    row.cpu_proxy_pct = round(cpu_pct.get("proxy", math.nan), 1)


def _hdr_figures(row: SummaryRow, hdr_dir: Path) -> None:
    """µs percentiles from every Locust process's HdrHistograms (authbench.bench.latency)."""
    figures = latency.row_figures(hdr_dir)
    cpu_pct, workers = latency.workers_cpu(hdr_dir)
    if workers:
        row.cpu_workers_pct = round(cpu_pct, 1)
        row.loadgen_workers = workers
    for series in ("read_", ""):
        for name in latency.PERCENTILES:
            setattr(row, f"{series}{name}_us", figures[f"{series}{name}_us"])


def _validation_figures(row: SummaryRow, delta: ValidationSnapshot) -> None:
    """Server-side credential-validation time over the window, all modes seen together."""
    ok = [buckets for (mode, outcome), buckets in delta.buckets.items() if outcome == "ok"]
    merged = merge_buckets(ok)
    count = merged[-1].count if merged else 0.0
    total_s = sum(s for (mode, outcome), s in delta.sums.items() if outcome == "ok")
    row.validations = int(count)
    if count:
        row.validation_mean_us = round(1e6 * total_s / count, 1)
        row.validation_p50_us = round(1e6 * bucket_quantile(merged, 0.50), 1)
        row.validation_p99_us = round(1e6 * bucket_quantile(merged, 0.99), 1)


def measure(
    cell: Cell,
    target: Target,
    protocol: Protocol,
    cell_dir: Path,
    tick: Callable[[str], None] | None = None,
) -> CellResult:
    """Run one cell and return its summary row (also written to `cell_dir/cell.json`)."""
    say = tick or (lambda _msg: None)
    cell_dir.mkdir(parents=True, exist_ok=True)
    base_row = cell_row(cell)
    problem = health_check(target)
    if problem is not None:
        return _finish(CellResult(cell, cell_dir, base_row, ["health"], problem))
    if target.axes is not None:
        try:
            target.axes.before(cell)  # the proxy's delay and Redis's quota; the store's PING
        except (DeploymentError, CgroupError, OSError) as err:
            return _finish(CellResult(cell, cell_dir, base_row, ["axes"], str(err)))

    job = locust_runner.LocustJob(
        host=target.host,
        user_classes=(cell.user_class.name,),
        locustfile=cell.user_class.locustfile,  # where the registry says the user lives
        out_dir=cell_dir,
        users=cell.load.users,
        run_time_s=protocol.warmup_s + protocol.capture_s + 30.0,  # a bound; capture stops it
        warmup_s=protocol.warmup_s,
        pacing_s=cell.load.pacing_s,
        processes=protocol.processes,
        accounts=protocol.accounts,
        relogin_prob=protocol.relogin_prob,
        refresh_prob=protocol.refresh_prob,
        env={
            "AUTHBENCH_CAPTURE_S": f"{protocol.capture_s:g}",
            "AUTHBENCH_HDR_DIR": str(cell_dir / "hdr"),
        },
        html=protocol.locust_html,
        web_port=protocol.live_port,
        expect_workers=protocol.expect_workers,
        master_bind=protocol.master_bind,
        worker_wait_s=protocol.worker_wait_s,
    )
    process = locust_runner.start(job)
    if target.axes is not None:
        target.axes.pin_loadgen(process.pid)
    sampling = target.sampling(process.pid)
    try:
        say("warming up")
        waits = protocol.worker_wait_s if protocol.expect_workers else 0.0
        started = process.wait_capture_start(protocol.warmup_s + 60.0 + waits)
        if started is None:
            process.stop()
            return _finish(
                CellResult(cell, cell_dir, base_row, ["locust"], "Locust ended before capture")
            )
        if target.axes is not None:
            target.axes.pin_loadgen(process.pid)  # again: `--processes` workers exist now
        redis_start = sampling.redis()
        cpu_start = sampling.cpu()
        metrics_start = sampling.validation()
        end_at = started + protocol.capture_s
        while time.time() < end_at and process.alive():
            say(f"capturing, {max(0.0, end_at - time.time()):.0f}s left")
            time.sleep(min(1.0, max(0.0, end_at - time.time())))
        redis_end = sampling.redis()
        cpu_end = sampling.cpu()
        metrics_end = sampling.validation()
        outputs = process.wait(timeout_s=30.0)
    finally:
        if process.alive():
            process.stop(grace_s=5.0)
        sampling.close()

    row = base_row
    # Outside the capture window: does logout revoke the credential at once?
    row.after_logout_status = revocation_probe(target.host, cell.mode)
    row.revocation_window_ms = cell_revocation_window(target, cell)
    flags: list[str] = []
    hist = _read_histogram(outputs.histogram_json)
    capture_end = outputs.marker_time("capture_end") or end_at
    window = max(1e-3, capture_end - started)
    _client_figures(row, hist, window)
    redis_window = RedisSampler.window(redis_start, redis_end)
    if redis_window is not None:
        _redis_figures(row, redis_window, window)
    else:
        flags.append("no-redis-sample")
    cpu_pct = ProcessCpuSampler.window(cpu_start, cpu_end)
    _cpu_figures(row, cpu_pct)
    validation = validation_delta(metrics_end, metrics_start)
    _validation_figures(row, validation)
    _hdr_figures(row, cell_dir / "hdr")
    if target.axes is not None:
        target.axes.annotate(row, cell)

    flags += doubts(row, cell, protocol)
    row.flags = ";".join(flags)

    details = {
        "row": row.as_dict(),
        "locust_command": process.argv,
        "locust_returncode": outputs.returncode,
        "capture_start": started,
        "capture_end": capture_end,
        "cpu_pct": cpu_pct,
        "redis_per_command": redis_window.per_command if redis_window else {},
        "failure_reasons": _failure_reasons(hist, outputs.failures_csv),
        "validation_buckets": {
            f"{mode}/{outcome}": [[b.le, b.count] for b in buckets]
            for (mode, outcome), buckets in validation.buckets.items()
        },
        "validation_sums": {f"{m}/{o}": s for (m, o), s in validation.sums.items()},
        "replicas_scraped": validation.scraped,
    }
    (cell_dir / "cell.json").write_text(json.dumps(details, indent=2, default=str))
    result = CellResult(cell, cell_dir, row, flags)
    return result


def failed(cell: Cell, cell_dir: Path, flag: str, error: str) -> CellResult:
    """A cell that could not be measured, recorded as such (never silently dropped)."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    return _finish(CellResult(cell, cell_dir, cell_row(cell), [flag], error))


def _finish(result: CellResult) -> CellResult:
    result.row.flags = ";".join(result.flags)
    result.row.error = " ".join((result.error or "").split())[:300]
    (result.cell_dir / "cell.json").write_text(
        json.dumps({"row": result.row.as_dict(), "error": result.error}, indent=2, default=str)
    )
    return result
