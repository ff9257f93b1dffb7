"""What credential checking adds to a replica's per-request CPU, against the raw libraries.

For each mode (session; JWT with EdDSA, ES256, RS256, HS256) this starts a private Redis,
the auth service (JWT_ALG=...) and two replicas pinned to one core (--replica-cpu): the
real one, and the same app with a constant credential check (benchmarks/replica_nocheck.py).
wrk (pinned to --load-cpu, like Redis and the auth service) drives GET /api/me at each in
turn, interleaved for --rounds rounds, and the script prints, per mode:

- cost = 1/rps(with checks) - 1/rps(without), in µs (the issue's definition), and the same
  from the replica's own CPU time per request (robust when other work shares the core);
- raw = the library alone on the same core, same run: PyJWT decode of the same token, or
  one redis.asyncio GET (benchmarks/raw_costs.py), in a tight loop;
- raw in situ = a third replica whose check is only that library call
  (benchmarks/replica_rawcheck.py), measured against the same baseline: the library then
  pays the same cold caches and kernel costs inside a busy server as the real check;
- ratio = cost / raw (target <= 1.2), and Redis commands per request (INFO commandstats).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH_DIR,
    PYTHON,
    ROOT,
    Processes,
    check_ports,
    cpu_seconds,
    median,
    say,
    table,
    wait_http,
    wrk,
)

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")


def _post_json(url: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    req = urllib.request.Request(  # noqa: S310 - loopback
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read()), resp.headers.get_all("Set-Cookie") or []


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
        data: dict[str, Any] = json.loads(resp.read())
        return data


def _redis_calls(port: int) -> dict[str, int]:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "commandstats"],
        capture_output=True, text=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    calls: dict[str, int] = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            calls[name[8:]] = int(rest.split(",")[0].split("=")[1])
    return calls


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    skip = {"info"}
    return {
        k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0) and k not in skip
    }


def _pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-port", type=int, default=30800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--replica-cpu", default="1")
    parser.add_argument("--load-cpu", default="0")
    parser.add_argument(
        "--modes", default="session," + ",".join(f"jwt-{a}" for a in ALGORITHMS),
        help="comma-separated: session, jwt-EdDSA, jwt-ES256, jwt-RS256, jwt-HS256",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    redis_port, auth_port = args.base_port + 10, args.base_port + 1
    replica_port, nocheck_port = args.base_port + 21, args.base_port + 22
    rawcheck_port = args.base_port + 23
    check_ports([redis_port, auth_port, replica_port, nocheck_port, rawcheck_port])
    hs_secret = secrets.token_urlsafe(48)
    base_env = {
        "HOST": "127.0.0.1", "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AUTH_URL": f"http://127.0.0.1:{auth_port}", "LOG_LEVEL": "WARNING",
        "AUTH_SEED_USERS": "5", "JWT_HS256_SECRET": hs_secret, "JWT_REVOCATION": "none",
    }  # fmt: skip
    rows: list[dict[str, Any]] = []
    with Processes() as procs:
        procs.spawn(
            "redis",
            _pinned(args.load_cpu, ["redis-server", "--port", str(redis_port), "--bind",
                    "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"]),
        )  # fmt: skip
        time.sleep(0.3)

        def raw_cost(*what: str) -> dict[str, Any]:
            """The library alone, pinned to the replica's core (benchmarks/raw_costs.py)."""
            out = subprocess.run(
                _pinned(args.replica_cpu, [PYTHON, str(BENCH_DIR / "raw_costs.py"), *what]),
                capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            ).stdout  # fmt: skip
            result: dict[str, Any] = json.loads(out)
            return result

        redis_url = base_env["REDIS_URL"]
        subprocess.run(["redis-cli", "-p", str(redis_port), "SET", "bench:raw", "x" * 80],
                       capture_output=True, check=True, timeout=10)  # fmt: skip
        raw_redis: dict[str, list[float]] = {"plain": [], "store": []}
        for mode in args.modes.split(","):
            alg = mode.split("-", 1)[1] if mode.startswith("jwt-") else "EdDSA"
            env = {**base_env, "JWT_ALG": alg}
            auth = procs.spawn(
                f"auth-{mode}",
                _pinned(args.load_cpu, [PYTHON, "-m", "auth_service"]),
                {**env, "PORT": str(auth_port)},
            )
            wait_http(f"http://127.0.0.1:{auth_port}/readyz")
            replica = procs.spawn(
                f"replica-{mode}",
                _pinned(args.replica_cpu, [PYTHON, "-m", "resource_service"]),
                {**env, "PORT": str(replica_port)},
            )
            nocheck = procs.spawn(
                f"nocheck-{mode}",
                _pinned(args.replica_cpu, [PYTHON, str(BENCH_DIR / "replica_nocheck.py")]),
                {**env, "PORT": str(nocheck_port)},
            )
            rawcheck = procs.spawn(
                f"rawcheck-{mode}",
                _pinned(args.replica_cpu, [PYTHON, str(BENCH_DIR / "replica_rawcheck.py")]),
                {**env, "PORT": str(rawcheck_port)},
            )
            for port in (replica_port, nocheck_port, rawcheck_port):
                wait_http(f"http://127.0.0.1:{port}/readyz")
            login = f"http://127.0.0.1:{auth_port}/auth/login"
            if mode == "session":
                _, cookies = _post_json(
                    login, {"username": "user1", "password": "password1", "mode": "session"}
                )
                header = "Cookie: " + cookies[0].split(";", 1)[0]
            else:
                body, _ = _post_json(
                    login, {"username": "user1", "password": "password1", "mode": "jwt"}
                )
                header = f"Authorization: Bearer {body['access_token']}"
                key_file = procs.logdir / f"key-{alg}.json"
                if alg == "HS256":
                    key_file.write_text(json.dumps({"secret": hs_secret}))
                else:
                    jwks = _get_json(f"http://127.0.0.1:{auth_port}/auth/.well-known/jwks.json")
                    key_file.write_text(json.dumps(jwks["keys"][0]))
            url_with = f"http://127.0.0.1:{replica_port}/api/me"
            url_without = f"http://127.0.0.1:{nocheck_port}/api/me"
            url_raw = f"http://127.0.0.1:{rawcheck_port}/api/me"
            for url in (url_with, url_without, url_raw):  # warm-up
                wrk(url, duration_s=1, connections=args.connections, headers=[header],
                    cpus=args.load_cpu)  # fmt: skip
            kinds = ("rps_with", "rps_without", "rps_raw", "cpu_with", "cpu_without", "cpu_raw")
            samples: dict[str, list[float]] = {k: [] for k in kinds}
            redis_per_request: list[float] = []
            raw_samples: list[float] = []
            raw_what = ""
            for r in range(args.rounds):
                for label, url, proc in (("without", url_without, nocheck),
                                         ("with", url_with, replica),
                                         ("raw", url_raw, rawcheck)):  # fmt: skip
                    before_cpu = cpu_seconds(proc.pid)
                    before_redis = _redis_calls(redis_port)
                    res = wrk(url, duration_s=args.duration, connections=args.connections,
                              headers=[header], cpus=args.load_cpu)  # fmt: skip
                    used = cpu_seconds(proc.pid) - before_cpu
                    calls = _delta(_redis_calls(redis_port), before_redis)
                    if res.errors:
                        raise SystemExit(f"{mode} {label}: {res.errors} failed requests")
                    samples[f"rps_{label}"].append(res.rps)
                    samples[f"cpu_{label}"].append(used / res.requests * 1e6)
                    if label == "with":
                        redis_per_request.append(sum(calls.values()) / res.requests)
                    per_request = used / res.requests * 1e6
                    say(f"{mode:10s} round {r + 1}/{args.rounds} {label:7s}: "
                        f"{res.rps:8,.0f} rps, {per_request:6.1f} µs CPU/request, "
                        f"redis {calls}")  # fmt: skip
                if mode == "session":
                    for kind in ("plain", "store"):
                        raw = raw_cost("redis", redis_url, kind)
                        raw_redis[kind].append(raw["us_per_call"])
                        say(f"{mode:10s} round {r + 1}/{args.rounds} raw {raw['what']}: "
                            f"{raw['us_per_call']:.1f} µs CPU ({raw['parser']})")  # fmt: skip
                    raw_samples.append(raw_redis["plain"][-1])
                    raw_what = "redis.asyncio GET (plain client)"
                else:
                    raw = raw_cost("jwt", alg, header.split(" ", 2)[2], str(key_file))
                    raw_samples.append(raw["us_per_call"])
                    raw_what = raw["what"]
                    say(f"{mode:10s} round {r + 1}/{args.rounds} raw {raw_what}: "
                        f"{raw['us_per_call']:.1f} µs CPU")  # fmt: skip
            rps_with, rps_without = median(samples["rps_with"]), median(samples["rps_without"])
            cost = 1e6 / rps_with - 1e6 / rps_without
            cpu_cost = median(samples["cpu_with"]) - median(samples["cpu_without"])
            # In situ: the raw library inside the same server, against the same baseline.
            raw_cost_insitu = 1e6 / median(samples["rps_raw"]) - 1e6 / rps_without
            cpu_raw_insitu = median(samples["cpu_raw"]) - median(samples["cpu_without"])
            rows.append({
                "mode": mode, "rps_with": rps_with, "rps_without": rps_without,
                "cost_us": cost, "cpu_cost_us": cpu_cost, "raw_us": median(raw_samples),
                "raw_what": raw_what, "ratio": cost / median(raw_samples),
                "cpu_ratio": cpu_cost / median(raw_samples),
                "redis_per_request": median(redis_per_request),
                "raw_insitu_us": raw_cost_insitu, "cpu_raw_insitu_us": cpu_raw_insitu,
                "ratio_insitu": cost / raw_cost_insitu,
                "cpu_ratio_insitu": cpu_cost / cpu_raw_insitu,
            })  # fmt: skip
            for proc in (replica, nocheck, rawcheck, auth):
                proc.terminate()
                proc.wait(10)
    print(f"\nreplica pinned to CPU {args.replica_cpu}, wrk/Redis/auth on CPU {args.load_cpu}; "
          f"wrk -c{args.connections} -d{args.duration:g}s; median of {args.rounds} interleaved "
          "rounds\n")  # fmt: skip
    print(table(
        ["mode", "rps with", "rps without", "cost µs (1/rps)", "cost µs (CPU)", "raw µs",
         "ratio (1/rps)", "ratio (CPU)", "redis cmds/req"],
        [[r["mode"], r["rps_with"], r["rps_without"], r["cost_us"], r["cpu_cost_us"],
          r["raw_us"], r["ratio"], r["cpu_ratio"], r["redis_per_request"]] for r in rows],
    ))  # fmt: skip
    print(
        "\nThe raw library in situ (benchmarks/replica_rawcheck.py: the same replica whose "
        "check is only PyJWT's decode, or only one GET), same baseline:\n"
    )
    print(table(
        ["mode", "check µs (1/rps)", "raw in situ µs (1/rps)", "ratio (1/rps)",
         "check µs (CPU)", "raw in situ µs (CPU)", "ratio (CPU)"],
        [[r["mode"], r["cost_us"], r["raw_insitu_us"], r["ratio_insitu"], r["cpu_cost_us"],
          r["cpu_raw_insitu_us"], r["cpu_ratio_insitu"]] for r in rows],
    ))  # fmt: skip
    print("\nraw: PyJWT 2.15 decode alone (JWT modes); one redis.asyncio GET with hiredis, "
          "16 concurrent callers (session). Target: ratio <= 1.2; 1.00 Redis command per "
          "session request.")  # fmt: skip
    if raw_redis["store"]:
        store = median(raw_redis["store"])
        session = next(r for r in rows if r["mode"] == "session")
        print(f"session against a GET through the services' configured client (timeouts, "
              f"bounded pool wait): raw {store:.1f} µs, ratio (1/rps) "
              f"{session['cost_us'] / store:.2f}, ratio (CPU) "
              f"{session['cpu_cost_us'] / store:.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "raw_redis": raw_redis}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
