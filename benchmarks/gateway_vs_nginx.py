"""Gateway vs nginx in front of the same replica, measured side by side with wrk.

Starts (all on 127.0.0.1, ports from --base-port): a hello-world aiohttp replica, nginx
as a keep-alive reverse proxy to it, and `python -m gateway` in front of it. Then, for
--rounds rounds, runs wrk against direct / nginx / gateway in turn (interleaved, so the
shared machine's noise hits all three alike) and prints medians and ratios:

- throughput: wrk -c CONNECTIONS, rps through each path; target gateway/nginx >= 0.6;
- latency: wrk -c 1 (one request in flight: no queueing), p50 added to the direct p50;
  target gateway's added p50 <= 0.5 ms;
- the load generator's own ceiling: wrk against nginx's static `return 200`;
- edge validation (issue 15, `--validate`, on by default): a second gateway with
  VALIDATE_AT=gateway, a redis-server and the auth service beside it, measured with a
  session cookie (`gateway+validate:session`, one GETEX per request) and with an EdDSA JWT
  (`gateway+validate:jwt`, one signature check), against the same gateway without
  validation: what checking the credential at the edge costs the gateway. Every path
  gets the same credential header, so the requests differ only in what is done with them;
- nginx's edge validation beside it (`nginx+validate:*`, with `--validate`): nginx with
  `auth_request` to that auth service's /auth/edge-check (authbench/targets/nginx.py), which
  checks the credential and signs the assertion; measured against plain nginx, with the
  auth service's CPU per request, since that is where nginx's check is spent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH_DIR,
    PYTHON,
    Processes,
    WrkResult,
    check_ports,
    cpu_seconds,
    median,
    nginx,
    say,
    table,
    wait_http,
    wrk,
)

from authbench.process import PROJECT_ROOT as ROOT
from authbench.targets.nginx import nginx_binary, write_config
from authcore.assertion import generate_keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-port", type=int, default=30740)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="GATEWAY_WORKERS")
    parser.add_argument("--nginx-workers", type=int, default=2)
    parser.add_argument("--body-bytes", type=int, default=64, help="replica response size")
    parser.add_argument("--path", default="/api/hello")
    parser.add_argument(
        "--compare-ref",
        action="append",
        default=[],
        metavar="GIT_REF",
        help="also run the gateway/ package of this commit (e.g. acb93e2, the aiohttp one)",
    )
    parser.add_argument(
        "--validate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure a gateway with VALIDATE_AT=gateway (session and JWT credentials)",
    )
    parser.add_argument(
        "--assertion-alg",
        default="EdDSA",
        choices=("EdDSA", "HS256"),
        help="EDGE_ASSERTION_ALG of the validating gateway",
    )
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)

    replica, proxy, gateway = args.base_port, args.base_port + 1, args.base_port + 2
    others = {ref: args.base_port + 3 + i for i, ref in enumerate(args.compare_ref)}
    # Edge validation's own processes sit at the top of the block.
    validating, auth, redis_port = args.base_port + 40, args.base_port + 41, args.base_port + 42
    nginx_validating = args.base_port + 43
    check_ports([replica, proxy, gateway, *others.values()])
    if args.validate:
        check_ports([validating, auth, redis_port, nginx_validating])
    with Processes() as procs:
        procs.spawn(
            "replica",
            [PYTHON, str(BENCH_DIR / "hello_replica.py"), str(replica), str(args.body_bytes)],
        )
        wait_http(f"http://127.0.0.1:{replica}/healthz")
        with nginx(proxy, replica, procs.logdir / "nginx", args.nginx_workers) as conf:
            procs.spawn("nginx", ["nginx", "-c", str(conf), "-e", str(conf.parent / "e.log")])
            wait_http(f"http://127.0.0.1:{proxy}/nginx-static")
        upstream = f"http://127.0.0.1:{replica}"
        gateway_env = {
            "HOST": "127.0.0.1",
            "AUTH_URL": upstream,
            "RESOURCE_URLS": upstream,
            "GATEWAY_WORKERS": str(args.workers),
            "LOG_LEVEL": "WARNING",
            "REDIS_URL": "redis://127.0.0.1:1/0",
        }
        gateway_pids = {
            "gateway": procs.spawn(
                "gateway", [PYTHON, "-m", "gateway"], {**gateway_env, "PORT": str(gateway)}
            ).pid
        }
        for ref, port in others.items():
            # That commit's gateway/ package, on top of today's authbench/ package.
            src = procs.logdir / f"src-{ref}"
            src.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", ref, "gateway"], capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
            gateway_pids[f"gateway@{ref}"] = procs.spawn(
                f"gateway-{ref}",
                [PYTHON, "-m", "gateway"],
                {**gateway_env, "PORT": str(port), "PYTHONPATH": f"{src}:{ROOT}"},
                cwd=src,  # `python -m` puts the working directory first on sys.path
            ).pid
        for port in (gateway, *others.values()):
            wait_http(f"http://127.0.0.1:{port}/readyz")
        credentials: dict[str, str] = {}
        auth_pid = 0  # the auth service, where nginx's edge check is spent
        if args.validate:
            credentials = start_validating_gateway(
                procs, gateway_env, validating, auth, redis_port, args.assertion_alg
            )
            gateway_pids["gateway+validate:session"] = gateway_pids["gateway+validate:jwt"] = (
                procs.started[-1].pid
            )
            auth_pid = procs.started[-2].pid  # started just before the validating gateway
            conf = write_config(
                procs.logdir / "nginx-validate" / "nginx.conf",
                port=nginx_validating,
                auth_urls=[f"http://127.0.0.1:{auth}"],
                replica_urls=[upstream],
                workdir=procs.logdir / "nginx-validate",
                workers=args.nginx_workers,
                edge=True,
            )
            nginx_pid = procs.spawn("nginx-validate", [nginx_binary(), "-c", str(conf)]).pid
            wait_http(f"http://127.0.0.1:{nginx_validating}/readyz")
            gateway_pids["nginx+validate:session"] = gateway_pids["nginx+validate:jwt"] = nginx_pid
        say(f"logs in {procs.logdir}")
        # Every path gets the same credential header (one cookie when not validating).
        same = [credentials["session"]] if credentials else []
        targets: dict[str, tuple[str, list[str]]] = {
            "direct": (f"http://127.0.0.1:{replica}{args.path}", same),
            "nginx": (f"http://127.0.0.1:{proxy}{args.path}", same),
            "gateway": (f"http://127.0.0.1:{gateway}{args.path}", same),
        }
        for ref, port in others.items():
            targets[f"gateway@{ref}"] = (f"http://127.0.0.1:{port}{args.path}", same)
        for kind, header in credentials.items():
            targets[f"gateway+validate:{kind}"] = (
                f"http://127.0.0.1:{validating}{args.path}",
                [header],
            )
        for kind, header in credentials.items():
            targets[f"nginx+validate:{kind}"] = (
                f"http://127.0.0.1:{nginx_validating}{args.path}",
                [header],
            )
        for url, headers in targets.values():  # warm up every path (pools, caches)
            res = wrk(url, duration_s=1, connections=args.connections, headers=headers)
            if res.errors:
                raise SystemExit(f"{url}: {res.errors} errors while warming up")
        loaded: dict[str, list[WrkResult]] = {k: [] for k in targets}
        single: dict[str, list[WrkResult]] = {k: [] for k in targets}
        ceiling: list[WrkResult] = []
        # CPU time a gateway spends per request: unlike rps, hardly moved by other work on
        # the machine, so the steadiest before/after measure of the gateway's own cost.
        cpu_us: dict[str, list[float]] = {k: [] for k in gateway_pids}
        auth_us: dict[str, list[float]] = {k: [] for k in gateway_pids if "+validate:" in k}
        for r in range(args.rounds):
            # Every other round in reverse: no path always runs right after the same one.
            order = list(targets.items())[:: -1 if r % 2 else 1]
            for name, (url, headers) in order:
                pid = gateway_pids.get(name)
                cpu_before = tree_cpu_seconds(pid) if pid else 0.0
                auth_before = cpu_seconds(auth_pid) if name in auth_us else 0.0
                res = wrk(
                    url, duration_s=args.duration, connections=args.connections, headers=headers
                )
                loaded[name].append(res)
                if pid and res.requests:
                    cpu_us[name].append((tree_cpu_seconds(pid) - cpu_before) / res.requests * 1e6)
                if name in auth_us and res.requests:
                    spent = cpu_seconds(auth_pid) - auth_before
                    auth_us[name].append(spent / res.requests * 1e6)
                say(
                    f"round {r + 1}/{args.rounds} {name:8s} c={args.connections}: "
                    f"{res.rps:9,.0f} rps p50 {res.p50_ms:.3f} ms errors {res.errors}"
                )
            for name, (url, headers) in order:
                res = wrk(url, duration_s=args.duration, connections=1, headers=headers)
                single[name].append(res)
                say(
                    f"round {r + 1}/{args.rounds} {name:8s} c=1: {res.rps:9,.0f} rps "
                    f"p50 {res.p50_ms:.3f} ms"
                )
            res = wrk(
                f"http://127.0.0.1:{proxy}/nginx-static",
                duration_s=args.duration,
                connections=args.connections,
            )
            ceiling.append(res)
            say(f"round {r + 1}/{args.rounds} wrk ceiling (nginx static): {res.rps:9,.0f} rps")

    rps = {k: median([r.rps for r in v]) for k, v in loaded.items()}
    p50 = {k: median([r.p50_ms for r in v]) for k, v in loaded.items()}
    p50_1 = {k: median([r.p50_ms for r in v]) for k, v in single.items()}
    errors = {k: sum(r.errors for r in v) for k, v in loaded.items()}
    rows = [
        [
            name,
            rps[name],
            p50[name],
            p50_1[name],
            p50_1[name] - p50_1["direct"],
            errors[name],
            f"{rps[name] / rps['nginx']:.2f}",
        ]
        for name in targets
    ]
    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s, median of {args.rounds} "
        f"interleaved rounds; gateway workers {args.workers}, nginx workers "
        f"{args.nginx_workers}\n"
    )
    print(
        table(
            [
                "path",
                "rps",
                f"p50 ms (c={args.connections})",
                "p50 ms (c=1)",
                "added p50 ms (c=1)",
                "errors",
                "rps / nginx",
            ],
            rows,
        )
    )
    ratio = paired(loaded["gateway"], loaded["nginx"])
    added = p50_1["gateway"] - p50_1["direct"]
    wrk_ceiling = median([r.rps for r in ceiling])
    # The same for each older gateway, and today's against it round by round: a before /
    # after comparison that the machine's noise hits on both sides alike.
    refs = {
        ref: {
            "ratio": paired(loaded[f"gateway@{ref}"], loaded["nginx"]),
            "added_p50_ms": p50_1[f"gateway@{ref}"] - p50_1["direct"],
            "today_vs_ref": paired(loaded["gateway"], loaded[f"gateway@{ref}"]),
            "cpu_us_per_request": median(cpu_us[f"gateway@{ref}"]),
            "cpu_today_vs_ref": median(
                [a / b for a, b in zip(cpu_us["gateway"], cpu_us[f"gateway@{ref}"], strict=True)]
            ),
        }
        for ref in others
    }
    # Edge validation: the validating gateway against the plain one and nginx, per round.
    # nginx's edge validation likewise, against plain nginx; its check's CPU is the auth
    # service's (keyed `nginx+validate:KIND`; ours as before, by KIND alone).
    validation = {
        (name.split(":", 1)[1] if name.startswith("gateway") else name): {
            "vs_gateway": paired(loaded[name], loaded["gateway"]),
            "vs_nginx": paired(loaded[name], loaded["nginx"]),
            "cpu_us_per_request": median(cpu_us[name]),
            "auth_cpu_us_per_request": median(auth_us[name]),
            "added_p50_ms": p50_1[name]
            - p50_1["gateway" if name.startswith("gateway") else "nginx"],
        }
        for name in targets
        if "+validate:" in name
    }
    print()
    print(
        table(
            ["target", "measured", "goal", "met"],
            [
                [
                    "gateway rps / nginx rps (median of per-round ratios)",
                    f"{ratio:.2f}",
                    ">= 0.60",
                    ratio >= 0.6,
                ],
                ["gateway added p50 (c=1)", f"{added:.3f} ms", "<= 0.500 ms", added <= 0.5],
                ["nginx added p50 (c=1)", f"{p50_1['nginx'] - p50_1['direct']:.3f} ms", "-", "-"],
                [
                    f"gateway CPU per request (c={args.connections})",
                    f"{median(cpu_us['gateway']):.1f} µs",
                    "-",
                    "-",
                ],
                [
                    "wrk ceiling (nginx static)",
                    f"{wrk_ceiling:,.0f} rps",
                    "> every cell",
                    wrk_ceiling > max(rps.values()),
                ],
                *(
                    row
                    for kind, seen in validation.items()
                    if kind.startswith("nginx+")
                    for row in (
                        [
                            f"{kind} rps / nginx rps (per-round)",
                            f"{seen['vs_nginx']:.2f}",
                            "-",
                            "-",
                        ],
                        [
                            f"{kind} CPU per request: nginx + auth service",
                            f"{seen['cpu_us_per_request']:.1f} + "
                            f"{seen['auth_cpu_us_per_request']:.1f} µs",
                            "-",
                            "-",
                        ],
                        [
                            f"{kind} added p50 (c=1) over nginx",
                            f"{seen['added_p50_ms']:.3f} ms",
                            "-",
                            "-",
                        ],
                    )
                ),
                *(
                    row
                    for kind, seen in validation.items()
                    if not kind.startswith("nginx+")
                    for row in (
                        [
                            f"gateway+validate:{kind} rps / gateway rps (per-round)",
                            f"{seen['vs_gateway']:.2f}",
                            "-",
                            "-",
                        ],
                        [
                            f"gateway+validate:{kind} rps / nginx rps (per-round)",
                            f"{seen['vs_nginx']:.2f}",
                            "-",
                            "-",
                        ],
                        [
                            f"gateway+validate:{kind} CPU per request",
                            f"{seen['cpu_us_per_request']:.1f} µs",
                            "-",
                            "-",
                        ],
                        [
                            f"gateway+validate:{kind} added p50 (c=1) over the gateway",
                            f"{seen['added_p50_ms']:.3f} ms",
                            "-",
                            "-",
                        ],
                    )
                ),
                *(
                    row
                    for ref, seen in refs.items()
                    for row in (
                        [f"gateway@{ref} rps / nginx rps", f"{seen['ratio']:.2f}", "-", "-"],
                        [
                            f"gateway@{ref} added p50 (c=1)",
                            f"{seen['added_p50_ms']:.3f} ms",
                            "-",
                            "-",
                        ],
                        [
                            f"gateway@{ref} CPU per request",
                            f"{seen['cpu_us_per_request']:.1f} µs",
                            "-",
                            "-",
                        ],
                        [
                            f"gateway rps / gateway@{ref} rps (per-round)",
                            f"{seen['today_vs_ref']:.2f}",
                            ">= 0.95 (no regression)",
                            seen["today_vs_ref"] >= 0.95,
                        ],
                        [
                            f"gateway CPU per request / gateway@{ref}'s (per-round)",
                            f"{seen['cpu_today_vs_ref']:.2f}",
                            "<= 1.05 (no regression)",
                            seen["cpu_today_vs_ref"] <= 1.05,
                        ],
                    )
                ),
            ],
        )
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rps": rps,
                    "p50_ms": p50,
                    "p50_ms_c1": p50_1,
                    "ratio": ratio,
                    "cpu_us_per_request": {k: median(v) for k, v in cpu_us.items()},
                    "added_p50_ms": added,
                    "wrk_ceiling_rps": wrk_ceiling,
                    "errors": errors,
                    "refs": refs,
                    "validation": validation,
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )
    return 0


def start_validating_gateway(
    procs: Processes,
    gateway_env: dict[str, str],
    port: int,
    auth_port: int,
    redis_port: int,
    alg: str = "EdDSA",
) -> dict[str, str]:
    """Redis, the auth service and a gateway with VALIDATE_AT=gateway (same workers and
    upstream as the plain one); returns the credential header of each kind."""
    procs.spawn(
        "redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--loglevel", "warning"],
    )  # fmt: skip
    services = {
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AUTH_URL": f"http://127.0.0.1:{auth_port}",
        "AUTH_SEED_USERS": "5",
        "LOG_LEVEL": "WARNING",
    }
    signing, _verifying = generate_keys(alg)  # the hello replica checks nothing
    # The auth service holds the signing key too: nginx's auth_request asks it to sign.
    procs.spawn(
        "auth",
        [PYTHON, "-m", "auth_service"],
        {**services, "PORT": str(auth_port), "EDGE_ASSERTION_KEY": signing,
         "EDGE_ASSERTION_ALG": alg},
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{auth_port}/readyz")
    procs.spawn(
        "gateway-validate",
        [PYTHON, "-m", "gateway"],
        {**gateway_env, **services, "PORT": str(port), "VALIDATE_AT": "gateway",
         "EDGE_ASSERTION_KEY": signing, "EDGE_ASSERTION_ALG": alg},
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/readyz")
    login = f"http://127.0.0.1:{auth_port}/auth/login"
    session = _login(login, "session")
    jwt = _login(login, "jwt")
    return {
        "session": "Cookie: " + session[1][0].split(";", 1)[0],
        "jwt": f"Authorization: Bearer {jwt[0]['access_token']}",
    }


def _login(url: str, mode: str) -> tuple[dict[str, str], list[str]]:
    body = {"username": "user1", "password": "password1", "mode": mode}
    req = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read()), resp.headers.get_all("Set-Cookie") or []


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (GATEWAY_WORKERS forks them)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(child) for child in (task / "children").read_text().split()]
    return sum(cpu_seconds(p) for p in pids)


def paired(runs: list[WrkResult], against: list[WrkResult]) -> float:
    """Median of per-round rps ratios: each run against the one next to it in its round,
    robust when other work on the machine slows whole rounds down."""
    return median([a.rps / b.rps for a, b in zip(runs, against, strict=True)])


if __name__ == "__main__":
    raise SystemExit(main())
