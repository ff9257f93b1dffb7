"""`authbench loadgen`: a Locust worker that joins a bench's master by address.

The distributed half of `authbench bench --expect-workers K`: run this on each load
host, pointing at the host running the bench. The worker is the same Locust worker the
bench starts locally for `--processes` (authbench.bench.locust_runner.worker_command):
the master hands it the target host, the users and the locustfile's options with each
spawn, so nothing but the address is configured here.

Each bench cell starts a fresh master, and a Locust worker quits when its master does,
so by default the worker is started again after each run and rejoins the next cell's
master; `--once` ends after one run. Ctrl-C or SIGTERM stops it.

    authbench loadgen --master 10.0.0.5:5557 --processes 4   # 4 generators on this host
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from authbench import modes
from authbench.bench.locust_runner import worker_command
from authbench.process import python_env
from authbench.targets.external import split_address

LOCUSTFILES = {"bench": modes.BENCH_LOCUSTFILE, "chaos": modes.CHAOS_LOCUSTFILE}
RESTART_PAUSE_S = 1.0  # between a worker's end and the next one (a master not up yet)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "loadgen",
        help="a Locust worker that joins a bench's master (distributed load)",
        description="Join the Locust master of `authbench bench --expect-workers K "
        "--master-bind HOST:PORT` from this host (or any other with authbench installed) and "
        "generate load as it directs: the master sends the target, the users and every "
        "locustfile option. By default the worker rejoins after each cell's master ends; "
        "Ctrl-C stops it. The same thing with Locust alone: `locust -f "
        "loadtests/locustfile.py --worker --master-host HOST --master-port PORT`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--master", required=True, metavar="HOST:PORT", help="the bench's --master-bind address"
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes on this host (one per core)"
    )
    parser.add_argument(
        "--locustfile",
        default="bench",
        help="bench or chaos (the project's locustfiles), or a path; it must be the one the "
        "master runs",
    )
    parser.add_argument("--once", action="store_true", help="end after one run of the master")
    parser.add_argument("--loglevel", default="INFO", help="Locust's log level")
    parser.set_defaults(func=run)


def locustfile_path(name: str) -> Path:
    """A locustfile by its short name (bench, chaos) or its path; ValueError if missing."""
    if name in LOCUSTFILES:
        return modes.UserClass(LOCUSTFILES[name], "").locustfile
    path = Path(name)
    if not path.is_file():
        raise ValueError(f"--locustfile: no such file {name!r} (or use bench or chaos)")
    return path.resolve()


def run(args: argparse.Namespace) -> int:
    try:
        split_address(args.master)
        locustfile = locustfile_path(args.locustfile)
        if args.processes < 1:
            raise ValueError("--processes must be at least 1")
    except ValueError as err:
        print(f"authbench loadgen: {err}", file=sys.stderr)
        return 2
    argv = worker_command(args.master, locustfile, args.processes, args.loglevel)
    stopping = False
    worker: subprocess.Popen[bytes] | None = None

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runs = 0
    code = 0
    while not stopping:
        print(f"authbench loadgen: joining the master at {args.master}", flush=True)
        # Our own LOCUST_* variables would override the master's orders: leave them out.
        worker = subprocess.Popen(argv, env=python_env(drop=("LOCUST_",)), stdin=subprocess.DEVNULL)
        code = worker.wait()
        runs += 1
        print(f"authbench loadgen: worker run {runs} ended (exit {code})", flush=True)
        if args.once:
            break
        time.sleep(RESTART_PAUSE_S)
    return 0 if stopping else code
