"""The cross-check's h2load side: the offered rate is kept and its µs percentiles are read
from h2load's per-request log, warm-up left out (real h2load against a real server)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from authbench.bench import crosscheck

DELAY_S = 0.005


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as h2load --h1 expects
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK wait

    def log_message(self, *_args: object) -> None:
        pass

    def do_GET(self) -> None:
        time.sleep(DELAY_S)
        body = b'{"user": "u"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("h2load") is None, reason=crosscheck.H2LOAD_MISSING)
def test_h2load_keeps_the_rate_and_reports_the_capture_in_us(
    server: ThreadingHTTPServer, tmp_path: Path
) -> None:
    settings = crosscheck.Settings(users=4, rate=20.0, warmup_s=1.0, capture_s=3.0)
    url = f"http://127.0.0.1:{server.server_port}"
    result = crosscheck.run_h2load(url, {"Authorization": "Bearer x"}, settings, tmp_path)
    assert result["statuses"] == {"200": result["requests"]}
    offered = settings.users * settings.rate
    assert 0.8 * offered <= result["rps"] <= 1.1 * offered  # the capture window only
    assert DELAY_S * 1e6 <= result["p50_us"] < DELAY_S * 1e6 + 10_000
    assert result["p50_us"] <= result["p99_us"] <= result["p999_us"]


def test_the_floor_locustfile_offers_its_anonymous_reader() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(crosscheck.FLOOR_LOCUSTFILE), "--list"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert crosscheck.FLOOR_USER in done.stdout.split()
    assert "SessionUser" not in done.stdout  # only the floor's user: no mode's
