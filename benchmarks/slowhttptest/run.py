"""Debian's slowhttptest in slow-body mode (-B) against the gateway, with a probe beside it.

Starts (127.0.0.1, ports from --base-port) the hello replica and `python -m gateway` in
front of it, with its operator port. Then runs `slowhttptest -B` (thousands of POSTs
whose bodies trickle in; bounded by its own -l) and, for the same time, a probe on
127.0.0.2 that asks /api/hello on a new connection every 0.25 s. Writes into --out:
slowhttptest's own report (`slowbody.csv`, `slowbody.html`, `slowhttptest.txt`), the
probe's answers (`probe.csv`), the gateway's refusal counters, and `summary.md` (the
command, slowhttptest's summary, its connection states over time and the probe's
latency): what benchmarks/slowhttptest/README.md quotes.

All connections of slowhttptest come from 127.0.0.1 (it cannot bind another address).
The gateway caps connections per address (GATEWAY_MAX_CONNECTIONS_PER_CLIENT), so with
the defaults most of a single-address flood is refused at once (429); --per-client
raises that cap so that every slow connection is admitted and only the body timeout
(CLIENT_BODY_TIMEOUT_S) ends it.
"""

from __future__ import annotations

import argparse
import csv
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import BENCH_DIR, PYTHON, Processes, check_ports, say, wait_http

from authbench.process import PROJECT_ROOT as ROOT

PROBE_FROM = "127.0.0.2"


class Probe(threading.Thread):
    """A normal client beside the attack: a GET on a new connection every `period_s`."""

    def __init__(self, port: int, period_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.period_s = period_s
        self.samples: list[tuple[float, str, float]] = []  # (t, status, seconds)
        self.stop = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        request = b"GET /api/hello HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
        while not self.stop.wait(self.period_s):
            began = time.monotonic()
            try:
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=5, source_address=(PROBE_FROM, 0)
                ) as sock:
                    sock.sendall(request)
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                status = data.split(b" ", 2)[1].decode() if data else "closed"
            except OSError as err:
                status = type(err).__name__
            self.samples.append((began - self.started_at, status, time.monotonic() - began))


