"""Locust as a real headless subprocess: the one way authbench drives load.

`authbench bench` (loadtests/locustfile.py, one cell at a time) and `authbench chaos`
(loadtests/chaos_locustfile.py, every mode at once, see chaos/load.py) both use it; the
process is started by `authbench.process.spawn` (it dies with us, in a group of its own).
The API:

    job = LocustJob(host="http://127.0.0.1:28000", user_classes=("JwtUser",),
                    out_dir=cell_dir, users=20, run_time_s=25, warmup_s=10, pacing_s=0.05)
    outputs = run(job)              # blocks until Locust exits (bounded by a timeout)
    # or, to do something while the load runs (a chaos scenario):
    process = start(job)
    process.wait_capture_start()    # wall time when the warm-up ended (stats reset)
    ...                             # kill Redis, pause it, ...
    outputs = process.wait()        # or process.stop() to end early; CSVs are still written

`outputs` (LocustOutputs) knows the paths of what Locust wrote under `out_dir`:
`<prefix>_stats.csv`, `<prefix>_stats_history.csv` (one row per second, for time series),
`<prefix>_failures.csv` (with reasons), `<prefix>_exceptions.csv`, `<prefix>.html`,
`<prefix>_histogram.json` (raw response-time buckets and failures as they were at test
stop, see statistics.py; Locust's own CSVs are its last periodic write and may miss the
final second), `<prefix>.log` and the capture markers (with `csv=False`, only the log).
User classes come from `job.locustfile`; the options of loadtests/locustfile.py (accounts,
relogin and refresh rates, pacing, warm-up), which the chaos locustfile shares, are passed
as its AUTHBENCH_* environment variables, so they also reach `--processes` children.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from authbench import process as processes
from authbench.process import PROJECT_ROOT
from authbench.targets.external import split_address

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "locustfile.py"


@dataclass(frozen=True)
class LocustJob:
    host: str | None  # None: each user class names its own host (the chaos locustfile)
    user_classes: tuple[str, ...]
    out_dir: Path
    locustfile: Path = LOCUSTFILE
    users: int = 10
    spawn_rate: float = 0.0  # users started per second; 0 = all at once
    run_time_s: float = 30.0  # including the warm-up: a bound, the capture ends it sooner
    warmup_s: float = 0.0  # stats are reset this long after the start
    pacing_s: float = 0.0  # seconds between task starts per user; 0 = closed loop
    processes: int = 1  # > 1: Locust --processes (one generator per core)
    accounts: int = 1000
    relogin_prob: float = 0.005
    refresh_prob: float = 0.01
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment (shape sizes)
    prefix: str = "locust"
    html: bool = True  # Locust's own HTML report (~1 MB each: it embeds its scripts)
    csv: bool = True  # Locust's CSVs, the raw histogram and the capture markers
    stop_timeout_s: float = 1.0  # what users may finish after a stop
    loglevel: str | None = None  # Locust's --loglevel (its default: INFO)
    options: tuple[str, ...] = ()  # the locustfile's own command-line options
    # The web UI on 127.0.0.1:<web_port> while the job runs (`bench --live`); None:
    # headless. Either way the job starts at once and ends by itself (--autostart with
    # --autoquit instead of --headless), so the bench runs the same with a watcher or not.
    web_port: int | None = None
    # Distributed load: > 0, the master listens on `master_bind` (HOST:PORT) and waits up to
    # `worker_wait_s` for this many workers besides its own `processes`; those join by
    # address exactly as a remote `authbench loadgen --master HOST:PORT` does (one path).
    expect_workers: int = 0
    master_bind: str = "127.0.0.1:5557"
    worker_wait_s: float = 120.0


@dataclass(frozen=True)
class LocustOutputs:
    out_dir: Path
    prefix: str
    returncode: int | None = None

    def _path(self, suffix: str) -> Path:
        return self.out_dir / f"{self.prefix}{suffix}"

    @property
    def stats_csv(self) -> Path:
        return self._path("_stats.csv")

    @property
    def failures_csv(self) -> Path:
        return self._path("_failures.csv")

    @property
    def html(self) -> Path:
        return self._path(".html")

    @property
    def histogram_json(self) -> Path:
        return self._path("_histogram.json")

    @property
    def log(self) -> Path:
        return self._path(".log")

    @property
    def marker_dir(self) -> Path:
        return self.out_dir / "markers"

    def marker_time(self, name: str) -> float | None:
        """Wall time written by the locustfile (capture_start / capture_end), if any."""
        try:
            return float((self.marker_dir / name).read_text())
        except (OSError, ValueError):
            return None


def command(job: LocustJob) -> list[str]:
    """The Locust command line for a job (also shown in the manifest)."""
    out = job.out_dir / job.prefix
    if job.web_port is None:
        ui = ["--headless"]
    else:
        ui = ["--autostart", "--autoquit", "1", "--web-host", "127.0.0.1"]
        ui += ["--web-port", str(job.web_port)]
    argv = [
        sys.executable, "-m", "locust", "-f", str(job.locustfile), *ui,
        "--only-summary", "--exit-code-on-error", "0", "--stop-timeout", f"{job.stop_timeout_s:g}",
    ]  # fmt: skip
    if job.host is not None:
        argv += ["--host", job.host]
    if job.csv:
        argv += ["--csv", str(out), "--csv-full-history"]
    if job.html:
        argv += ["--html", f"{out}.html"]
    if job.loglevel:
        argv += ["--loglevel", job.loglevel]
    rate = job.spawn_rate if job.spawn_rate > 0 else float(job.users)
    argv += ["-u", str(job.users), "-r", f"{rate:g}", "-t", f"{max(1, round(job.run_time_s))}s"]
    if job.expect_workers > 0:
        return distributed_command(job, [*argv, *job.options, *job.user_classes])
    if job.processes > 1:
        argv += ["--processes", str(job.processes)]
    return [*argv, *job.options, *job.user_classes]


def worker_command(
    master: str, locustfile: Path = LOCUSTFILE, processes: int = 1, loglevel: str | None = None
) -> list[str]:
    """A Locust worker (or `processes` of them) joining the master at HOST:PORT: what
    `authbench loadgen` runs on another host, and what a distributed bench runs locally.
    The master hands it the host, the users and the locustfile's options (Locust sends its
    custom arguments with each spawn), so the worker needs only the same locustfile."""
    host, port = split_address(master)
    argv = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--worker",
        "--master-host", host, "--master-port", str(port),
    ]  # fmt: skip
    if processes > 1:
        argv += ["--processes", str(processes)]
    if loglevel:
        argv += ["--loglevel", loglevel]
    return argv


def distributed_command(job: LocustJob, master_argv: list[str]) -> list[str]:
    """The master on `job.master_bind`, waiting for `processes + expect_workers` workers,
    and its own `processes` as workers that join by address like the remote ones.

    One `sh` starts the local workers in the background and then becomes the master
    (`exec`), so the workers are the master's children: one process tree, whose CPU the
    bench measures as the load generator's, in one process group that `stop` ends."""
    host, port = split_address(job.master_bind)
    master = [
        *master_argv[:5], "--master", "--master-bind-host", host,
        "--master-bind-port", str(port), "--expect-workers",
        str(job.processes + job.expect_workers),
        "--expect-workers-max-wait", f"{max(1, round(job.worker_wait_s))}",
        *master_argv[5:],
    ]  # fmt: skip
    local = "127.0.0.1" if host in ("0.0.0.0", "*", "") else host  # a bind to every address
    workers = worker_command(f"{local}:{port}", job.locustfile, job.processes, job.loglevel)
    return ["sh", "-c", f"{shlex.join(workers)} & exec {shlex.join(master)}"]


