"""Every string a client hands the auth service or a replica, fuzzed against a real cluster.

Hypothesis draws each JSON field the services read (`username`, `password`, `mode`,
`refresh_token`) and each header they read (`Authorization`, `Cookie` with every cookie
name, `X-CSRF-Token`, `X-Forwarded-For`, `Content-Type`, `Sec-Fetch-Site`) and the
`scope` of logout, and what the access log writes (`User-Agent`, `Referer`, odd paths):
any JSON value, text with lone surrogates and control characters, and raw header bytes
that are not UTF-8. The requests go straight to the auth port and to a
replica's port (not through the gateway, which would clean some of them up), with real
credentials mixed in where a check runs only after one is found (the refresh cookie,
whose CSRF header is hashed). Every answer must be a JSON 4xx `{"error", "detail"}`,
never a 5xx; the cluster's logs must hold no traceback when it stops (conftest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.client import login
from tests.security import rawhttp
from tests.security.conftest import NETWORK_FUZZ, WatchedCluster, start_watched, stop_and_scan

FUZZ = settings(NETWORK_FUZZ, max_examples=120)

RAN: dict[str, int] = {}  # cases per property, printed at the end


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedCluster]:
    watched = start_watched(
        tmp_path_factory.mktemp("fuzz-services"),
        1,
        {
            "JWT_REVOCATION": "denylist",
            "TRUSTED_PROXIES": "127.0.0.0/8",  # X-Forwarded-For is parsed, not ignored
            "LOGIN_MAX_FAILURES": "100000",
            "LOGIN_MAX_FAILURES_PER_IP": "100000",
        },
    )
    yield watched
    stop_and_scan(watched)
    print(f"\nservice fuzzing: {RAN} cases, every one a JSON 4xx, no 5xx")
    assert sum(RAN.values()) >= 4 * FUZZ.max_examples


@pytest.fixture(scope="module")
def refresh_cookie(services: WatchedCluster) -> str:
    """A live refresh cookie: a CSRF header is looked at only next to one."""
    answer = login(services.url, 1, "jwt-cookie")
    assert answer.status == 200
    for header in answer.set_cookies:
        name, _, rest = header.partition("=")
        if name == "rt":
            value = rest.split(";", 1)[0]
            services.remember(value, answer.json()["csrf_token"], "password1")
            return value
    raise AssertionError(answer.set_cookies)


# --- what a client can send ------------------------------------------------------------
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# Any code point (lone surrogates included, which JSON's \uXXXX escapes can carry).
any_char = st.one_of(st.characters(), SURROGATES, st.sampled_from("\x00\x7f\x85\u2028"))
POISON = st.one_of(SURROGATES, st.sampled_from("\x00\x1b\x7f\x85\u2028\ufeff"))
hostile_text = st.one_of(
    st.text(any_char, min_size=1, max_size=60),
    # A plausible value with one poisoned character: it passes the type checks and
    # reaches the format checks (and, before them, Redis and the hashes).
    st.tuples(
        st.sampled_from(["user1", "not-a-secret", "jwt", "session", "A" * 43, "10.0.0.1", ""]),
        POISON,
        st.integers(min_value=0, max_value=12),
    ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
)
json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    hostile_text,
    st.lists(hostile_text, max_size=2),
    st.dictionaries(hostile_text, hostile_text, max_size=2),
)
# Header values as bytes: anything but CR and LF (those would end the header).
header_bytes = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from([b"\xff" * 43, b"\xc3\x28", b"\xed\xa0\x80", b"1.2.3.4, \xff", b"::1"]),
    st.text(any_char, max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
)
COOKIE_NAMES = ["sid", "at", "rt", "__Host-sid", "__Host-at", "__Secure-rt"]


def _body(data: dict[str, Any]) -> bytes:
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as an attacker would send.
    return json.dumps(data, ensure_ascii=True, allow_nan=True).encode()


def _send(
    port: int, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> rawhttp.RawAnswer | None:
    head = [f"{method} {target} HTTP/1.1".encode(), b"Host: fuzz", b"Connection: close"]
    head += [name + b": " + value for name, value in headers]
    head.append(b"Content-Length: %d" % len(body))
    return rawhttp.send(port, b"\r\n".join(head) + b"\r\n\r\n" + body, timeout=20)


def _assert_json_4xx(answer: rawhttp.RawAnswer | None, what: object) -> None:
    assert answer is not None, f"connection closed without an answer: {what!r}"
    assert answer.status < 500, (answer.status, answer.body[:300], what)
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), what
        body = json.loads(answer.body)
        assert set(body) == {"error", "detail"}, (body, what)


def _port(url: str) -> int:
    return int(urlsplit(url).port or 0)


field_value = st.one_of(hostile_text, hostile_text, hostile_text, json_value)  # mostly text
content_type = st.one_of(
    st.just(b"application/json"), st.just(b"application/json"), st.none(), header_bytes
)


def _with(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes | None) -> None:
    if value is not None:
        headers.append((name, value))


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {"username": field_value, "password": field_value},
        optional={
            "mode": st.one_of(st.sampled_from(["session", "jwt", "jwt-cookie"]), field_value)
        },
    ),
    forwarded_for=st.one_of(st.none(), header_bytes),
    media=content_type,
)
# The review's findings, always run: lone surrogates in the fields, a non-UTF-8 address.
@example({"username": "user1\ud800", "password": "x"}, None, b"application/json")
@example({"username": "user1", "password": "\ud800"}, None, b"application/json")
@example({"username": "user1", "password": "x"}, b"\xff", b"application/json")
@example({"username": "user1", "password": "x"}, None, None)  # no Content-Type: 415
def test_login_answers_any_field_with_a_json_4xx(
    services: WatchedCluster,
    fields: dict[str, Any],
    forwarded_for: bytes | None,
    media: bytes | None,
) -> None:
    RAN["login"] = RAN.get("login", 0) + 1
    headers: list[tuple[bytes, bytes]] = []
    _with(headers, b"X-Forwarded-For", forwarded_for)
    _with(headers, b"Content-Type", media)
    answer = _send(_port(services.cluster.auth_url), "POST", "/auth/login", headers, _body(fields))
    _assert_json_4xx(answer, (fields, headers))


@FUZZ
@given(
    token=st.one_of(st.none(), field_value),
    cookie=st.one_of(
        st.none(), st.just(b"REAL"), st.just(b"REAL"), header_bytes, st.just(b"A" * 43)
    ),
    csrf=st.one_of(st.none(), header_bytes, st.just(b"B" * 43)),
    fetch_site=st.one_of(st.none(), header_bytes),
    media=content_type,
)
@example(None, b"REAL", b"\xff" * 43, None, None)  # the finding: a non-UTF-8 CSRF header
def test_refresh_answers_any_token_cookie_and_csrf_header_with_a_json_4xx(
    services: WatchedCluster,
    refresh_cookie: str,
    token: Any,
    cookie: bytes | None,
    csrf: bytes | None,
    fetch_site: bytes | None,
    media: bytes | None,
) -> None:
    RAN["refresh"] = RAN.get("refresh", 0) + 1
    headers: list[tuple[bytes, bytes]] = []
    if cookie is not None:
        value = refresh_cookie.encode() if cookie == b"REAL" else cookie
        headers.append((b"Cookie", b"rt=" + value))
    _with(headers, b"X-CSRF-Token", csrf)
    _with(headers, b"Sec-Fetch-Site", fetch_site)
    _with(headers, b"Content-Type", media)
    body = b"" if token is None else _body({"refresh_token": token})
    answer = _send(_port(services.cluster.auth_url), "POST", "/auth/refresh", headers, body)
    _assert_json_4xx(answer, (token, headers))


@FUZZ
@given(
    path=st.sampled_from(["/auth/logout", "/auth/admin/rotate-keys"]),
    scope=st.one_of(st.none(), hostile_text),
    authorization=st.one_of(st.none(), header_bytes),
    cookie=st.one_of(st.none(), st.tuples(st.sampled_from(COOKIE_NAMES), header_bytes)),
    csrf=st.one_of(st.none(), header_bytes),
)
@example("/auth/admin/rotate-keys", None, b"Bearer \xff", None, None)
@example("/auth/logout", "ALL", None, ("sid", b"A" * 43), None)  # unknown scope: 400
def test_logout_and_admin_answer_any_credential_and_scope_with_a_json_4xx(
    services: WatchedCluster,
    path: str,
    scope: str | None,
    authorization: bytes | None,
    cookie: tuple[str, bytes] | None,
    csrf: bytes | None,
) -> None:
    RAN["logout"] = RAN.get("logout", 0) + 1
    headers: list[tuple[bytes, bytes]] = []
    _with(headers, b"Authorization", authorization)
    if cookie is not None:
        headers.append((b"Cookie", cookie[0].encode() + b"=" + cookie[1]))
    _with(headers, b"X-CSRF-Token", csrf)
    target = path
    if scope is not None:
        target += "?scope=" + quote(scope.encode("utf-8", "surrogatepass"), safe="")
    answer = _send(_port(services.cluster.auth_url), "POST", target, headers, b"")
    _assert_json_4xx(answer, (target, headers))


@FUZZ
@given(
    path=st.sampled_from(["/api/me", "/api/items/1", "/api/items/%D9%A1", "/api/items/%ff"]),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    headers=st.dictionaries(
        st.sampled_from(
            # User-Agent and Referer: what the access log (ACCESS_LOG=1) writes of a request
            [
                b"Authorization",
                b"X-CSRF-Token",
                b"Sec-Fetch-Site",
                b"Cookie",
                b"User-Agent",
                b"Referer",
            ]
        ),
        header_bytes,
    ),
    cookie=st.one_of(st.none(), st.tuples(st.sampled_from(COOKIE_NAMES), header_bytes)),
)
def test_replicas_answer_any_credential_header_with_a_json_4xx(
    services: WatchedCluster,
    path: str,
    method: str,
    headers: dict[bytes, bytes],
    cookie: tuple[str, bytes] | None,
) -> None:
    RAN["replica"] = RAN.get("replica", 0) + 1
    sent = list(headers.items())
    if cookie is not None:
        sent.append((b"Cookie", cookie[0].encode() + b"=" + cookie[1]))
    replica = services.cluster.replica_urls()[0]
    answer = _send(_port(replica), method, path, sent, b"")
    _assert_json_4xx(answer, (method, path, sent))


def test_the_services_still_serve_after_the_fuzzing(services: WatchedCluster) -> None:
    """Meaningful only if the fuzzed services still answer real logins and checks."""
    time.sleep(0.1)
    answer = login(services.url, 2, "session")
    assert answer.status == 200, answer.body