def refused(admin_port: int) -> dict[str, float]:
    """The gateway's connection-refusal counters, from its operator port."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:  # a gateway from before the operator port (--ref)
        return {}
    found = re.findall(
        r'^authbench_gateway_connections_refused_total\{cap="(\w+)"\} (\S+)$', text, re.M
    )
    return {cap: float(value) for cap, value in found}


def states(csv_path: Path, every_s: int) -> list[list[str]]:
    """slowhttptest's per-second connection states, one row every `every_s` seconds."""
    with csv_path.open() as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    picked = [row for row in body if row and int(row[0]) % every_s == 0]
    if body and body[-1] not in picked:
        picked.append(body[-1])
    return [header, *picked]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-port", type=int, default=30960)
    parser.add_argument("--connections", type=int, default=3000, help="slowhttptest -c")
    parser.add_argument("--rate", type=int, default=500, help="new connections per second (-r)")
    parser.add_argument("--interval", type=int, default=5, help="seconds between body bytes (-i)")
    parser.add_argument("--length", type=int, default=45, help="test length in seconds (-l)")
    parser.add_argument("--body-timeout", type=int, default=10, help="CLIENT_BODY_TIMEOUT_S")
    parser.add_argument(
        "--per-client", type=int, help="GATEWAY_MAX_CONNECTIONS_PER_CLIENT (default: the gateway's)"
    )
    parser.add_argument(
        "--ref",
        metavar="GIT_REF",
        help="run the gateway/ package of this commit instead (e.g. 92d5b94, before issue 11)",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory for the report")
    args = parser.parse_args(argv)
    if shutil.which("slowhttptest") is None:
        raise SystemExit("slowhttptest is not installed (apt-get install slowhttptest)")

    replica, gateway, admin = args.base_port, args.base_port + 1, args.base_port + 2
    check_ports([replica, gateway, admin])
    args.out.mkdir(parents=True, exist_ok=True)
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(gateway),
        "AUTH_URL": f"http://127.0.0.1:{replica}",
        "RESOURCE_URLS": f"http://127.0.0.1:{replica}",
        "GATEWAY_ADMIN_PORT": str(admin),
        "CLIENT_BODY_TIMEOUT_S": str(args.body_timeout),
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    if args.per_client:
        env["GATEWAY_MAX_CONNECTIONS_PER_CLIENT"] = str(args.per_client)
    out, url = shlex.quote(str(args.out / "slowbody")), f"http://127.0.0.1:{gateway}/api/hello"
    command = shlex.split(
        f"slowhttptest -B -c {args.connections} -r {args.rate} -i {args.interval} -s 8192 "
        f"-l {args.length} -p 3 -t POST -g -o {out} -u {url}"
    )
    with Processes() as procs:
        procs.spawn("replica", [PYTHON, str(BENCH_DIR / "hello_replica.py"), str(replica)])
        wait_http(f"http://127.0.0.1:{replica}/healthz")
        if args.ref:  # that commit's gateway/ package, on top of today's authcore/
            src = procs.logdir / f"src-{args.ref}"
            src.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", args.ref, "gateway"],
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
            env["PYTHONPATH"] = f"{src}:{ROOT}"
        procs.spawn("gateway", [PYTHON, "-m", "gateway"], env, cwd=src if args.ref else ROOT)
        wait_http(f"http://127.0.0.1:{gateway}/readyz")
        say(f"gateway on {gateway} (logs in {procs.logdir}); {shlex.join(command)}")
        probe = Probe(gateway)
        probe.start()
        run = subprocess.run(
            command, capture_output=True, text=True, timeout=args.length + 120, check=False
        )
        time.sleep(1.0)
        probe.stop.set()
        probe.join(10)
        counters = refused(admin)
        gateway_log = (procs.logdir / "gateway.log").read_text(errors="replace")
    report = run.stdout + run.stderr
    (args.out / "slowhttptest.txt").write_text(report)
    with (args.out / "probe.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t_s", "status", "latency_ms"])
        for t, status, took in probe.samples:
            writer.writerow([f"{t:.2f}", status, f"{took * 1000:.2f}"])
    # slowhttptest reprints its settings and status every few seconds; the last print,
    # with how the test ended, is its summary.
    last = report.rfind("slowhttptest version")
    summary = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", report[max(0, last) :]).strip()
    ok = [took for _, status, took in probe.samples if status == "200"]
    other = sorted({status for _, status, _ in probe.samples if status != "200"})
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    emfile = "yes" if "Too many open files" in gateway_log else "no"
    lines = [
        f"# slowhttptest -B against the gateway ({when})",
        "",
        "Produced by `benchmarks/slowhttptest/run.py "
        + shlex.join(sys.argv[1:] if argv is None else argv)
        + "`; the gateway: "
        + ", ".join(f"{k}={v}" for k, v in env.items() if k.startswith(("CLIENT", "GATEWAY_MAX")))
        + (f" (the gateway/ package of {args.ref})" if args.ref else ""),
        "",
        "    " + shlex.join(command),
        "",
        "## slowhttptest's summary (last status block)",
        "",
        *(("    " + line).rstrip() for line in summary.splitlines()),
        "",
        "## connection states (slowhttptest's CSV, every 5 s)",
        "",
    ]
    table = states(args.out / "slowbody.csv", 5)
    # Its CSV marks "service available" with the connection target, 0 when the probe failed.
    table = [table[0]] + [[*row[:-1], "yes" if row[-1] != "0" else "NO"] for row in table[1:]]
    lines.append("| " + " | ".join(table[0]) + " |")
    lines.append("|" + " --- |" * len(table[0]))
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    lines += [
        "",
        f"## a normal client on {PROBE_FROM} meanwhile (GET /api/hello, new connection each)",
        "",
        f"- {len(probe.samples)} probes, {len(ok)} answered 200"
        + (f"; others: {', '.join(other)}" if other else ""),
    ]
    if ok:
        ok_ms = sorted(t * 1000 for t in ok)
        lines.append(
            f"- latency ms: median {statistics.median(ok_ms):.2f}, "
            f"p95 {ok_ms[int(0.95 * (len(ok_ms) - 1))]:.2f}, max {ok_ms[-1]:.2f}"
        )
    lines += [
        "",
        "## the gateway's own counters (operator port /metrics)",
        "",
        f"- connections refused at a cap: {counters or 'no such counter (no operator port)'}",
        f"- 'Too many open files' in its log: {emfile}",
        f"- tracebacks in its log: {gateway_log.count('Traceback')}",
        "",
    ]
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