def environment(job: LocustJob, outputs: LocustOutputs) -> dict[str, str]:
    env = {
        "AUTHBENCH_ACCOUNTS": str(job.accounts),
        "AUTHBENCH_RELOGIN_PROB": f"{job.relogin_prob:g}",
        "AUTHBENCH_REFRESH_PROB": f"{job.refresh_prob:g}",
        "AUTHBENCH_PACING_S": f"{job.pacing_s:g}",
        "AUTHBENCH_WARMUP_S": f"{job.warmup_s:g}",
    }
    if job.csv:
        env.update(
            AUTHBENCH_HISTOGRAM_OUT=str(outputs.histogram_json),
            AUTHBENCH_MARKER_DIR=str(outputs.marker_dir),
        )
    # Our own LOCUST_* variables would override the command line: leave them out.
    return processes.python_env({**env, **job.env}, drop=("LOCUST_",))


class LocustProcess:
    """A running Locust; `wait()` or `stop()` returns its outputs."""

    def __init__(self, job: LocustJob) -> None:
        self.job = job
        job.out_dir.mkdir(parents=True, exist_ok=True)
        self.outputs = LocustOutputs(job.out_dir, job.prefix)
        for name in ("capture_start", "capture_end"):
            (self.outputs.marker_dir / name).unlink(missing_ok=True)
        self.argv = command(job)
        self.popen = processes.spawn(
            self.argv, self.outputs.log, env=environment(job, self.outputs), append=False
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_capture_start(self, timeout_s: float | None = None) -> float | None:
        """Block until the warm-up is over; the wall time it ended, None if Locust died."""
        limit = timeout_s if timeout_s is not None else self.job.warmup_s + 30.0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            at = self.outputs.marker_time("capture_start")
            if at is not None:
                return at
            if not self.alive():
                return None
            time.sleep(0.05)
        return None

    def wait_file(self, path: Path, timeout_s: float) -> bool:
        """Block until `path` exists (a locustfile's signal); False if Locust died or
        `timeout_s` ran out first."""
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if not self.alive() or time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def wait(self, timeout_s: float | None = None) -> LocustOutputs:
        """Wait for Locust to finish on its own (run time or shape); stop it when late."""
        limit = timeout_s if timeout_s is not None else self.job.run_time_s + 60.0
        try:
            self.popen.wait(limit)
        except subprocess.TimeoutExpired:
            return self.stop()
        return self._done()

    def stop(self, grace_s: float = 15.0) -> LocustOutputs:
        """End the run now: SIGTERM lets Locust write its CSVs; SIGKILL if it hangs."""
        if self.alive():
            # The master alone: it stops its --processes workers itself.
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                processes.signal_group(self.popen, signal.SIGKILL)  # only our Locust's group
                self.popen.wait()
        return self._done()

    def _done(self) -> LocustOutputs:
        return LocustOutputs(self.job.out_dir, self.job.prefix, self.popen.returncode)


def start(job: LocustJob) -> LocustProcess:
    return LocustProcess(job)


def run(job: LocustJob, timeout_s: float | None = None) -> LocustOutputs:
    process = start(job)
    try:
        return process.wait(timeout_s)
    except BaseException:
        process.stop(grace_s=5.0)
        raise
