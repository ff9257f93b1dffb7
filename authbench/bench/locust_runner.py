"""Locust as a real headless subprocess: the one way authbench drives load.

`authbench bench` and `authbench chaos` both use it. The API:

    job = LocustJob(host="http://127.0.0.1:28000", user_classes=("JwtUser",),
                    out_dir=cell_dir, users=20, run_time_s=25, warmup_s=10, pacing_s=0.05)
    outputs = run(job)              # blocks until Locust exits (bounded by a timeout)
    # or, to do something while the load runs (a chaos scenario):
    process = start(job)
    process.wait_capture_start()    # wall time when the warm-up ended (stats reset)
    ...                             # kill Redis, pause it, ...
    outputs = process.wait()        # or process.stop() to end early; CSVs are still written

`outputs` (LocustOutputs) holds the paths of what Locust wrote under `out_dir`:
`<prefix>_stats.csv`, `<prefix>_stats_history.csv` (one row per second, for time series),
`<prefix>_failures.csv` (with reasons), `<prefix>_exceptions.csv`, `<prefix>.html`,
`<prefix>_histogram.json` (raw response-time buckets and failures as they were at test
stop, see statistics.py; Locust's own CSVs are its last periodic write and may miss the
final second), `<prefix>.log` and the capture markers. User classes come from
`loadtests/locustfile.py`; the options of that file (accounts, relogin and refresh rates,
pacing, warm-up) are passed as its AUTHBENCH_* environment variables, so they also reach
`--processes` children.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from authbench.cluster import PROJECT_ROOT

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "locustfile.py"
SHAPES_DIR = PROJECT_ROOT / "loadtests" / "shapes"


@dataclass(frozen=True)
class LocustJob:
    host: str
    user_classes: tuple[str, ...]
    out_dir: Path
    users: int = 10
    spawn_rate: float = 0.0  # users started per second; 0 = all at once
    run_time_s: float = 30.0  # including the warm-up; ignored with a shape
    warmup_s: float = 0.0  # stats are reset this long after the start
    pacing_s: float = 0.0  # seconds between task starts per user; 0 = closed loop
    processes: int = 1  # > 1: Locust --processes (one generator per core)
    shape: str | None = None  # a module of loadtests/shapes/ (constant, step_ramp)
    accounts: int = 1000
    relogin_prob: float = 0.005
    refresh_prob: float = 0.01
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment (shape sizes)
    prefix: str = "locust"
    html: bool = True  # Locust's own HTML report (~1 MB each: it embeds its scripts)


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
    def history_csv(self) -> Path:
        return self._path("_stats_history.csv")

    @property
    def failures_csv(self) -> Path:
        return self._path("_failures.csv")

    @property
    def exceptions_csv(self) -> Path:
        return self._path("_exceptions.csv")

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
    files = str(LOCUSTFILE)
    if job.shape:
        files += f",{SHAPES_DIR / (job.shape + '.py')}"
    out = job.out_dir / job.prefix
    argv = [
        sys.executable, "-m", "locust", "-f", files, "--headless", "--host", job.host,
        "--csv", str(out), "--csv-full-history",
        "--only-summary", "--exit-code-on-error", "0", "--stop-timeout", "1",
    ]  # fmt: skip
    if job.html:
        argv += ["--html", f"{out}.html"]
    if not job.shape:
        rate = job.spawn_rate if job.spawn_rate > 0 else float(job.users)
        argv += ["-u", str(job.users), "-r", f"{rate:g}", "-t", f"{max(1, round(job.run_time_s))}s"]
    if job.processes > 1:
        argv += ["--processes", str(job.processes)]
    return [*argv, *job.user_classes]


def environment(job: LocustJob, outputs: LocustOutputs) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        PYTHONUNBUFFERED="1",
        AUTHBENCH_ACCOUNTS=str(job.accounts),
        AUTHBENCH_RELOGIN_PROB=f"{job.relogin_prob:g}",
        AUTHBENCH_REFRESH_PROB=f"{job.refresh_prob:g}",
        AUTHBENCH_PACING_S=f"{job.pacing_s:g}",
        AUTHBENCH_WARMUP_S=f"{job.warmup_s:g}",
        AUTHBENCH_HISTOGRAM_OUT=str(outputs.histogram_json),
        AUTHBENCH_MARKER_DIR=str(outputs.marker_dir),
    )
    env.update(job.env)
    return env


def _stop_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Even if we are SIGKILLed, Locust gets SIGTERM (PR_SET_PDEATHSIG): no orphan load."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class LocustProcess:
    """A running Locust; `wait()` or `stop()` returns its outputs."""

    def __init__(self, job: LocustJob) -> None:
        self.job = job
        job.out_dir.mkdir(parents=True, exist_ok=True)
        self.outputs = LocustOutputs(job.out_dir, job.prefix)
        for name in ("capture_start", "capture_end"):
            (self.outputs.marker_dir / name).unlink(missing_ok=True)
        self.argv = command(job)
        with self.outputs.log.open("wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=str(PROJECT_ROOT),
                env=environment(job, self.outputs),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop Locust ourselves
                preexec_fn=_stop_with_parent,
            )
        self.started_at = time.time()

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
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)  # its own group: only our Locust
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
