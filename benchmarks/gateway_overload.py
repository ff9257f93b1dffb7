"""Overload: twice the measured ceiling, with the in-flight bounds and without them.

Starts two real clusters side by side (LocalCluster: Redis, auth, one replica, the gateway
with one worker), identical but for the overload settings: `bounded` runs with
GATEWAY_MAX_INFLIGHT = GATEWAY_MAX_INFLIGHT_PER_UPSTREAM = REPLICA_MAX_INFLIGHT = --cap,
`unbounded` with caps no load here reaches. Reads are /api/me with a session cookie
(one Redis GETEX each). For --rounds rounds:

1. the ceiling: h2load closed loop with --cap connections on `bounded` (the most it admits):
   its throughput is the ceiling, and the p99 of its answers the latency at the ceiling;
2. overload: h2load with --clients connections, each paced (--rps) so that together they
   offer twice that ceiling, against `bounded` and then `unbounded`.

h2load's per-request log (start, status, µs) gives the p99 of the admitted requests (200)
apart from the shed ones (503) and counts what never got an answer. The goal (issue 16):
at 2x, admitted p99 within 3x of the ceiling's, and the errors fast 503s, not timeouts.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import median, say, table

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports

UNBOUNDED = "1000000"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cap", type=int, default=16, help="the in-flight bounds of `bounded`")
    parser.add_argument("--clients", type=int, default=128, help="connections at 2x")
    parser.add_argument("--factor", type=float, default=2.0, help="offered load / ceiling")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per h2load run")
    parser.add_argument("--workdir", type=Path, help="cluster logs (default: a fresh temp dir)")
    parser.add_argument("--out", type=Path, help="write summary.json and h2load logs here")
    args = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is not installed (apt-get install nghttp2-client)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="authbench-overload-"))
    out = args.out or workdir
    out.mkdir(parents=True, exist_ok=True)
    caps = {"bounded": str(args.cap), "unbounded": UNBOUNDED}
    clusters = {
        name: LocalCluster(
            replicas=1,
            ports=Ports.block(free_port_block()),
            settings_env={
                "AUTH_SEED_USERS": "5",
                "LOG_LEVEL": "WARNING",
                "GATEWAY_WORKERS": "1",
                "GATEWAY_MAX_INFLIGHT": cap,
                "GATEWAY_MAX_INFLIGHT_PER_UPSTREAM": cap,
                "REPLICA_MAX_INFLIGHT": cap,
            },
            workdir=workdir / name,
        )
        for name, cap in caps.items()
    }
    rounds: list[dict[str, Any]] = []
    try:
        for name, cluster in clusters.items():
            cluster.start()
            say(f"{name}: {cluster.describe()}")
        cookies = {name: _session(cluster.gateway_url) for name, cluster in clusters.items()}
        for name, cluster in clusters.items():  # warm-up
            _h2load(cluster.gateway_url, cookies[name], args.cap, 2.0, None, out / "warmup.tsv")
        for r in range(args.rounds):
            bounded = clusters["bounded"]
            ceiling = _h2load(
                bounded.gateway_url,
                cookies["bounded"],
                args.cap,
                args.duration,
                None,
                out / f"r{r + 1}-ceiling.tsv",
            )
            offered = ceiling["rps_ok"] * args.factor
            row: dict[str, Any] = {"ceiling": ceiling, "offered_rps": offered}
            say(
                f"round {r + 1}: ceiling {ceiling['rps_ok']:,.0f} rps, "
                f"p99 {ceiling['p99_ok_ms']:.1f} ms"
            )
            for name in ("bounded", "unbounded")[:: -1 if r % 2 else 1]:
                cell = _h2load(
                    clusters[name].gateway_url,
                    cookies[name],
                    args.clients,
                    args.duration,
                    offered / args.clients,
                    out / f"r{r + 1}-{name}-x{args.factor:g}.tsv",
                )
                row[name] = cell
                say(
                    f"round {r + 1}: {name} at {args.factor:g}x ({offered:,.0f} rps offered): "
                    f"{cell['rps_ok']:,.0f} rps admitted p99 {cell['p99_ok_ms']:.1f} ms, "
                    f"503 {cell['shed']} (p99 {cell['p99_shed_ms']:.1f} ms), "
                    f"unanswered {cell['unanswered']}, other {cell['other']}"
                )
            rounds.append(row)
    finally:
        for cluster in clusters.values():
            cluster.stop()

    def med(path: tuple[str, str]) -> float:
        return median([row[path[0]][path[1]] for row in rounds])

    rows = []
    for name in ("ceiling", "bounded", "unbounded"):
        rows.append(
            [
                name if name == "ceiling" else f"{name} at {args.factor:g}x",
                f"{med((name, 'offered_rps')):,.0f}" if name != "ceiling" else "closed loop",
                f"{med((name, 'rps_ok')):,.0f}",
                f"{med((name, 'p50_ok_ms')):.1f}",
                f"{med((name, 'p99_ok_ms')):.1f}",
                f"{med((name, 'shed')):,.0f}",
                f"{med((name, 'p99_shed_ms')):.1f}",
                f"{med((name, 'unanswered')):,.0f}",
                f"{med((name, 'other')):,.0f}",
            ]
        )
    ratio = {
        name: median([row[name]["p99_ok_ms"] / row["ceiling"]["p99_ok_ms"] for row in rounds])
        for name in ("bounded", "unbounded")
    }
    print(
        f"\nGET /api/me (session), 1 replica, 1 gateway worker; bounded: caps {args.cap}; "
        f"ceiling: h2load -c {args.cap} closed loop; overload: h2load -c {args.clients} "
        f"paced to {args.factor:g}x the ceiling; {args.duration:g} s each, median of "
        f"{args.rounds} rounds\n"
    )
    print(
        table(
            ["cell", "offered rps", "admitted rps", "p50 ms (200)", "p99 ms (200)", "503s",
             "p99 ms (503)", "unanswered", "other errors"],
            rows,
        )
    )  # fmt: skip
    shed, lost = (
        med(("bounded", "shed")),
        med(("bounded", "unanswered")) + med(("bounded", "other")),
    )
    goals: list[list[object]] = [
        ["bounded: admitted p99 at 2x / p99 at the ceiling", f"{ratio['bounded']:.2f}", "<= 3",
         ratio["bounded"] <= 3],
        ["bounded: errors that are 503s (of all errors)", f"{shed:,.0f} of {shed + lost:,.0f}",
         "all", lost == 0],
        ["bounded: p99 of a 503", f"{med(('bounded', 'p99_shed_ms')):.1f} ms", "fast", "-"],
        ["unbounded: admitted p99 at 2x / p99 at the ceiling", f"{ratio['unbounded']:.2f}",
         "(the contrast)", "-"],
    ]  # fmt: skip
    print()
    print(table(["target", "measured", "goal", "met"], goals))
    (out / "summary.json").write_text(
        json.dumps(
            {
                "rounds": rounds,
                "p99_ratio": ratio,
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=2,
        )
    )
    return 0


def _session(gateway: str) -> str:
    body = {"username": "user1", "password": "password1", "mode": "session"}
    req = urllib.request.Request(  # noqa: S310 - loopback
        gateway + "/auth/login",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        return str(resp.headers.get_all("Set-Cookie")[0].split(";", 1)[0])


def _h2load(
    gateway: str, cookie: str, clients: int, duration_s: float, rps: float | None, log: Path
) -> dict[str, Any]:
    """One h2load run; per-status figures from its per-request log."""
    argv = ["h2load", "--h1", "-c", str(clients), "-t", "1", "-D", f"{duration_s:g}",
            "-H", f"Cookie: {cookie}", "--log-file", str(log)]  # fmt: skip
    if rps is not None:
        argv += ["--rps", f"{rps:.3f}"]
    argv.append(gateway + "/api/me")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    log.with_suffix(".txt").write_text(" ".join(argv) + "\n\n" + done.stdout + done.stderr)
    ok: list[float] = []
    shed: list[float] = []
    other = 0
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        status, micros = parts[1], float(parts[2])
        if status == "200":
            ok.append(micros / 1000)
        elif status == "503":
            shed.append(micros / 1000)
        else:
            other += 1
    started = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done", done.stdout)
    unanswered = int(started.group(2)) - int(started.group(3)) if started else -1
    log.unlink()  # the figures are kept, not the multi-MB log
    return {
        "rps_ok": len(ok) / duration_s,
        "p50_ok_ms": _pct(ok, 0.50),
        "p99_ok_ms": _pct(ok, 0.99),
        "shed": len(shed),
        "p99_shed_ms": _pct(shed, 0.99),
        "unanswered": unanswered,
        "other": other,
        "offered_rps": (len(ok) + len(shed) + other) / duration_s,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


if __name__ == "__main__":
    started = time.time()
    code = main()
    say(f"done in {time.time() - started:.0f} s")
    raise SystemExit(code)
