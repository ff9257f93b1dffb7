"""Record every request's time in µs into HdrHistograms, in every Locust process.

Imported by the locustfiles; it adds one option, `--hdr-dir` (env AUTHBENCH_HDR_DIR).
When it is set, each process that makes requests (a standalone runner, or each
`--processes` / distributed worker) keeps two histograms, `reads` (GET /api/...: the
authenticated reads) and `all`, and writes them to `<hdr-dir>/hdr-<pid>.json` when its
test stops; `authbench.bench.latency` merges the files.

Only the capture window is recorded. The locustfile calls `begin_capture()` on the master
(or standalone runner) when the warm-up ends; it drops what the local histograms hold and
tells every worker to do the same, with the wall time at which the window closes (workers
run on the same clock when they are `--processes` children; distributed workers should
run NTP). A request is recorded when it *finishes* inside the window.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from authbench.bench import latency

MESSAGE = "authbench_hdr_capture"
READ_METHOD, READ_PREFIX = "GET", "/api/"


class _Recorder:
    """This process's histograms and the capture window it records."""

    def __init__(self) -> None:
        self.histograms = {name: latency.new_histogram() for name in latency.SERIES}
        self.open_at = 0.0  # wall time; 0: the window has not opened
        self.close_at = float("inf")

    def begin(self, close_at: float) -> None:
        for histogram in self.histograms.values():
            histogram.reset()
        self.open_at = time.time()
        self.close_at = close_at

    def record(self, method: str, name: str, response_time_ms: float) -> None:
        if not self.open_at:
            return
        if time.time() > self.close_at:
            return
        latency.record_ms(self.histograms["all"], response_time_ms)
        if method == READ_METHOD and name.startswith(READ_PREFIX):
            latency.record_ms(self.histograms["reads"], response_time_ms)


_RECORDER = _Recorder()


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


@events.init.add_listener
def _on_init(environment: Any, **_kwargs: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):

        def on_capture(msg: Any, **_kw: Any) -> None:
            _RECORDER.begin(float(msg.data["close_at"]))

        environment.runner.register_message(MESSAGE, on_capture)


@events.request.add_listener
def _on_request(request_type: str, name: str, response_time: float | None, **_kwargs: Any) -> None:
    if response_time is not None:
        _RECORDER.record(request_type, name, float(response_time))


def begin_capture(environment: Any, capture_s: float) -> None:
    """The warm-up is over: open the window here and in every worker (master side)."""
    close_at = time.time() + capture_s if capture_s > 0 else float("inf")
    _RECORDER.begin(close_at)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.send_message(MESSAGE, {"close_at": close_at})


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    directory = _hdr_dir(environment)
    if not directory or isinstance(environment.runner, MasterRunner):
        return  # the master makes no requests: its workers write their own files
    role = "worker" if isinstance(environment.runner, WorkerRunner) else "standalone"
    latency.write_process_file(Path(directory), os.getpid(), role, _RECORDER.histograms)
