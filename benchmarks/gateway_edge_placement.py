"""Validation placement side by side: VALIDATE_AT=replica against VALIDATE_AT=gateway.

Starts two real clusters at once (authbench's LocalCluster: Redis, auth, N replicas, the
gateway; private port blocks), identical but for where the credential is checked, and for
--rounds interleaved rounds runs wrk through each gateway with a session cookie and with a
JWT (JWT_REVOCATION=denylist, so both modes ask Redis on every read). Per cell it reports
what moves between the two placements:

- CPU per request of the gateway, of the replicas (together), of Redis;
- Redis commands per request and the Redis connections held by the gateway and by the
  replicas (counted from each process's sockets to Redis's port);
- throughput and latency (p50, p99) at -c CONNECTIONS, and p50 at -c 1.

`--gateways ours,nginx` runs every placement behind both gateways (issue 15 item 3):
behind nginx, VALIDATE_AT=gateway is nginx's `auth_request` to the auth service's
/auth/edge-check, which checks the credential and signs the assertion; so the table also
gives the auth service's CPU and Redis connections per request, where nginx's edge check
spends them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import median, say, table, wrk

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports
from authbench.targets.nginx import GATEWAYS

PLACEMENTS = ("replica", "gateway")
MODES = ("session", "jwt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--assertion-alg", default="EdDSA", choices=("EdDSA", "HS256"))
    parser.add_argument(
        "--gateways",
        default="ours",
        help="comma-separated: ours and/or nginx (each placement behind each gateway)",
    )
    parser.add_argument("--workdir", type=Path, help="cluster logs (default: a fresh temp dir)")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="authbench-edge-placement-"))

    gateways = [g.strip() for g in args.gateways.split(",") if g.strip()]
    if not gateways or set(gateways) - set(GATEWAYS):
        parser.error(f"--gateways: choose from {', '.join(GATEWAYS)}")
    # A cell's name: `placement` behind our gateway alone (as earlier runs wrote it), else
    # `gateway:placement`.
    named = {
        (f"{gateway}:{placement}" if gateways != ["ours"] else placement): (gateway, placement)
        for gateway in gateways
        for placement in PLACEMENTS
    }
    clusters = {
        name: LocalCluster(
            replicas=args.replicas,
            ports=Ports.block(free_port_block()),
            settings_env={
                "AUTH_SEED_USERS": "5",
                "JWT_REVOCATION": "denylist",
                "LOG_LEVEL": "WARNING",
                "VALIDATE_AT": placement,
                "EDGE_ASSERTION_ALG": args.assertion_alg,
            },
            workdir=workdir / name.replace(":", "-"),
            gateway_impl=gateway,
        )
        for name, (gateway, placement) in named.items()
    }
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for placement, cluster in clusters.items():
            cluster.start()
            say(f"{placement}: {cluster.describe()}")
        headers = {
            (placement, mode): _credential(cluster.gateway_url, mode)
            for placement, cluster in clusters.items()
            for mode in MODES
        }
        for (placement, mode), header in headers.items():  # warm-up, and a sanity check
            res = wrk(clusters[placement].gateway_url + "/api/me", duration_s=1, headers=[header])
            if res.errors:
                raise SystemExit(f"{placement}/{mode}: {res.errors} errors while warming up")
        cells = list(headers)
        for r in range(args.rounds):
            for placement, mode in cells[:: -1 if r % 2 else 1]:
                cluster = clusters[placement]
                row = _cell(cluster, headers[(placement, mode)], args)
                results.setdefault(f"{placement}/{mode}", []).append(row)
                say(
                    f"round {r + 1}/{args.rounds} validate-at={placement} {mode}: "
                    f"{row['rps']:,.0f} rps p99 {row['p99_ms']:.2f} ms"
                )
    finally:
        for cluster in clusters.values():
            cluster.stop()

    medians = {
        cell: {key: median([row[key] for row in rows]) for key in rows[0]}
        for cell, rows in results.items()
    }
    columns = [
        ("rps", "rps", "{:,.0f}"),
        ("p50_ms", f"p50 ms (c={args.connections})", "{:.2f}"),
        ("p99_ms", f"p99 ms (c={args.connections})", "{:.2f}"),
        ("p50_c1_ms", "p50 ms (c=1)", "{:.3f}"),
        ("gateway_cpu_us", "gateway CPU µs/req", "{:.0f}"),
        ("auth_cpu_us", "auth CPU µs/req", "{:.0f}"),
        ("replicas_cpu_us", "replicas CPU µs/req", "{:.0f}"),
        ("redis_cpu_us", "Redis CPU µs/req", "{:.1f}"),
        ("redis_commands", "Redis cmds/req", "{:.2f}"),
        ("redis_conns_gateway", "Redis conns: gateway", "{:.0f}"),
        ("redis_conns_auth", "Redis conns: auth", "{:.0f}"),
        ("redis_conns_replicas", "Redis conns: replicas", "{:.0f}"),
    ]
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration:g}s through the gateway to /api/me, "
        f"{args.replicas} replicas, JWT_REVOCATION=denylist, assertion {args.assertion_alg}, "
        f"gateways {', '.join(gateways)}, "
        f"median of {args.rounds} interleaved rounds\n"
    )
    print(
        table(
            ["validate-at / mode", *(title for _, title, _ in columns)],
            [
                [cell, *(fmt.format(m[key]) for key, _, fmt in columns)]
                for cell, m in medians.items()
            ],
        )
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "medians": medians,
                    "rounds": results,
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )
    return 0


def _credential(gateway: str, mode: str) -> str:
    body = {"username": "user1", "password": "password1", "mode": mode}
    req = urllib.request.Request(  # noqa: S310 - loopback
        gateway + "/auth/login",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        if mode == "session":
            return "Cookie: " + str(resp.headers.get_all("Set-Cookie")[0]).split(";", 1)[0]
        token = json.loads(resp.read())["access_token"]
        return f"Authorization: Bearer {token}"


def _cell(cluster: LocalCluster, header: str, args: argparse.Namespace) -> dict[str, float]:
    url = cluster.gateway_url + "/api/me"
    cpu_before = cluster.cpu_seconds()
    calls_before = _redis_calls(cluster)
    res = wrk(url, duration_s=args.duration, connections=args.connections, headers=[header])
    cpu_after = cluster.cpu_seconds()
    calls_after = _redis_calls(cluster)
    conns = _redis_connections(cluster)
    single = wrk(url, duration_s=args.duration, connections=1, headers=[header])
    n = max(1, res.requests)

    def per_request(names: list[str]) -> float:
        return sum(cpu_after[k] - cpu_before[k] for k in names) / n * 1e6

    replicas = [k for k in cpu_after if k.startswith("resource-")]
    return {
        "rps": res.rps,
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "errors": float(res.errors),
        "p50_c1_ms": single.p50_ms,
        "gateway_cpu_us": per_request(["gateway"]),
        "auth_cpu_us": per_request(["auth"]),
        "replicas_cpu_us": per_request(replicas),
        "redis_cpu_us": per_request(["redis"]),
        "redis_commands": (calls_after - calls_before) / n,
        "redis_conns_gateway": float(conns.get("gateway", 0)),
        "redis_conns_auth": float(conns.get("auth", 0)),
        "redis_conns_replicas": float(sum(v for k, v in conns.items() if k in replicas)),
    }


def _redis_calls(cluster: LocalCluster) -> int:
    """Commands Redis has run, minus our own INFO calls (one per sample)."""
    info = cluster.redis_info()
    return sum(
        int(v["calls"])
        for k, v in info.items()
        if k.startswith("cmdstat_") and k != "cmdstat_info" and isinstance(v, dict)
    )


def _redis_connections(cluster: LocalCluster) -> dict[str, int]:
    """Open TCP connections to Redis's port, per child process tree (workers included)."""
    port = cluster.ports.redis
    counts: dict[str, int] = {}
    for child in cluster.all_children():
        if child.pid is None or child.name == "redis":
            continue
        try:
            root = psutil.Process(child.pid)
            procs = [root, *root.children(recursive=True)]
            counts[child.name] = sum(
                1
                for proc in procs
                for conn in proc.net_connections(kind="tcp")
                if conn.raddr and conn.raddr.port == port and conn.status == "ESTABLISHED"
            )
        except psutil.Error:
            counts[child.name] = -1
    return counts


if __name__ == "__main__":
    started = time.time()
    code = main()
    say(f"done in {time.time() - started:.0f} s")
    raise SystemExit(code)
