"""What jwt+pushlist costs, measured on a private local cluster (issue 14, item 2).

    python -m authbench.bench.pushlist_price [--help]

Four measurements, one cluster (JWT_REVOCATION=pushlist), written to
`results/pushlist-<UTC>/` (summary.json, README.md with this command):

1. **Redis commands per read at steady state**: `INFO commandstats` before and after
   `--read-seconds` of Bearer reads through the gateway by `--threads` keep-alive clients;
   every command Redis counted in between (the tails' XREAD heartbeats, the gateway's
   readiness probes, anything else) divided by the reads. Logins happen before.
2. **Memory per replica holding `--revoked` revoked tokens**: each replica's RSS
   (/proc/PID/status VmRSS) before and after that many logouts' worth of stream entries
   (appended by the auth service's own writer, `RevocationFeed`), once every replica's
   `authbench_pushlist_entries` shows them all; also the stream's memory in Redis.
3. **Staleness of a replica cut off from Redis** (the auth service still reaching it):
   an extra replica reaches Redis through a TCP relay (`authbench.delay_proxy`, no
   delay); the relay is killed, a token is logged out through the gateway, and that
   replica is asked every 10 ms: how long it still accepts the revoked token (until
   PUSHLIST_MAX_SILENCE_S after its last heartbeat it serves with the set it has), then
   503; the relay back, how long until it replays the missed entry and answers 401.
4. **Redis killed**: how long each replica keeps serving a valid token before it fails
   closed, what a logout during the outage answers (a revocation that cannot be written
   is refused, so none is lost), and the time from Redis back to serving again.
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

import redis

from authbench import modes, process
from authbench.bench.price import command_calls, commands_sent, read_window, rss_kib
from authbench.delay_proxy import DelayProxy
from authbench.provenance import new_run_id, run_head
from authbench.targets.local import LocalCluster, Ports

POLL_S = 0.01


class Client:
    """One keep-alive HTTP/1.1 connection to a base URL."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self._args = (host, int(port.rstrip("/")))
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
    ) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if payload is not None:
            hdrs["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(*self._args, timeout=self._timeout_s)
            try:
                self._conn.request(method, path, body=payload, headers=hdrs)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    return 0, b""
        return 0, b""


def _login(gateway: str, user: int) -> dict[str, str]:
    status, body = Client(gateway).call(
        "POST",
        "/auth/login",
        body={
            "username": f"user{user}",
            "password": f"password{user}",
            "mode": str(modes.JWT_PUSHLIST.login),
        },
    )
    if status != 200:
        raise RuntimeError(f"login of user{user} answered {status}: {body[:200]!r}")
    return {"Authorization": f"Bearer {json.loads(body)['access_token']}"}


def commands_per_read(cluster: LocalCluster, seconds: float, threads: int) -> dict[str, Any]:
    tokens = [_login(cluster.gateway_url, i) for i in range(threads)]
    client = redis.Redis(port=cluster.ports.redis)
    reads = [0] * threads
    failures = [0] * threads
    stop = threading.Event()

    def work(i: int) -> None:
        http = Client(cluster.gateway_url)
        while not stop.is_set():
            status, _ = http.call("GET", f"/api/items/{i}", tokens[i])
            if status == 200:
                reads[i] += 1
            else:
                failures[i] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    time.sleep(1.0)  # warm: connections open, every replica's tail settled
    before, started = command_calls(client), time.monotonic()
    base_reads = sum(reads)
    time.sleep(seconds)
    measured = sum(reads) - base_reads
    elapsed = time.monotonic() - started
    after = command_calls(client)
    stop.set()
    for w in workers:
        w.join()
    client.close()
    return {
        **read_window(measured, elapsed, sum(failures), commands_sent(before, after)),
        "target": 0.02,
    }


def _entries(url: str) -> float:
    status, body = Client(url).call("GET", "/metrics")
    match = re.search(rb"^authbench_pushlist_entries (\S+)", body, re.M)
    return float(match.group(1)) if status == 200 and match else -1.0


def memory(cluster: LocalCluster, revoked: int) -> dict[str, Any]:
    from authcore.config import Settings
    from authcore.pushlist import STREAM_KEY, RevocationFeed
    from authcore.redis_store import RedisStore

    replicas = [c for c in cluster.children if c.name.startswith("resource-")]
    before = {c.name: rss_kib(c.pid or 0) for c in replicas}
    urls = {c.name: (c.health_url or "").removesuffix("/readyz") for c in replicas}
    held_before = {name: _entries(url) for name, url in urls.items()}

    async def append() -> None:
        settings = Settings.from_env({**cluster.settings_env, "REDIS_URL": cluster.redis_url})
        store = RedisStore(settings)
        feed = RevocationFeed(store, settings)
        expires = time.time() + settings.jwt_ttl_s
        try:
            for start in range(0, revoked, 1000):
                batch = range(start, min(start + 1000, revoked))
                await feed.revoke_tokens((f"measure-{i:08d}-{os.getpid()}", expires) for i in batch)
        finally:
            await store.close()

    started = time.monotonic()
    asyncio.run(append())
    written_s = time.monotonic() - started
    deadline = time.monotonic() + 120
    for c in replicas:
        while _entries(urls[c.name]) < held_before[c.name] + revoked:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{c.name} did not take in {revoked} entries in time")
            time.sleep(0.2)
    applied_s = time.monotonic() - started
    time.sleep(2.0)  # let allocations settle
    after = {c.name: rss_kib(c.pid or 0) for c in replicas}
    client = redis.Redis(port=cluster.ports.redis)
    stream_bytes = int(client.memory_usage(STREAM_KEY, samples=0) or 0)
    client.close()
    deltas = {n: after[n] - before[n] for n in before}
    return {
        "revoked_tokens": revoked,
        "rss_kib_before": before,
        "rss_kib_after": after,
        "rss_delta_kib": deltas,
        "bytes_per_entry": {n: round(d * 1024 / revoked) for n, d in deltas.items()},
        "append_seconds": round(written_s, 2),
        "all_replicas_applied_seconds": round(applied_s, 2),
        "redis_stream_bytes": stream_bytes,
    }


def _poll_until(check: Any, timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic()
        time.sleep(POLL_S)
    return None


def partition(cluster: LocalCluster, workdir: Path, silence_s: float) -> dict[str, Any]:
    relay_port, replica_port = cluster.ports.resource_base + 24, cluster.ports.resource_base + 25
    relay = DelayProxy(relay_port, cluster.ports.redis, 0.0, workdir / "relay.log")
    relay.start()
    env = process.python_env(
        {
            **cluster.settings_env,
            "REDIS_URL": f"redis://127.0.0.1:{relay_port}/0",
            "AUTH_URL": cluster.auth_url,
            "HOST": "127.0.0.1",
            "PORT": str(replica_port),
            "REPLICA_ID": "cut-off-replica",
        }
    )
    child = process.spawn(
        [sys.executable, "-m", "resource_service"], workdir / "cut-off-replica.log", env=env
    )
    url = f"http://127.0.0.1:{replica_port}"
    try:
        probe = Client(url)
        if _poll_until(lambda: probe.call("GET", "/readyz")[0] == 200, 30) is None:
            raise RuntimeError("the extra replica did not get ready")
        token = _login(cluster.gateway_url, 30)
        if probe.call("GET", "/api/me", token)[0] != 200:
            raise RuntimeError("the extra replica refused a fresh token")
        others = [Client(u) for u in cluster.replica_urls()]
        process.stop([relay.process] if relay.process else [])  # the cut
        cut_at = time.monotonic()
        status, _ = Client(cluster.gateway_url).call("POST", "/auth/logout", token)
        logout_at = time.monotonic()
        if status != 204:
            raise RuntimeError(f"logout answered {status}")
        others_401 = _poll_until(
            lambda: all(o.call("GET", "/api/me", token)[0] == 401 for o in others), 5
        )
        statuses: list[tuple[float, int]] = []

        def refused() -> bool:
            code = probe.call("GET", "/api/me", token)[0]
            statuses.append((time.monotonic() - logout_at, code))
            return code != 200

        failed_at = _poll_until(refused, silence_s + 10)
        accepted_after_logout = [t for t, code in statuses if code == 200]
        relay = DelayProxy(relay_port, cluster.ports.redis, 0.0, workdir / "relay.log")
        relay.start()
        back_at = time.monotonic()
        replayed_at = _poll_until(lambda: probe.call("GET", "/api/me", token)[0] == 401, 15)
        return {
            "max_silence_s": silence_s,
            "cut_to_logout_answer_ms": round((logout_at - cut_at) * 1000, 1),
            "other_replicas_all_401_ms_after_logout": None
            if others_401 is None
            else round((others_401 - logout_at) * 1000, 1),
            "revoked_token_accepted_for_s_after_logout": round(
                max(accepted_after_logout, default=0.0), 3
            ),
            "requests_accepting_revoked_token": len(accepted_after_logout),
            "then_status": statuses[-1][1] if statuses else None,
            "failed_closed_s_after_cut": None
            if failed_at is None
            else round(failed_at - cut_at, 3),
            "replayed_and_401_ms_after_relay_back": None
            if replayed_at is None
            else round((replayed_at - back_at) * 1000, 1),
        }
    finally:
        process.stop([child, *([relay.process] if relay.process else [])])


def outage(cluster: LocalCluster, silence_s: float) -> dict[str, Any]:
    token = _login(cluster.gateway_url, 31)
    probes = {u: Client(u, timeout_s=2) for u in cluster.replica_urls()}
    if any(p.call("GET", "/api/me", token)[0] != 200 for p in probes.values()):
        raise RuntimeError("a replica refused a fresh token before the outage")
    cluster.kill_redis()
    killed = time.monotonic()
    logout_status, logout_body = Client(cluster.gateway_url).call("POST", "/auth/logout", token)
    # Every replica asked in each round, so each one's first refusal is seen when it comes.
    serving: dict[str, float | None] = dict.fromkeys(probes)
    first_status: dict[str, int] = {}
    deadline = killed + silence_s + 10
    while len(first_status) < len(probes) and time.monotonic() < deadline:
        for url, probe in probes.items():
            if url in first_status:
                continue
            code = probe.call("GET", "/api/me", token)[0]
            if code == 200:
                serving[url] = round(time.monotonic() - killed, 3)
            else:
                first_status[url] = code
        time.sleep(POLL_S)
    down_for = time.monotonic() - killed
    cluster.start_redis()
    back = time.monotonic()
    served_again = _poll_until(
        lambda: all(p.call("GET", "/api/me", token)[0] == 200 for p in probes.values()), 30
    )
    return {
        "max_silence_s": silence_s,
        "served_valid_token_for_s_after_kill": serving,
        "then_status": first_status,
        "logout_during_outage": {
            "status": logout_status,
            "error": json.loads(logout_body).get("error") if logout_body else None,
        },
        "redis_down_s": round(down_for, 2),
        "serving_again_ms_after_redis_back": None
        if served_again is None
        else round((served_again - back) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbench.bench.pushlist_price",
        description=(__doc__ or "").split("\n\n")[2],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--replicas", type=int, default=2, help="resource replicas")
    parser.add_argument("--read-seconds", type=float, default=20.0, help="steady-state reads")
    parser.add_argument("--threads", type=int, default=8, help="concurrent reading clients")
    parser.add_argument("--revoked", type=int, default=100_000, help="revocations held")
    parser.add_argument("--max-silence", type=float, default=5.0, help="PUSHLIST_MAX_SILENCE_S")
    parser.add_argument("--results-dir", type=Path, default=process.PROJECT_ROOT / "results")
    parser.add_argument("--run-id", default="", help="name of the run folder (default: time)")
    args = parser.parse_args(argv)
    if not 1 <= args.replicas <= 19 or args.revoked < 1 or args.threads < 1:
        parser.error("--replicas must be 1..19, --revoked and --threads positive")
    run_id = args.run_id or new_run_id("pushlist")
    out = args.results_dir / run_id
    out.mkdir(parents=True, exist_ok=False)
    env = {
        **modes.JWT_PUSHLIST.deployment,
        "AUTH_SEED_USERS": "40",
        "PUSHLIST_MAX_SILENCE_S": str(args.max_silence),
    }
    cluster = LocalCluster(
        replicas=args.replicas,
        ports=Ports.block(process.free_port_block()),
        settings_env=dict(env),
        workdir=Path(tempfile.mkdtemp(prefix=f"authbench-{run_id}-")),
    )
    command = "python -m authbench.bench.pushlist_price " + " ".join(argv or sys.argv[1:])
    summary: dict[str, Any] = {**run_head("pushlist", run_id), "command": command.strip()}
    summary["settings"] = dict(env)  # ours only: the cluster adds a secret of its own to env
    summary["load_average_before"] = os.getloadavg()
    cluster.start()
    try:
        print("commands per read ...", flush=True)
        summary["commands_per_read"] = commands_per_read(cluster, args.read_seconds, args.threads)
        print("memory ...", flush=True)
        summary["memory"] = memory(cluster, args.revoked)
        print("a replica cut off from Redis ...", flush=True)
        summary["cut_off_replica"] = partition(cluster, cluster.workdir, args.max_silence)
        print("Redis killed ...", flush=True)
        summary["redis_killed"] = outage(cluster, args.max_silence)
    finally:
        cluster.stop()
    summary["load_average_after"] = os.getloadavg()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "README.md").write_text(_readme(summary))
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")
    return 0


def _readme(s: dict[str, Any]) -> str:
    c, m = s["commands_per_read"], s["memory"]
    p, o = s["cut_off_replica"], s["redis_killed"]
    per_entry = sorted(m["bytes_per_entry"].values())
    rows = [
        (
            "Redis commands per read, steady state (target <= 0.02)",
            f"{c['redis_commands_per_read']} ({c['redis_commands']} commands / {c['reads']} "
            f"reads in {c['seconds']} s: {c['redis_commands_by_name']})",
        ),
        (
            f"memory per replica holding {m['revoked_tokens']:,} revoked tokens (RSS delta)",
            f"{m['rss_delta_kib']} KiB: {per_entry[0]}-{per_entry[-1]} bytes per entry; "
            f"the stream in Redis: {m['redis_stream_bytes']:,} bytes",
        ),
        (
            "replica cut off from Redis: a revoked token still accepted",
            f"{p['revoked_token_accepted_for_s_after_logout']} s after logout "
            f"({p['requests_accepting_revoked_token']} requests), then {p['then_status']} at "
            f"{p['failed_closed_s_after_cut']} s after the cut "
            f"(PUSHLIST_MAX_SILENCE_S={p['max_silence_s']}); the other replicas all 401 "
            f"{p['other_replicas_all_401_ms_after_logout']} ms after logout",
        ),
        (
            "the same replica, Redis reachable again",
            f"missed revocation replayed: 401 after {p['replayed_and_401_ms_after_relay_back']} ms",
        ),
        (
            "Redis killed: a valid token still served for (s after the kill)",
            f"{o['served_valid_token_for_s_after_kill']}, then {o['then_status']}",
        ),
        (
            "a logout during the outage",
            f"{o['logout_during_outage']}: the revocation is refused, so none is missed",
        ),
        (
            "Redis back (empty) to every replica serving",
            f"{o['serving_again_ms_after_redis_back']} ms",
        ),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    return (
        f"# jwt+pushlist: what it costs ({s['run_id']})\n\n"
        f"Command: `{s['command']}` (git {s['git']['commit']}, dirty: {s['git']['dirty']}).\n"
        f"Load average before {s['load_average_before']}, after {s['load_average_after']} "
        "(a shared 2-core machine).\n\n| measurement | result |\n| --- | --- |\n"
        f"{table}\n\nEverything is in `summary.json`; how each is measured: the docstring of "
        "`authbench/bench/pushlist_price.py`.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
