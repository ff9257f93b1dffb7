"""Record every request's time in µs into HdrHistograms, in every Locust process.

Imported by the locustfiles; it adds one option, `--hdr-dir` (env AUTHBENCH_HDR_DIR).
When it is set, each process that makes requests (a standalone runner, or each worker:
`--processes` children and remote `authbench loadgen` workers alike) keeps two histograms,
`reads` (GET /api/...: the authenticated reads) and `all`, plus the CPU it spends in the
window (`time.process_time`). `authbench.bench.latency` merges them.

Only the capture window is recorded. The locustfile calls `begin_capture()` on the master
(or standalone runner) when the warm-up ends; it drops what the local histograms hold and
tells every worker to do the same, with the wall time at which the window closes (workers
run on the same clock when they are `--processes` children; distributed workers should
run NTP). A request is recorded when it *finishes* inside the window.

Where the figures go: a standalone runner writes `<hdr-dir>/hdr-<pid>.json` when its test
stops. A worker sends its histograms and CPU to the master by a Locust message just after
the window closes, and the master writes `<hdr-dir>/hdr-<worker id>.json`: a worker on
another host has no `<hdr-dir>`, and its CPU is out of the bench's reach. The master waits
(`await_reports`, bounded) for every worker's report before it quits.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from authbench.bench import latency

MESSAGE = "authbench_hdr_capture"
REPORT = "authbench_hdr_report"  # worker -> master: histograms and CPU of the window
REPORT_DELAY_S = 0.25  # after the window closes: requests finishing at the edge are in
READ_METHOD, READ_PREFIX = "GET", "/api/"


class _Recorder:
    """This process's histograms, the capture window it records, and its CPU in it."""

    def __init__(self) -> None:
        self.histograms = {name: latency.new_histogram() for name in latency.SERIES}
        self.open_at = 0.0  # wall time; 0: the window has not opened
        self.close_at = float("inf")
        self.cpu_at_open = 0.0
        self.reported = False

    def begin(self, close_at: float) -> None:
        for histogram in self.histograms.values():
            histogram.reset()
        self.open_at = time.time()
        self.close_at = close_at
        self.cpu_at_open = time.process_time()
        self.reported = False

    def record(self, method: str, name: str, response_time_ms: float) -> None:
        if not self.open_at:
            return
        if time.time() > self.close_at:
            return
        latency.record_ms(self.histograms["all"], response_time_ms)
        if method == READ_METHOD and name.startswith(READ_PREFIX):
            latency.record_ms(self.histograms["reads"], response_time_ms)

    def cpu(self) -> latency.ProcessCpu:
        """CPU spent since the window opened, over the window's length so far."""
        end = min(time.time(), self.close_at)
        return latency.ProcessCpu(
            socket.gethostname(), time.process_time() - self.cpu_at_open, end - self.open_at
        )

    def report(self) -> dict[str, Any]:
        cpu = self.cpu()
        return {
            "pid": os.getpid(),
            "host": cpu.host,
            "cpu_s": cpu.cpu_s,
            "window_s": cpu.window_s,
            "histograms": {name: latency.encode(h) for name, h in self.histograms.items()},
        }


_RECORDER = _Recorder()
_RECEIVED: set[str] = set()  # master: the workers whose report has arrived


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_kwargs: Any) -> None:
    parser.add_argument(
        "--hdr-dir",
        env_var="AUTHBENCH_HDR_DIR",
        default="",
        help="write each process's µs HdrHistograms (capture window only) into this folder",
    )


def _hdr_dir(environment: Any) -> str:
    options = environment.parsed_options
    return str(getattr(options, "hdr_dir", "") or "") if options is not None else ""


def _send_report(environment: Any) -> None:
    """Worker: the window's histograms and CPU to the master (once per window)."""
    if _RECORDER.reported or not _RECORDER.open_at:
        return
    _RECORDER.reported = True
    environment.runner.send_message(REPORT, _RECORDER.report())


@events.init.add_listener
def _on_init(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):

        def on_capture(msg: Any, **_kw: Any) -> None:
            close_at = float(msg.data["close_at"])
            _RECORDER.begin(close_at)
            if close_at != float("inf"):
                wait = max(0.0, close_at - time.time()) + REPORT_DELAY_S
                gevent.spawn_later(wait, _send_report, environment)

        runner.register_message(MESSAGE, on_capture)
    elif isinstance(runner, MasterRunner):

        def on_report(msg: Any, **_kw: Any) -> None:
            worker = str(msg.node_id)
            _RECEIVED.add(worker)
            directory = _hdr_dir(environment)
            if not directory:
                return
            data = msg.data
            latency.write_process_file(
                Path(directory),
                worker,
                "worker",
                {name: latency.decode(str(text)) for name, text in data["histograms"].items()},
                latency.ProcessCpu(
                    str(data["host"]), float(data["cpu_s"]), float(data["window_s"])
                ),
            )

        runner.register_message(REPORT, on_report)


@events.request.add_listener
def _on_request(request_type: str, name: str, response_time: float | None, **_kwargs: Any) -> None:
    if response_time is not None:
        _RECORDER.record(request_type, name, float(response_time))


def begin_capture(environment: Any, capture_s: float) -> None:
    """The warm-up is over: open the window here and in every worker (master side)."""
    close_at = time.time() + capture_s if capture_s > 0 else float("inf")
    _RECORDER.begin(close_at)
    if isinstance(environment.runner, MasterRunner):
        _RECEIVED.clear()
        environment.runner.send_message(MESSAGE, {"close_at": close_at})


def await_reports(environment: Any, timeout_s: float = 5.0) -> int:
    """Master, once the window has closed: wait (at most `timeout_s`) until every connected
    worker's report is in; how many are. A worker that never reports (it died) costs the
    timeout and is missing from the figures, not the run."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not set(runner.clients.keys()) <= _RECEIVED:
        gevent.sleep(0.05)
    return len(_RECEIVED)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _send_report(environment)  # a window that never closed (no --capture): best effort
        return
    directory = _hdr_dir(environment)
    if not directory or isinstance(runner, MasterRunner):
        return  # the master makes no requests: its workers' reports are written as they come
    latency.write_process_file(
        Path(directory), os.getpid(), "standalone", _RECORDER.histograms, _RECORDER.cpu()
    )
