"""The gateway ends slow request heads (408) and idle keep-alive connections, and leaves
busy keep-alive clients alone."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import GatewayRig, start_rig, stop_rig

pytestmark = pytest.mark.slow  # waits out the gateway's client timeouts


@pytest.fixture(scope="module")
def strict_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayRig]:
    tmp: Path = tmp_path_factory.mktemp("timeout-rig")
    started = start_rig(tmp, env={"CLIENT_HEADER_TIMEOUT_S": "2", "CLIENT_IDLE_TIMEOUT_S": "2"})
    yield started
    stop_rig(started.processes)


def _connect(rig: GatewayRig) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", rig.port), timeout=10)
    sock.settimeout(0.1)
    return sock


def _read_all(sock: socket.socket, until: float) -> bytes:
    """Read until the gateway closes, or `until` (monotonic) passes."""
    data = b""
    while time.monotonic() < until:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            return data + b"<closed>"
        data += chunk
    return data


def test_a_head_sent_a_byte_at_a_time_gets_408_and_a_close(strict_rig: GatewayRig) -> None:
    sock = _connect(strict_rig)
    started = time.monotonic()
    answer = b""
    try:
        sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - started < 8 and b"<closed>" not in answer:
            try:
                sock.sendall(b"X")  # a slowloris: the head never ends
            except (BrokenPipeError, ConnectionResetError):
                break
            answer += _read_all(sock, time.monotonic() + 0.3)
        answer += _read_all(sock, time.monotonic() + 1)
    finally:
        sock.close()
    elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"408", answer[:200]
    assert json.loads(body.replace(b"<closed>", b""))["error"] == "request_timeout"
    assert 1.5 < elapsed < 5.0, elapsed


def test_an_idle_connection_is_closed(strict_rig: GatewayRig) -> None:
    sock = _connect(strict_rig)
    started = time.monotonic()
    try:
        assert _read_all(sock, started + 6) == b"<closed>"
    finally:
        sock.close()
    assert 1.5 < time.monotonic() - started < 5.0


def test_a_busy_keep_alive_client_is_not_cut_off(strict_rig: GatewayRig) -> None:
    sock = _connect(strict_rig)
    try:
        for _ in range(12):  # ~3.6 s of use on one connection: past both 2 s limits
            sock.sendall(b"GET /api/me HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 2
            reply = b""
            while b"\r\n\r\n" not in reply and time.monotonic() < deadline:
                try:
                    reply += sock.recv(65536)
                except TimeoutError:
                    continue
            assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
            _read_all(sock, time.monotonic() + 0.3)  # the body, and a pause
    finally:
        sock.close()
