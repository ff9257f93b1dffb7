"""Property-based fuzzing of the gateway's header handling, through a real gateway.

The gateway (`python -m gateway`, a real process) forwards to an echo upstream that
answers with the headers it received, so each property checks what actually crosses the
trust boundary: no identity or trust header a client sent, X-Forwarded-For and
X-Forwarded-Proto set by the gateway alone, exactly one well-formed X-Request-Id, no
header smuggled in through CR/LF/NUL bytes, and never a 5xx for any of it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from authbench.process import PROJECT_ROOT, free_port_block
from authbench.targets.base import http_status
from tests.security import rawhttp
from tests.security.conftest import NETWORK_FUZZ

# What a client may never assert: who the user is, where the request came from, which
# replica it is for. (The contract's view, not a copy of the gateway's own list.)
IDENTITY_HEADERS = tuple(
    """
    X-User X-User-Id X-Authenticated-User X-Forwarded-User X-Remote-User Remote-User
    X-Auth-User X-Real-IP X-Client-IP True-Client-IP Forwarded X-Forwarded-Host
    X-Forwarded-Port X-Original-Forwarded-For X-Replica
    """.split()
)
GATEWAY_SET = ("X-Forwarded-For", "X-Forwarded-Proto", "X-Request-Id")
HOP_BY_HOP = ("Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Authorization")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


@dataclass
class Echo:
    port: int
    loop: asyncio.AbstractEventLoop
    runner: web.AppRunner
    thread: threading.Thread


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {"headers": [[k, v] for k, v in request.headers.items()], "path": request.raw_path}
    )


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _start_echo(port: int) -> Echo:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/healthz", _healthz)
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()

    def _run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=_run, daemon=True)
    thread.start()
    assert started.wait(10)
    return Echo(port, loop, runner, thread)


def _stop_echo(echo: Echo) -> None:
    asyncio.run_coroutine_threadsafe(echo.runner.cleanup(), echo.loop).result(10)
    echo.loop.call_soon_threadsafe(echo.loop.stop)
    echo.thread.join(10)
    echo.loop.close()


@dataclass
class Gateway:
    port: int
    echo_port: int
    log: Path


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    base = free_port_block()
    echo = _start_echo(base + 1)
    log = tmp_path_factory.mktemp("fuzz-gateway") / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    upstream = f"http://127.0.0.1:{echo.port}"
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        HOST="127.0.0.1",
        PORT=str(base),
        AUTH_URL=upstream,
        RESOURCE_URLS=upstream,
        LOG_LEVEL="DEBUG",
        HEALTH_INTERVAL_S="0.5",
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while http_status(f"http://127.0.0.1:{base}/readyz") != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.1)
        yield Gateway(base, echo.port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _stop_echo(echo)
    assert "Traceback" not in log.read_text(errors="replace")


def _send(gw: Gateway, headers: list[tuple[str, str]]) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    try:
        conn.putrequest("GET", "/api/echo", skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(body)
    finally:
        conn.close()


def _upstream_view(body: dict[str, Any]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in body["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


token_chars = st.characters(
    min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='()<>@,;:\\"/[]?={}'
)
header_name = st.one_of(
    st.sampled_from(IDENTITY_HEADERS + GATEWAY_SET + HOP_BY_HOP),
    st.text(token_chars, min_size=1, max_size=20).map(lambda s: "X-Fuzz-" + s),
)
header_value = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80
)


@NETWORK_FUZZ
@given(headers=st.lists(st.tuples(header_name, header_value), max_size=12))
def test_no_client_header_can_claim_identity_or_origin(
    gateway: Gateway, headers: list[tuple[str, str]]
) -> None:
    status, response_headers, body = _send(gateway, headers)
    assert status == 200, body
    seen = _upstream_view(body)
    for name in IDENTITY_HEADERS:
        assert name.lower() not in seen, name
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    (rid,) = seen["x-request-id"]
    assert REQUEST_ID.fullmatch(rid) and response_headers["x-request-id"] == rid
    sent_ids = [v for n, v in headers if n.lower() == "x-request-id"]
    if len(sent_ids) == 1 and REQUEST_ID.fullmatch(sent_ids[0]):
        assert rid == sent_ids[0]  # a well-formed client ID is kept for tracing
    elif sent_ids:
        assert rid not in sent_ids or REQUEST_ID.fullmatch(rid)
    for name in HOP_BY_HOP:
        assert name.lower() not in seen
    # Ordinary headers pass through untouched.
    for name, value in headers:
        if name.startswith("X-Fuzz-") and sum(n.lower() == name.lower() for n, _ in headers) == 1:
            assert seen.get(name.lower()) == [value]


@NETWORK_FUZZ
@given(
    others=st.lists(
        st.sampled_from(["Keep-Alive", "close", "Upgrade", "X-Fuzz-Other"]), max_size=3
    ),
    spelling=st.sampled_from(
        ["X-Fuzz-Secret", "x-fuzz-secret", "X-FUZZ-SECRET", " X-Fuzz-Secret "]
    ),
)
def test_headers_named_in_connection_are_not_forwarded(
    gateway: Gateway, others: list[str], spelling: str
) -> None:
    tokens = [*others, spelling]
    status, _, body = _send(
        gateway,
        [("Connection", ",".join(tokens)), ("X-Fuzz-Secret", "internal"), ("X-Fuzz-Kept", "1")],
    )
    assert status == 200
    seen = _upstream_view(body)
    assert "x-fuzz-secret" not in seen and "connection" not in seen
    assert seen["x-fuzz-kept"] == ["1"]


@NETWORK_FUZZ
@given(value=st.binary(min_size=1, max_size=60), position=st.integers(min_value=0, max_value=60))
def test_raw_bytes_in_a_header_never_smuggle_another_header(
    gateway: Gateway, value: bytes, position: int
) -> None:
    smuggle = b"\r\nX-User: admin\r\nX-Injected: 1"
    payload_value = value[:position] + smuggle + value[position:]
    request = (
        b"GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Fuzz: " + payload_value + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    answer = rawhttp.send(gateway.port, request)
    assert answer is not None
    assert answer.status < 500
    if answer.status != 200:
        assert answer.status in (400, 431) and set(answer.json()) == {"error", "detail"}
        return
    seen = _upstream_view(answer.json())
    # The injected line reached the gateway as a header of its own (CRLF is the line
    # end), but identity headers are stripped whatever their origin.
    assert "x-user" not in seen


@NETWORK_FUZZ
@given(value=st.binary(min_size=1, max_size=60))
def test_control_bytes_inside_a_header_value_are_refused_or_kept_inside_it(
    gateway: Gateway, value: bytes
) -> None:
    # No CRLF pair here: bare CR, bare LF, NUL and other control bytes inside one value.
    cleaned = value.replace(b"\r\n", b"")
    request = (
        b"GET /api/echo HTTP/1.1\r\nHost: x\r\nX-Fuzz-Value: v" + cleaned + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    answer = rawhttp.send(gateway.port, request)
    assert answer is not None and answer.status < 500
    if answer.status != 200:
        assert answer.status == 400 and answer.json()["error"] == "bad_request"
        return
    seen = _upstream_view(answer.json())
    assert set(seen) & {"x-user", "x-injected"} == set()
    assert b"\r" not in cleaned and b"\n" not in cleaned and b"\x00" not in cleaned
