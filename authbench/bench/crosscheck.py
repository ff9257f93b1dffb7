"""Cross-check Locust's µs latency with an independent generator, h2load (nghttp2-client).

Locust is Python: its own scheduling could add to (or hide) what it measures. h2load is
C, and has what a fair comparison needs: `--rps` (a rate per client, as Locust's pacing
is a rate per user), so both tools offer the same load, and `--log-file` (each request's
time in µs), so both give exact percentiles. For each mode, on one private cluster:

    Locust, h2load, h2load, Locust     (ABBA: slow drift of a shared machine cancels)

each with a warm-up and a capture window, the same users/clients, the same rate each, the
same read mix (6 x /api/me : 4 x /api/items/N, round robin in h2load). Locust's reads p50
(its HdrHistograms, see latency.py) should be within 20% of h2load's; the output says
where it is not and by how much. What cannot be the same: Locust users each hold their own
credential (one account each) and relogin/refresh are off here; h2load sends one
credential from all its clients.

The floor: first, both tools run the same mix with no credential (loadtests/
floor_locustfile.py), so every read is the gateway and a replica answering 401 at once.
Locust's p50 there minus h2load's is what Locust itself adds on this machine (a Python
generator sharing 2 cores with the system); each mode's row also gives Locust's p50 less
that floor against h2load's, which is where the two must agree when the excess is the
generator's own (`--no-floor` skips it).

Two things a shared 2-core machine adds, and the switches against them:
- `--pin`: the system (Redis, services) on one CPU and both generators on the other
  (authbench.bench.axes.Placement, as `bench --pin`), so neither tool's own CPU queues
  the system's work, and each run's generator competes with nothing but itself;
- each cluster first serves one unmeasured h2load pass as long as a run, so the first
  measured run (always Locust's in ABBA) does not also pay the services' cold start.

    python -m authbench.bench.crosscheck --out results/<run-id>   # about 4 minutes
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from authbench import modes
from authbench.bench import latency, locust_runner
from authbench.bench.axes import Placement
from authbench.bench.runner import wait_quiet
from authbench.process import PROJECT_ROOT, free_port_block
from authbench.provenance import run_head
from authbench.targets.local import LocalCluster, Ports

H2LOAD_MISSING = "h2load was not found; install it: apt-get install nghttp2-client"
READ_MIX = ("/api/me",) * 6 + tuple(f"/api/items/{i}" for i in (3, 17, 256, 901))
TOLERANCE = 0.20
FLOOR = "floor"  # the row of the generators' own cost: no credential, every read a 401


@dataclass(frozen=True)
class Settings:
    users: int = 30
    rate: float = 15.0  # requests per second per user / client
    warmup_s: float = 5.0
    capture_s: float = 12.0
    replicas: int = 1
    pin: bool = False


def _login(gateway: str, login: str, account: int) -> dict[str, str]:
    """The header that carries one account's credential (cookie or Bearer)."""
    body = json.dumps(
        {"username": f"user{account}", "password": f"password{account}", "mode": login}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - our own loopback cluster
        gateway + "/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        if login == modes.Login.SESSION:
            return {"Cookie": resp.headers["Set-Cookie"].split(";", 1)[0]}
        return {"Authorization": "Bearer " + json.loads(resp.read())["access_token"]}


def run_h2load(
    gateway: str, header: dict[str, str], settings: Settings, out_dir: Path
) -> dict[str, Any]:
    """One h2load run at `users` clients x `rate` req/s; µs percentiles of its capture."""
    h2load = shutil.which("h2load")
    if h2load is None:
        raise RuntimeError(H2LOAD_MISSING)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "h2load_requests.tsv"
    # Clients start one by one, spread over one pacing period (-r 1 per period/users), as
    # Locust's users drift apart: started together, h2load's clients would all send on
    # the same tick, 30 requests at once, and measure their own queueing.
    total = round(settings.users * settings.rate * (settings.warmup_s + settings.capture_s))
    stagger_ms = 1000.0 / settings.rate / settings.users
    argv = [
        h2load, "--h1", "-c", str(settings.users), "-t", "1", "-n", str(total),
        "--rps", f"{settings.rate:g}", "-r", "1", "--rate-period", f"{max(1, int(stagger_ms))}ms",
        "--log-file", str(log),
        *(arg for name, value in header.items() for arg in ("-H", f"{name}: {value}")),
        *(gateway + path for path in READ_MIX),
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=settings.warmup_s + settings.capture_s + 60
    )
    (out_dir / "h2load.txt").write_text(done.stdout + done.stderr)
    rows = [line.split("\t") for line in log.read_text().splitlines()]
    rows = [r for r in rows if len(r) >= 3]
    first_us = min((float(r[0]) for r in rows), default=0.0)
    window = (
        first_us + settings.warmup_s * 1e6,
        first_us + (settings.warmup_s + settings.capture_s) * 1e6,
    )
    histogram = latency.new_histogram()
    statuses: dict[str, int] = {}
    for parts in rows:
        if not window[0] <= float(parts[0]) < window[1]:
            continue  # the warm-up (and any tail past the capture)
        statuses[parts[1]] = statuses.get(parts[1], 0) + 1
        histogram.record_value(max(1, int(parts[2])))
    figures = latency.percentiles_us(histogram)
    return {
        "tool": "h2load",
        "requests": int(histogram.get_total_count()),
        "rps": round(histogram.get_total_count() / settings.capture_s, 1),
        "statuses": statuses,
        **{f"{k}_us": v for k, v in figures.items()},
        "command": [*argv[: -len(READ_MIX)], "<the read mix>"],
    }


FLOOR_LOCUSTFILE = PROJECT_ROOT / "loadtests" / "floor_locustfile.py"
FLOOR_USER = "AnonymousReader"


def run_locust(
    gateway: str, mode: modes.Mode | None, settings: Settings, out_dir: Path
) -> dict[str, Any]:
    """One Locust run of `mode`'s bench user; None: the floor's user (no credential)."""
    if mode is None:
        user, locustfile = FLOOR_USER, FLOOR_LOCUSTFILE
    else:
        assert mode.bench_user is not None
        user, locustfile = mode.bench_user.name, mode.bench_user.locustfile
    job = locust_runner.LocustJob(
        host=gateway,
        user_classes=(user,),
        locustfile=locustfile,
        out_dir=out_dir,
        users=settings.users,
        run_time_s=settings.warmup_s + settings.capture_s + 30,
        warmup_s=settings.warmup_s,
        pacing_s=1.0 / settings.rate,
        accounts=settings.users,
        relogin_prob=0.0,
        refresh_prob=0.0,
        env={
            "AUTHBENCH_CAPTURE_S": f"{settings.capture_s:g}",
            "AUTHBENCH_HDR_DIR": str(out_dir / "hdr"),
        },
        html=False,
    )
    outputs = locust_runner.run(job, timeout_s=settings.warmup_s + settings.capture_s + 90)
    merged = latency.merge_dir(out_dir / "hdr")["reads"]
    return {
        "tool": "locust",
        "returncode": outputs.returncode,
        "requests": int(merged.get_total_count()),
        "rps": round(merged.get_total_count() / settings.capture_s, 1),
        **{f"{k}_us": v for k, v in latency.percentiles_us(merged).items()},
    }


def check_mode(
    mode: modes.Mode, settings: Settings, run_dir: Path, floor: bool = False
) -> dict[str, Any]:
    """Locust against h2load, ABBA, on one private cluster serving `mode`; with `floor`,
    both tools send no credential (every read a fast 401: the generators' own cost)."""
    cluster = LocalCluster(
        replicas=settings.replicas,
        ports=Ports.block(free_port_block()),
        settings_env={
            "AUTH_SEED_USERS": str(settings.users),
            "LOG_LEVEL": "WARNING",
            **mode.settings,
        },
        workdir=PROJECT_ROOT / ".authbench" / f"crosscheck-{run_dir.name}",
    )
    cluster.start()
    own_cpus = os.sched_getaffinity(0)
    try:
        if settings.pin:  # the system on its CPUs, then this process (and so both tools)
            placement = Placement.split(own_cpus)
            placement.pin_system(cluster)
            os.sched_setaffinity(0, placement.loadgen_cpus)
        wait_quiet(cluster)  # the seeding's argon2id hashes are done
        header = {} if floor else _login(cluster.gateway_url, mode.login, 0)
        # Unmeasured: the services' cold start (first connections, caches) is paid here.
        run_h2load(cluster.gateway_url, header, settings, run_dir / "warmup")
        runs: list[dict[str, Any]] = []
        for i, tool in enumerate(("locust", "h2load", "h2load", "locust")):
            out = run_dir / ("floor" if floor else mode.slug) / f"{i + 1}-{tool}"
            if tool == "locust":
                runs.append(run_locust(cluster.gateway_url, None if floor else mode, settings, out))
            else:
                runs.append(run_h2load(cluster.gateway_url, header, settings, out))
            time.sleep(1.0)
    finally:
        os.sched_setaffinity(0, own_cpus)
        cluster.stop()
    locust_p50 = statistics.median(r["p50_us"] for r in runs if r["tool"] == "locust")
    h2load_p50 = statistics.median(r["p50_us"] for r in runs if r["tool"] == "h2load")
    ratio = locust_p50 / h2load_p50 if h2load_p50 else float("nan")
    return {
        "mode": FLOOR if floor else mode.key,
        "locust_p50_us": locust_p50,
        "h2load_p50_us": h2load_p50,
        "locust_over_h2load": round(ratio, 3),
        "within_20pct": abs(ratio - 1.0) <= TOLERANCE,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbench.bench.crosscheck",
        description="Locust's µs read latency against h2load's, same offered rate, per mode "
        "(ABBA order on one private cluster per mode). Writes crosscheck.json/.csv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = Settings()
    parser.add_argument("--out", required=True, help="run folder to write (must not exist)")
    parser.add_argument("--modes", default=",".join(modes.keys(modes.BENCH_MODES)))
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="req/s per user")
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s)
    parser.add_argument("--capture", type=float, default=defaults.capture_s)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the system on all CPUs but the last, both generators on the last (as bench --pin)",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the floor (both tools with no credential: what Locust itself adds)",
    )
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        print(f"crosscheck: {H2LOAD_MISSING}", file=sys.stderr)
        return 2
    settings = Settings(args.users, args.rate, args.warmup, args.capture, pin=args.pin)
    if args.pin:
        try:
            Placement.split()
        except ValueError as err:
            print(f"crosscheck: {err}", file=sys.stderr)
            return 2
    run_dir = Path(args.out)
    run_dir.mkdir(parents=True, exist_ok=False)
    manifest = {**run_head("crosscheck", run_dir.name), "settings": asdict(settings)}
    results = []
    floor_us = 0.0
    if not args.no_floor:
        floor = check_mode(modes.JWT, settings, run_dir, floor=True)
        floor_us = floor["locust_p50_us"] - floor["h2load_p50_us"]
        results.append(floor)
        print(
            f"floor (no credential, every read a 401): Locust p50 {floor['locust_p50_us']:.0f}"
            f" µs, h2load p50 {floor['h2load_p50_us']:.0f} µs: Locust adds {floor_us:.0f} µs "
            "of its own",
            flush=True,
        )
    for key in args.modes.split(","):
        result = check_mode(modes.get(key.strip()), settings, run_dir)
        if not args.no_floor:
            # What remains of Locust's p50 once its own cost (the floor's excess) is taken
            # off: the system's part, which must agree with h2load's.
            less = result["locust_p50_us"] - floor_us
            ratio = less / result["h2load_p50_us"] if result["h2load_p50_us"] else float("nan")
            result["locust_p50_less_floor_us"] = round(less, 1)
            result["less_floor_over_h2load"] = round(ratio, 3)
            result["within_20pct_less_floor"] = abs(ratio - 1.0) <= TOLERANCE
        results.append(result)
        print(
            f"{result['mode']}: Locust p50 {result['locust_p50_us']:.0f} µs, h2load p50 "
            f"{result['h2load_p50_us']:.0f} µs, ratio {result['locust_over_h2load']}"
            + (
                f"; less the floor {result['locust_p50_less_floor_us']:.0f} µs, ratio "
                f"{result['less_floor_over_h2load']}"
                if "locust_p50_less_floor_us" in result
                else ""
            ),
            flush=True,
        )
    manifest["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest["loadavg_at_end"] = list(os.getloadavg())
    manifest["results"] = results
    (run_dir / "crosscheck.json").write_text(json.dumps(manifest, indent=2))
    with (run_dir / "crosscheck.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["mode", "tool", "order", "requests", "rps", "p50_us", "p90_us",
                         "p99_us", "p999_us"])  # fmt: skip
        for result in results:
            for i, r in enumerate(result["runs"]):
                writer.writerow([result["mode"], r["tool"], i + 1, r["requests"], r["rps"],
                                 r["p50_us"], r["p90_us"], r["p99_us"], r["p999_us"]])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
