"""What session+cache costs, measured on private local clusters (issue 14, item 1).

    python -m authbench.bench.session_cache_price [--help]

Two measurements, written to `results/session-cache-<UTC>/` (summary.json, README.md with
this command):

1. **Redis commands per read at steady state**, side by side in one run: plain `session`
   (SESSION_CACHE=0), `session+cache` at the default SESSION_CACHE_RENEW_S and at a short
   one (so that renewals, and the re-reads every renewal's invalidation causes on every
   replica, fall inside the window). Per configuration a fresh cluster; `--threads`
   sessions log in, read through the gateway (round robin over the replicas) for
   `--warmup` s, then `INFO commandstats` before and after `--read-seconds` of reads:
   every command Redis counted in between (renewals, re-reads, the gateway's readiness
   probes, anything else) divided by the reads. The replicas' own hit/miss/bypass
   counters (`/metrics`) over the same window are kept too.
2. **Memory per replica holding `--sessions` cached sessions**: that many sessions are
   created in Redis by the auth service's own code (`SessionStore.create`), each is read
   once from one replica directly, and that replica's RSS (/proc/PID/status VmRSS) is
   taken before and after, once its `authbench_session_cache_entries` shows them all.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis

from authbench import modes, process
from authbench.bench.price import command_calls, commands_sent, read_window, rss_kib
from authbench.bench.pushlist_price import Client
from authbench.provenance import new_run_id, run_head
from authbench.targets.local import LocalCluster, Ports

METRIC = re.compile(rb'^authbench_session_cache_lookups_total\{outcome="(\w+)"\} (\S+)', re.M)


def _cluster(replicas: int, env: dict[str, str], run_id: str) -> LocalCluster:
    return LocalCluster(
        replicas=replicas,
        ports=Ports.block(process.free_port_block()),
        settings_env=dict(env),
        workdir=Path(tempfile.mkdtemp(prefix=f"authbench-{run_id}-")),
    )


def _session_cookie(gateway: str, user: int) -> str:
    """Log in for a session; the `sid=<id>` cookie (http.client keeps no cookie jar)."""
    host, _, port = gateway.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        body = json.dumps(
            {
                "username": f"user{user}",
                "password": f"password{user}",
                "mode": modes.SESSION_CACHE.login,
            }
        )
        conn.request("POST", "/auth/login", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"login of user{user} answered {response.status}")
        for header in response.headers.get_all("Set-Cookie") or []:
            if header.startswith(("sid=", "__Host-sid=")):
                return header.split(";", 1)[0]
        raise RuntimeError("login answer carries no session cookie")
    finally:
        conn.close()


def _lookups(urls: list[str]) -> dict[str, float]:
    total: dict[str, float] = {}
    for url in urls:
        status, body = Client(url).call("GET", "/metrics")
        for outcome, value in METRIC.findall(body if status == 200 else b""):
            total[outcome.decode()] = total.get(outcome.decode(), 0.0) + float(value)
    return total


def commands_per_read(
    cluster: LocalCluster, seconds: float, warmup_s: float, threads: int
) -> dict[str, Any]:
    cookies = [_session_cookie(cluster.gateway_url, i) for i in range(threads)]
    client = redis.Redis(port=cluster.ports.redis)
    reads = [0] * threads
    failures = [0] * threads
    stop = threading.Event()

    def work(i: int) -> None:
        http = Client(cluster.gateway_url)
        while not stop.is_set():
            status, _ = http.call("GET", f"/api/items/{i}", {"Cookie": cookies[i]})
            if status == 200:
                reads[i] += 1
            else:
                failures[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(warmup_s)  # every replica has seen (and cached) every session
    lookups_before = _lookups(cluster.replica_urls())
    before, started = command_calls(client), time.monotonic()
    base_reads = sum(reads)
    time.sleep(seconds)
    measured = sum(reads) - base_reads
    elapsed = time.monotonic() - started
    after = command_calls(client)
    lookups_after = _lookups(cluster.replica_urls())
    stop.set()
    for w in workers:
        w.join()
    client.close()
    return {
        **read_window(measured, elapsed, sum(failures), commands_sent(before, after)),
        "replica_lookups": {
            k: int(lookups_after[k] - lookups_before.get(k, 0.0)) for k in sorted(lookups_after)
        },
    }


def _entries(url: str) -> float:
    status, body = Client(url).call("GET", "/metrics")
    match = re.search(rb"^authbench_session_cache_entries (\S+)", body, re.M)
    return float(match.group(1)) if status == 200 and match else -1.0


def memory(cluster: LocalCluster, sessions: int, concurrency: int = 32) -> dict[str, Any]:
    from authcore.config import Settings
    from authcore.errors import AuthbenchError
    from authcore.redis_store import RedisStore
    from authcore.sessions import SessionStore

    replica = next(c for c in cluster.children if c.name.startswith("resource-"))
    url = (replica.health_url or "").removesuffix("/readyz")
    settings = Settings.from_env({**cluster.settings_env, "REDIS_URL": cluster.redis_url})

    async def create() -> list[str]:
        store = RedisStore(settings)
        sessions_store = SessionStore(store, settings)

        async def one(i: int) -> str:
            for _attempt in range(20):  # a busy machine stalls the loop: 503 busy, retried
                try:
                    return await sessions_store.create(f"mem{i}")
                except AuthbenchError:
                    await asyncio.sleep(0.2)
            raise RuntimeError(f"could not create session {i}")

        ids: list[str] = []
        try:
            for start in range(0, sessions, 64):
                ids += await asyncio.gather(
                    *(one(i) for i in range(start, min(start + 64, sessions)))
                )
        finally:
            await store.close()
        return ids

    async def read_all(ids: list[str]) -> int:
        queue = iter(ids)
        failed = 0

        async def worker(http: aiohttp.ClientSession) -> None:
            nonlocal failed
            for session_id in queue:
                try:
                    async with http.get(
                        f"{url}/api/me", headers={"Cookie": f"sid={session_id}"}
                    ) as r:
                        await r.read()
                        failed += r.status != 200
                except (aiohttp.ClientError, TimeoutError):
                    failed += 1

        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        return failed

    started = time.monotonic()
    ids = asyncio.run(create())
    created_s = time.monotonic() - started
    held_before = _entries(url)
    time.sleep(1.0)
    before = rss_kib(replica.pid or 0)
    started = time.monotonic()
    failed = asyncio.run(read_all(ids))
    read_s = time.monotonic() - started
    held = _entries(url)
    time.sleep(2.0)  # let allocations settle
    after = rss_kib(replica.pid or 0)
    delta = after - before
    added = held - held_before
    return {
        "sessions": sessions,
        "created_s": round(created_s, 1),
        "read_once_s": round(read_s, 1),
        "read_failures": failed,
        "entries_before": held_before,
        "entries_after": held,
        "rss_kib_before": before,
        "rss_kib_after": after,
        "rss_delta_kib": delta,
        "bytes_per_entry": round(delta * 1024 / added) if added > 0 else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbench.bench.session_cache_price",
        description=(__doc__ or "").split("\n\n")[2],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--replicas", type=int, default=3, help="resource replicas")
    parser.add_argument("--read-seconds", type=float, default=30.0, help="steady-state reads")
    parser.add_argument("--warmup", type=float, default=3.0, help="reads before the window")
    parser.add_argument("--threads", type=int, default=8, help="sessions, one reader each")
    parser.add_argument(
        "--short-renew", type=float, default=5.0, help="the short SESSION_CACHE_RENEW_S"
    )
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions cached")
    parser.add_argument("--results-dir", type=Path, default=process.PROJECT_ROOT / "results")
    parser.add_argument("--run-id", default="", help="name of the run folder (default: time)")
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= 19 or args.sessions < 1 or args.threads < 1:
        parser.error("--replicas must be 1..19, --sessions and --threads positive")
    run_id = args.run_id or new_run_id("session-cache")
    out = args.results_dir / run_id
    out.mkdir(parents=True, exist_ok=False)
    base = {"AUTH_SEED_USERS": str(max(args.threads, 8)), "LOG_LEVEL": "WARNING"}
    plain, cached = modes.SESSION, modes.SESSION_CACHE  # their settings from the registry
    configs = {
        plain.key: {**base, **plain.settings},
        cached.key: {**base, **cached.settings},
        f"{cached.key}, renew {args.short_renew:g} s": {
            **base,
            **cached.settings,
            "SESSION_CACHE_RENEW_S": str(args.short_renew),
        },
    }
    command = "python -m authbench.bench.session_cache_price " + " ".join(argv or sys.argv[1:])
    summary: dict[str, Any] = {**run_head("session-cache", run_id), "command": command.strip()}
    summary["settings"] = configs
    summary["load_average_before"] = os.getloadavg()
    summary["commands_per_read"] = {}
    for name, env in configs.items():
        print(f"commands per read: {name} ...", flush=True)
        cluster = _cluster(args.replicas, env, run_id)
        cluster.start()
        try:
            summary["commands_per_read"][name] = commands_per_read(
                cluster, args.read_seconds, args.warmup, args.threads
            )
        finally:
            cluster.stop()
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")  # so far
    print("memory ...", flush=True)
    # Renewal batched past the time the filling takes: a first read that renews would
    # invalidate (and drop) the very entry it cached, and each session is read once.
    memory_env = {**base, **cached.settings, "SESSION_CACHE_RENEW_S": "1500"}
    summary["settings"]["memory"] = memory_env
    cluster = _cluster(1, memory_env, run_id)
    cluster.start()
    try:
        summary["memory"] = memory(cluster, args.sessions)
    finally:
        cluster.stop()
    summary["load_average_after"] = os.getloadavg()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "README.md").write_text(_readme(summary))
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")
    return 0


def _readme(s: dict[str, Any]) -> str:
    rows = [
        (
            f"Redis commands per read, steady state: {name}",
            f"{c['redis_commands_per_read']} ({c['redis_commands']} commands / {c['reads']} "
            f"reads in {c['seconds']} s: {c['redis_commands_by_name']}; replicas' lookups "
            f"{c['replica_lookups']}; {c['read_failures']} failed reads)",
        )
        for name, c in s["commands_per_read"].items()
    ]
    m = s["memory"]
    rows.append(
        (
            f"memory of one replica holding {m['sessions']:,} cached sessions (RSS delta)",
            f"{m['rss_delta_kib']:,} KiB ({m['rss_kib_before']:,} -> {m['rss_kib_after']:,}), "
            f"{m['bytes_per_entry']} bytes per entry; entries {m['entries_before']:g} -> "
            f"{m['entries_after']:g}; {m['read_failures']} failed reads",
        )
    )
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    return (
        f"# session+cache: what it costs ({s['run_id']})\n\n"
        f"Command: `{s['command']}` (git {s['git']['commit']}, dirty: {s['git']['dirty']}).\n"
        f"Load average before {s['load_average_before']}, after {s['load_average_after']} "
        "(a shared 2-core machine).\n\n| measurement | result |\n| --- | --- |\n"
        f"{table}\n\nEverything is in `summary.json`; how each is measured: the docstring of "
        "`authbench/bench/session_cache_price.py`.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
