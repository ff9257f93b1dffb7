"""What `REDIS_WAIT_REPLICAS=1` costs in login, refresh and logout latency, side by side.

    python -m authbench.chaos.wait_price [--rounds 60] [--results results]

Two local clusters on `--store sentinel` (a primary, one replica, three Sentinels each),
identical but for the auth service's `REDIS_WAIT_REPLICAS` (0 and 1, `WAIT 1 100`), run
at the same time. Each round asks both, in ABBA order, for the same sequence: a session
login, a session logout, a JWT login, a refresh, a JWT logout (denylist on, so a logout
writes the jti and the family). Latencies are measured at the client through each
cluster's gateway; the difference is WAIT's price, with the machine's load shared by
both. Writes `results/wait-price-<UTC>/summary.json` and a README with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from authbench.chaos import probes, timeline
from authbench.modes import Login
from authbench.process import PROJECT_ROOT, free_port_block
from authbench.provenance import new_run_id, run_head
from authbench.targets.base import SENTINEL
from authbench.targets.local import LocalCluster, Ports

OPERATIONS = ("login (session)", "logout (session)", "login (jwt)", "refresh", "logout (jwt)")
WAIT = {"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "100"}


def _round(gateway: str, account: int, into: dict[str, list[float]], errors: list[str]) -> None:
    def timed(op: str, path: str, **kwargs: Any) -> probes.Answer:
        started = time.perf_counter()
        answer = probes.call(gateway, "POST", path, **kwargs)
        if answer.status in (200, 204):
            into[op].append((time.perf_counter() - started) * 1000)
        else:
            errors.append(f"{op}: {answer.status}")
        return answer

    body = {"username": f"user{account}", "password": f"password{account}"}
    session = timed("login (session)", "/auth/login", body={**body, "mode": Login.SESSION})
    if session.status == 200:
        timed("logout (session)", "/auth/logout", headers=probes.credential_headers(session))
    jwt = timed("login (jwt)", "/auth/login", body={**body, "mode": Login.JWT})
    if jwt.status != 200:
        return
    rotated = timed("refresh", "/auth/refresh", body={"refresh_token": jwt.json()["refresh_token"]})
    if rotated.status == 200:
        timed("logout (jwt)", "/auth/logout", headers=probes.credential_headers(rotated))


def measure(rounds: int, workdir: Path) -> dict[str, Any]:
    accounts = 20
    base = {"AUTH_SEED_USERS": str(accounts), "JWT_REVOCATION": "denylist", "LOG_LEVEL": "WARNING"}
    clusters = {
        name: LocalCluster(
            replicas=1,
            ports=Ports.block(free_port_block()),
            settings_env={**base, **extra},
            workdir=workdir / name,
            store=SENTINEL,
        )
        for name, extra in (("async", {}), ("wait", WAIT))
    }
    latencies: dict[str, dict[str, list[float]]] = {
        name: {op: [] for op in OPERATIONS} for name in clusters
    }
    errors: dict[str, list[str]] = {name: [] for name in clusters}
    load = [os.getloadavg()[0]]
    try:
        for cluster in clusters.values():
            cluster.start()
            probes.wait_for_logins(cluster.gateway_url, accounts - 1)
        order = list(clusters)
        for i in range(rounds):
            for name in order if i % 2 == 0 else order[::-1]:  # ABBA
                _round(clusters[name].gateway_url, i % accounts, latencies[name], errors[name])
    finally:
        for cluster in clusters.values():
            cluster.stop()
    load.append(os.getloadavg()[0])
    figures = {
        name: {
            op: {
                "count": len(values),
                "p50_ms": timeline._round(timeline.percentile(values, 0.5)),
                "p90_ms": timeline._round(timeline.percentile(values, 0.9)),
            }
            for op, values in ops.items()
        }
        for name, ops in latencies.items()
    }
    return {
        "rounds": rounds,
        "wait_settings": WAIT,
        "figures": figures,
        "errors": {name: sorted(set(e)) for name, e in errors.items()},
        "error_counts": {name: len(e) for name, e in errors.items()},
        "load_average_start_end": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbench.chaos.wait_price",
        description="WAIT 1's price in login, refresh and logout latency: two Sentinel "
        "clusters side by side, REDIS_WAIT_REPLICAS 0 and 1, asked in ABBA order.",
    )
    parser.add_argument("--rounds", type=int, default=60, help="rounds per cluster")
    parser.add_argument("--results", type=Path, default=PROJECT_ROOT / "results")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    run_id = new_run_id("wait-price")
    out = args.results / run_id
    out.mkdir(parents=True)
    head = run_head("wait-price", run_id)
    workdir = Path(tempfile.mkdtemp(prefix="authbench-wait-"))
    try:
        found = measure(args.rounds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    (out / "summary.json").write_text(json.dumps({**head, **found}, indent=2))
    lines = [
        f"# {run_id}: what WAIT 1 costs",
        "",
        f"Command: `python -m authbench.chaos.wait_price --rounds {args.rounds}` "
        f"(commit {head['git']['commit']}, load average {found['load_average_start_end']}).",
        "",
        "| operation | async p50 / p90 ms | WAIT 1 p50 / p90 ms |",
        "| --- | --- | --- |",
    ]
    for op in OPERATIONS:
        a, w = found["figures"]["async"][op], found["figures"]["wait"][op]
        lines.append(
            f"| {op} | {a['p50_ms']} / {a['p90_ms']} (n={a['count']}) | "
            f"{w['p50_ms']} / {w['p90_ms']} (n={w['count']}) |"
        )
    lines += ["", f"Errors: {found['error_counts']}"]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
