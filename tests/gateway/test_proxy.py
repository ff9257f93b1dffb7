"""Issue 7: the gateway's own HTTP path (asyncio protocols + llhttp) keeps a proxy's
behaviour: header hygiene, request IDs, streaming, limits, keep-alive, retries, errors."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.client import request
from tests.gateway.conftest import GatewayRig, start_rig, stop_rig


def _headers(answer_json: dict[str, Any]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in answer_json["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def _raw(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send `payload` as-is and read until the gateway closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_identity_and_hop_by_hop_headers_never_reach_the_upstream(rig: GatewayRig) -> None:
    answer = request(
        rig.url,
        "GET",
        "/api/echo",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Real-IP": "6.6.6.6",
            "X-User": "admin",
            "Forwarded": "for=6.6.6.6",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "X-Kept": "yes",
            "Host": "evil.example",
        },
    )
    assert answer.status == 200
    seen = _headers(answer.json())
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["host"] == [f"127.0.0.1:{answer.json()['port']}"]
    assert seen["x-kept"] == ["yes"]
    for name in ("x-real-ip", "x-user", "forwarded", "connection", "x-secret", "keep-alive"):
        assert name not in seen, name


def test_request_id_is_kept_when_valid_and_replaced_when_not(rig: GatewayRig) -> None:
    kept = request(rig.url, "GET", "/api/echo", headers={"X-Request-Id": "abc-123_XYZ.42"})
    assert kept.headers["x-request-id"] == "abc-123_XYZ.42"
    assert _headers(kept.json())["x-request-id"] == ["abc-123_XYZ.42"]

    made = request(rig.url, "GET", "/api/echo", headers={"X-Request-Id": "<script>"})
    rid = made.headers["x-request-id"]
    assert re.fullmatch(r"[A-Za-z0-9._-]{8,64}", rid) and rid != "<script>"
    # The upstream saw the same ID; its own X-Request-Id never reaches the client.
    assert _headers(made.json())["x-request-id"] == [rid]
    other = request(rig.url, "GET", "/api/echo")
    assert other.headers["x-request-id"] not in (rid, "upstream-made-this-up")


def test_upstream_headers_pass_and_its_hop_by_hop_ones_do_not(rig: GatewayRig) -> None:
    answer = request(rig.url, "GET", "/api/echo")
    assert answer.headers["x-upstream"] == "echo"
    assert answer.headers["content-type"].startswith("application/json")
    assert int(answer.headers["content-length"]) == len(answer.body)


@pytest.mark.parametrize("length", [False, True], ids=["chunked", "content-length"])
def test_large_answers_stream_through_intact(rig: GatewayRig, length: bool) -> None:
    n = 5_000_000 + 7
    path = f"/api/big?n={n}" + ("&length=1" if length else "")
    answer = request(rig.url, "GET", path, timeout=20)
    assert answer.status == 200
    assert len(answer.body) == n
    block = b"0123456789abcdef" * 4096
    expected = (block * (n // len(block) + 1))[:n]
    assert hashlib.sha256(answer.body).digest() == hashlib.sha256(expected).digest()
    if length:
        assert answer.headers["content-length"] == str(n)
    else:
        assert answer.headers["transfer-encoding"] == "chunked"


def test_request_bodies_reach_the_upstream_whole(rig: GatewayRig) -> None:
    body = bytes(range(256)) * 200  # 51,200 bytes: under MAX_BODY_BYTES (64 KiB)
    answer = request(rig.url, "POST", "/api/echo", body=body)
    assert answer.status == 200
    echoed = answer.json()
    assert echoed["body_length"] == len(body)
    assert echoed["body_sha"] == hashlib.sha256(body).hexdigest()
    chunked = _raw(
        rig.port,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    head, _, payload = chunked.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(payload)["body_sha"] == hashlib.sha256(b"hello world").hexdigest()


def test_oversized_bodies_are_413_json_and_the_client_reads_the_answer(rig: GatewayRig) -> None:
    declared = request(rig.url, "POST", "/api/echo", body=b"x" * 200_000)
    assert declared.status == 413
    assert declared.json()["error"] == "payload_too_large"
    chunks = b"".join(b"8000\r\n" + b"y" * 0x8000 + b"\r\n" for _ in range(4))
    raw = _raw(
        rig.port,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert raw.split(b" ", 2)[1] == b"413"


def test_keep_alive_and_pipelined_requests_are_answered_in_order(rig: GatewayRig) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=5)
    try:
        for i in range(5):
            conn.request("GET", f"/api/echo/{i}")
            answer = conn.getresponse()
            assert json.loads(answer.read())["path"] == f"/api/echo/{i}"
    finally:
        conn.close()
    pipelined = (
        b"".join(b"GET /api/echo/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(6))
        + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    raw = _raw(rig.port, pipelined)
    paths = re.findall(rb'"path": "(/api/echo/\d)"', raw)
    assert paths == [b"/api/echo/%d" % i for i in range(6)]
    assert raw.count(b"HTTP/1.1 200") == 7


def test_http10_and_head_requests(rig: GatewayRig) -> None:
    raw = _raw(rig.port, b"GET /api/big?n=1000 HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and len(body) == 1000  # ends when we close
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=5)
    try:
        conn.request("HEAD", "/api/echo")
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read() == b""
        assert int(answer.getheader("Content-Length") or 0) > 0
        conn.request("GET", "/api/echo")  # the connection is still good after a HEAD
        assert json.loads(conn.getresponse().read())["method"] == "GET"
    finally:
        conn.close()


def test_no_open_proxy_and_no_detour_to_upstream_internals(rig: GatewayRig) -> None:
    absolute = _raw(
        rig.port,
        b"GET http://evil.example/api/echo HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n",
    )
    head, _, body = absolute.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["path"] == "/api/echo"  # our upstream, never evil.example
    # Dot segments are refused, never resolved: no detour to an upstream's internals.
    for path in ("/api/../healthz", "/api/%2e%2E/metrics", "/auth/./x", "/api/x/.."):
        answer = request(rig.url, "GET", path)
        assert answer.status == 400 and answer.json()["error"] == "bad_request", path
    assert request(rig.url, "GET", "/api/a.b/.c/..d").json()["path"] == "/api/a.b/.c/..d"
    two_hosts = _raw(rig.port, b"GET /api/echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert two_hosts.split(b" ", 2)[1] == b"400"
    for path in ("/", "/etc/passwd", "/apix", "/api"):
        answer = request(rig.url, "GET", path)
        assert answer.status == 404 and answer.json()["error"] == "not_found", path
    assert request(rig.url, "POST", "/healthz").status == 405


def test_parser_level_errors_are_json(rig: GatewayRig) -> None:
    for payload, status, code in [
        (b"\x16\x03\x01 not http\r\n\r\n", b"400", "bad_request"),
        (b"GET /api/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414", "uri_too_long"),
        (
            b"GET /api/x HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            b"431",
            "headers_too_large",
        ),
        (b"GET /api/x HTTP/1.1\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", b"431", "headers_too_large"),
    ]:
        head, _, body = _raw(rig.port, payload).partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == status, head[:60]
        assert json.loads(body)["error"] == code


def test_slow_upstream_is_504_json(rig: GatewayRig) -> None:
    answer = request(rig.url, "GET", "/api/slow?s=2")  # UPSTREAM_TIMEOUT_S=0.5 in the rig
    assert answer.status == 504
    assert set(answer.json()) == {"error", "detail"}
    assert request(rig.url, "GET", "/api/echo").status == 200


def test_a_dropped_get_is_retried_once_a_dropped_post_is_not(tmp_path: Path) -> None:
    rig = start_rig(tmp_path, env={"HEALTH_INTERVAL_S": "30"})  # no rejoin mid-test
    try:
        before = sum(
            request(f"http://127.0.0.1:{p}", "GET", "/api/drops").json()["drops"]
            for p in rig.upstream_ports
        )
        answer = request(rig.url, "GET", "/api/drop")
        assert answer.status == 502  # both upstreams dropped it: tried twice, then 502
        post = request(rig.url, "POST", "/api/drop", body=b"{}")
        assert post.status in (502, 503)  # 503 once both are ejected
        after = sum(
            request(f"http://127.0.0.1:{p}", "GET", "/api/drops").json()["drops"]
            for p in rig.upstream_ports
        )
        assert after - before == 2  # the GET twice, the POST never resent anywhere
        assert answer.json()["error"] == "bad_gateway"
    finally:
        stop_rig(rig.processes)


def test_an_answer_cut_midway_closes_the_client_connection(rig: GatewayRig) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=5)
    try:
        conn.request("GET", "/api/cut")
        answer = conn.getresponse()
        assert answer.status == 200
        with pytest.raises(http.client.IncompleteRead):
            answer.read()
    finally:
        conn.close()
    assert request(rig.url, "GET", "/api/echo").status == 200


def test_no_upstream_left_is_503_json(tmp_path: Path) -> None:
    rig = start_rig(tmp_path, upstreams=1)
    try:
        rig.processes[f"echo-{rig.upstream_ports[0]}"].kill()
        rig.processes[f"echo-{rig.upstream_ports[0]}"].wait()
        answer = request(rig.url, "GET", "/api/echo")
        assert answer.status in (502, 503)
        assert answer.json()["error"] in ("bad_gateway", "upstream_unavailable")
        again = request(rig.url, "GET", "/api/echo")
        assert again.status == 503 and "retry-after" in again.headers
        assert request(rig.url, "GET", "/readyz").status == 503
    finally:
        stop_rig(rig.processes)


def test_a_slow_reader_gets_a_large_answer_whole_and_the_pool_stays_usable(
    tmp_path: Path,
) -> None:
    rig = start_rig(tmp_path, env={"UPSTREAM_TIMEOUT_S": "10"}, upstreams=1)
    try:
        n = 8_000_000
        with socket.create_connection(("127.0.0.1", rig.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET /api/big?n=%d&length=1 HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            received = sock.recv(65536)
            time.sleep(0.5)  # the gateway's send buffer fills: it must pause the upstream
            head, _, body = received.partition(b"\r\n\r\n")
            got = len(body)
            while got < n:
                chunk = sock.recv(1 << 20)
                assert chunk, f"closed after {got} of {n} bytes"
                got += len(chunk)
            assert got == n and b"Content-Length: %d" % n in head
            sock.sendall(b"GET /api/echo HTTP/1.1\r\nHost: x\r\n\r\n")  # same connection
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        for _ in range(5):  # pooled upstream connections, paused or not before, all work
            assert request(rig.url, "GET", "/api/echo", timeout=5).status == 200
    finally:
        stop_rig(rig.processes)
