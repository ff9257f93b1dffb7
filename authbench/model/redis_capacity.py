"""One Redis core's capacity on this machine, measured with redis-benchmark.

Starts its own redis-server on a free loopback port (pinned to one core when taskset
exists), runs `redis-benchmark -n N -c 50` without pipelining for each command the modes
send on the read path (GETEX: a session lookup; EXISTS: a denylist check; GET: JWT mode's
occasional commands), and records for each command both the wall-clock ops/s and Redis's
own CPU seconds per command (INFO `used_cpu_user + used_cpu_sys` over the run), each
`--repeats` times with the median kept and every repeat recorded. The model
uses the CPU figure: by the utilisation law it is the capacity of a core Redis has to
itself (1 / CPU per command), unaffected by other processes sharing the machine.

    python -m authbench.model.redis_capacity OUT.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEYS = 100_000  # distinct keys, as many sessions
VALUE_BYTES = 120  # about one session record (user, times) as stored

# The read-path command of each mode, as the replicas send it.
COMMANDS: dict[str, list[str]] = {
    "GETEX": ["GETEX", "key:__rand_int__", "EX", "300"],
    "EXISTS": ["EXISTS", "key:__rand_int__"],
    "GET": ["GET", "key:__rand_int__"],
}


def _info_cpu(port: int) -> float:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "cpu"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def _free_port() -> int:
    # The kernel's pick of an unused loopback port; never one of the contract's fixed ports.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(core: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else argv


def _bench_once(
    port: int, command: list[str], requests: int, clients: int, keys: int
) -> dict[str, float]:
    before = _info_cpu(port)
    started = time.monotonic()
    argv = ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", str(clients)]
    argv += ["-r", str(keys), "--csv", *command]
    bench = subprocess.run(
        _pinned(0, argv), capture_output=True, text=True, timeout=300, check=True
    )
    wall = time.monotonic() - started
    cpu = _info_cpu(port) - before
    line = [row for row in bench.stdout.splitlines() if row.startswith('"')][-1]
    return {
        "ops_per_s_wall": float(line.split(",")[1].strip('"')),
        "cpu_s_per_op": cpu / requests,
        "wall_s": round(wall, 2),
    }


def measure(requests: int = 200_000, clients: int = 50, repeats: int = 3) -> dict[str, Any]:
    """Run redis-benchmark `repeats` times per command against a private redis-server."""
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not on PATH (Debian package redis-server/redis-tools)")
    port = _free_port()
    server_argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server_argv += ["--appendonly", "no"]
    server = subprocess.Popen(
        _pinned(1, server_argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    results: dict[str, Any] = {}
    keys = min(KEYS, requests)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, timeout=5
        ).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.1)
        # The keys exist, as sessions do: GETEX and EXISTS find a value of a session's size.
        fill = ["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(keys * 2)]
        fill += ["-r", str(keys), "-d", str(VALUE_BYTES), "-c", str(clients), "-q"]
        subprocess.run(fill, capture_output=True, timeout=300, check=True)
        for name, command in COMMANDS.items():
            runs = [_bench_once(port, command, requests, clients, keys) for _ in range(repeats)]
            cpu = statistics.median(r["cpu_s_per_op"] for r in runs)
            results[name] = {
                "ops_per_s_wall": statistics.median(r["ops_per_s_wall"] for r in runs),
                "cpu_s_per_op": cpu,  # the median over the repeats
                "ops_per_s_one_core": 1.0 / cpu if cpu > 0 else None,
                "repeats": runs,
            }
    finally:
        server.terminate()
        server.wait(timeout=10)
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    return {
        "kind": "redis-capacity",
        "measured_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"redis-benchmark -n {requests} -c {clients} -r {keys} --csv <command>",
        "keys": f"{keys} keys of {VALUE_BYTES} bytes, filled first with SET",
        "repeats": repeats,
        "pipelining": False,
        "pinned": shutil.which("taskset") is not None,
        "redis_server": version,
        "machine": {"platform": platform.platform(), "loadavg": [float(x) for x in load]},
        "commands": results,
    }


def load(path: Path) -> dict[str, Any]:
    """A file written by `measure` (raises ValueError if it is not one)."""
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("kind") != "redis-capacity" or not isinstance(data.get("commands"), dict):
        raise ValueError(f"{path} is not a redis-capacity file")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbench.model.redis_capacity",
        description="Measure one Redis core's capacity for GETEX, EXISTS and GET with "
        "redis-benchmark (no pipelining, 50 clients) against a private redis-server on a "
        "free loopback port, and write it as JSON for `authbench model --redis-capacity`.",
    )
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("-n", "--requests", type=int, default=200_000, help="per command")
    parser.add_argument("-c", "--clients", type=int, default=50, help="parallel connections")
    parser.add_argument("--repeats", type=int, default=3, help="runs per command (median kept)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.clients < 1 or args.repeats < 1:
        parser.error("--requests, --clients and --repeats must be >= 1")
    try:
        data = measure(args.requests, args.clients, args.repeats)
    except (RuntimeError, subprocess.SubprocessError, OSError) as err:
        print(f"redis_capacity: {err}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    for name, figures in data["commands"].items():
        print(
            f"{name}: {figures['ops_per_s_wall']:,.0f} ops/s wall, "
            f"{figures['cpu_s_per_op'] * 1e6:.2f} µs CPU per command"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
