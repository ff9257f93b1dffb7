"""Issue 11 (items 8 and 9): what the gateway lets through of HTTP/1.1's looser corners.

- Trailer fields of a chunked body never reach the upstream as headers (RFC 9110
  section 6.5.1), so an Authorization or Cookie sent only there authenticates nothing.
- An HTTP/1.1 request without Host is 400 (RFC 9112 section 3.2); HTTP/1.0 needs none.
- Any version but HTTP/1.0 and HTTP/1.1 is 400, and nothing is proxied.
"""

from __future__ import annotations

import pytest

from tests.gateway.conftest import GatewayRig
from tests.security import rawhttp


def _upstream_saw(answer: rawhttp.RawAnswer) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for name, value in answer.json()["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def test_trailer_fields_never_reach_the_upstream_as_headers(rig: GatewayRig) -> None:
    answer = rawhttp.send(
        rig.port,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: Authorization, Cookie, X-Trailed\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n0\r\n"
        b"Authorization: Bearer from-the-trailer\r\nCookie: sid=from-the-trailer\r\n"
        b"X-Trailed: 1\r\n\r\n",
    )
    assert answer is not None and answer.status == 200, answer
    seen = _upstream_saw(answer)
    for name in ("authorization", "cookie", "x-trailed", "trailer"):
        assert name not in seen, (name, seen.get(name))
    assert answer.json()["body_length"] == 5  # the body itself went through whole


def test_trailer_fields_count_against_the_body_limit(rig: GatewayRig) -> None:
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 4000) for i in range(20))  # 80 KB
    answer = rawhttp.send(
        rig.port,
        b"POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\n" + trailers + b"\r\n",
    )
    assert answer is not None and answer.status == 413
    assert answer.json()["error"] == "payload_too_large"


def test_an_http11_request_without_host_is_400(rig: GatewayRig) -> None:
    answer = rawhttp.send(rig.port, b"GET /api/echo HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer is not None and answer.status == 400
    assert answer.json() == {
        "error": "bad_request",
        "detail": "an HTTP/1.1 request needs exactly one Host header",
    }
    # HTTP/1.0 has no Host requirement: still served.
    old = rawhttp.send(rig.port, b"GET /api/echo HTTP/1.0\r\n\r\n")
    assert old is not None and old.status == 200


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /api/echo HTTP/2.0",
        b"GET /api/echo HTTP/0.9",
        b"GET /api/echo HTTP/1.2",
        b"GET /api/echo HTTP/3.0",
        b"PRI * HTTP/2.0",  # the HTTP/2 connection preface, sent to an HTTP/1.1 port
    ],
)
def test_any_version_but_1_0_and_1_1_is_400_and_never_proxied(
    rig: GatewayRig, request_line: bytes
) -> None:
    answer = rawhttp.send(rig.port, request_line + b"\r\nHost: x\r\n\r\nSM\r\n\r\n")
    assert answer is not None and answer.status == 400, (request_line, answer)
    body = answer.json()
    assert body["error"] == "bad_request" and "x-upstream" not in answer.headers
    assert set(body) == {"error", "detail"}  # the gateway's own answer, not an echo
