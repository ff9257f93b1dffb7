"""The load generators' own ceilings against no-auth endpoints, so every benchmark cell
can be checked to sit below them.

Starts nginx (a static `return 200`: as cheap a server as there is) and the gateway in
front of a hello replica, then measures, interleaved for --rounds rounds:
- wrk (1 thread, like the other benchmarks) against nginx static and the gateway /healthz;
- Locust (headless, FastHttpUser as loadtests/locustfile.py uses, --processes N) against
  the same two, for --duration seconds each.
The Locust figure is the ceiling for `authbench bench`'s cells; wrk's for benchmarks/.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH_DIR,
    PYTHON,
    Processes,
    check_ports,
    median,
    nginx,
    say,
    table,
    wait_http,
    wrk,
)

from authbench.bench import locust_runner


def locust_rps(url: str, path: str, duration: float, users: int, processes: int,
               workdir: Path) -> float:  # fmt: skip
    job = locust_runner.LocustJob(
        host=url, user_classes=(), out_dir=workdir, locustfile=BENCH_DIR / "locust_ceiling.py",
        users=users, run_time_s=duration, processes=processes, html=False, loglevel="WARNING",
        options=("--ceiling-path", path),
    )  # fmt: skip
    outputs = locust_runner.run(job, timeout_s=duration + 60)
    with outputs.stats_csv.open() as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                return float(row["Requests/s"])
    raise RuntimeError("no Aggregated row in Locust's stats")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-port", type=int, default=30760)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--processes", type=int, default=1, help="Locust processes")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    replica, static, gateway = args.base_port, args.base_port + 1, args.base_port + 2
    check_ports([replica, static, gateway])
    results: dict[str, list[float]] = {}
    with Processes() as procs:
        procs.spawn("replica", [PYTHON, str(BENCH_DIR / "hello_replica.py"), str(replica)])
        wait_http(f"http://127.0.0.1:{replica}/healthz")
        with nginx(static, replica, procs.logdir / "nginx") as conf:
            procs.spawn("nginx", ["nginx", "-c", str(conf), "-e", str(conf.parent / "e.log")])
            wait_http(f"http://127.0.0.1:{static}/nginx-static")
        upstream = f"http://127.0.0.1:{replica}"
        procs.spawn(
            "gateway", [PYTHON, "-m", "gateway"],
            {"PORT": str(gateway), "HOST": "127.0.0.1", "AUTH_URL": upstream,
             "RESOURCE_URLS": upstream, "GATEWAY_WORKERS": "2", "LOG_LEVEL": "WARNING"},
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{gateway}/readyz")
        targets = {
            "nginx static": (f"http://127.0.0.1:{static}", "/nginx-static"),
            "gateway /healthz": (f"http://127.0.0.1:{gateway}", "/healthz"),
        }
        for r in range(args.rounds):
            for name, (base, path) in targets.items():
                res = wrk(base + path, duration_s=args.duration, connections=args.users)
                results.setdefault(f"wrk -t1 -c{args.users} → {name}", []).append(res.rps)
                rps = locust_rps(base, path, args.duration, args.users, args.processes,
                                 procs.logdir)  # fmt: skip
                label = f"Locust FastHttpUser x{args.users}, {args.processes} proc → {name}"
                results.setdefault(label, []).append(rps)
                say(f"round {r + 1}/{args.rounds} {name}: wrk {res.rps:,.0f} rps, "
                    f"locust {rps:,.0f} rps")  # fmt: skip
    rows = [[name, median(v)] for name, v in results.items()]
    print(f"\nmedian of {args.rounds} interleaved rounds, {args.duration:g} s each\n")
    print(table(["generator → target", "requests/s"], rows))
    if args.json:
        args.json.write_text(json.dumps({k: median(v) for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
