"""Issue 11 (items 8, 9, 10) against a real cluster: what reaches the services through the
gateway's HTTP/1.1 corners.

- A credential sent only as a chunked trailer field authenticates nothing (RFC 9110
  section 6.5.1: trailers are never merged into the header section).
- An HTTP/1.1 request without Host, and any request line but HTTP/1.0 and HTTP/1.1, is a
  JSON 400 from the gateway; nothing reaches a replica.
- The public port has no /metrics (it names the upstreams' internal addresses).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.client import bearer, login, request, session_cookie
from tests.security import rawhttp
from tests.security.conftest import WatchedCluster, start_watched, stop_and_scan


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedCluster]:
    """One replica; its logs are scanned for the credentials used here when it stops."""
    watched = start_watched(tmp_path_factory.mktemp("gateway-protocol"), 1, {})
    yield watched
    stop_and_scan(watched)


def _port(watched: WatchedCluster) -> int:
    return watched.cluster.ports.gateway


def _chunked_get(path: str, trailer: bytes) -> bytes:
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n0\r\n" + trailer + b"\r\n\r\n"
    )


def test_a_credential_only_in_a_trailer_authenticates_nothing(cluster: WatchedCluster) -> None:
    token = bearer(login(cluster.url, 1, "jwt"))["Authorization"]
    cookie = session_cookie(login(cluster.url, 2, "session"))
    cluster.remember(token, cookie)
    # Both credentials work as headers...
    assert request(cluster.url, "GET", "/api/me", headers={"Authorization": token}).status == 200
    assert request(cluster.url, "GET", "/api/me", headers={"Cookie": cookie}).status == 200
    # ...and as trailers they are dropped: the replica sees no credential at all.
    for trailer in (b"Authorization: " + token.encode(), b"Cookie: " + cookie.encode()):
        answer = rawhttp.send(_port(cluster), _chunked_get("/api/me", trailer))
        assert answer is not None and answer.status == 401, answer
        assert answer.json()["error"] == "missing_credential"
        assert "www-authenticate" in answer.headers


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (
            b"GET /api/me HTTP/1.1\r\nConnection: close\r\n\r\n",
            "an HTTP/1.1 request needs exactly one Host header",
        ),
        (
            b"GET /api/me HTTP/2.0\r\nHost: x\r\n\r\n",
            "only HTTP/1.0 and HTTP/1.1 requests are served",
        ),
        (b"GET /auth/.well-known/jwks.json HTTP/0.9\r\nHost: x\r\n\r\n", None),
    ],
    ids=["http11-without-host", "http2-request-line", "http09-request-line"],
)
def test_requests_outside_http_1_0_and_1_1_are_400_json(
    cluster: WatchedCluster, payload: bytes, detail: str | None
) -> None:
    answer = rawhttp.send(_port(cluster), payload)
    assert answer is not None and answer.status == 400, answer
    body = answer.json()
    assert body["error"] == "bad_request" and set(body) == {"error", "detail"}
    if detail:
        assert body["detail"] == detail


def test_the_public_port_reveals_no_upstream_address(cluster: WatchedCluster) -> None:
    answer = request(cluster.url, "GET", "/metrics")
    assert answer.status == 404 and answer.json()["error"] == "not_found"
    for url in (cluster.cluster.auth_url, *cluster.cluster.replica_urls()):
        assert url.encode() not in answer.body
