"""Issue 2: bad input gets the documented 4xx JSON error, never a 5xx or a hang."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from authbench.targets.local import LocalCluster
from tests.client import access_claims, login, request
from tests.conftest import ClusterFactory

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def assert_json_error(status: int, body: bytes, expected: int, code: str | None = None) -> None:
    assert status == expected, body
    data = json.loads(body)
    assert set(data) == {"error", "detail"}
    if code is not None:
        assert data["error"] == code
    assert b"Traceback" not in body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2, 3]", "invalid_json"),
        (b"\xff\xfe\xfa garbage", "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "payload_too_large"),
        (b"[" * 30_000 + b"]" * 30_000, "invalid_json"),
        (json.dumps({"password": "x", "mode": "jwt"}).encode(), "invalid_field"),
        (json.dumps({"username": 5, "password": "x"}).encode(), "invalid_field"),
        (json.dumps({"username": "user1", "password": None}).encode(), "invalid_field"),
        (json.dumps({"username": "user1", "password": "password1", "mode": "saml"}).encode(),
         "invalid_field"),
        (json.dumps({"username": "u" * 500, "password": "x"}).encode(), "invalid_field"),
    ],
    ids=["malformed", "array", "not-utf8", "too-big", "deep-nesting", "missing-username",
         "username-number", "password-null", "unknown-mode", "username-too-long"],
)  # fmt: skip
def test_bad_login_bodies(shared_cluster: LocalCluster, body: bytes, code: str) -> None:
    answer = request(
        shared_cluster.gateway_url, "POST", "/auth/login", body=body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    expected = 413 if code == "payload_too_large" else 400
    assert_json_error(answer.status, answer.body, expected, code)


def test_bad_refresh_bodies(shared_cluster: LocalCluster) -> None:
    json_type = {"Content-Type": "application/json"}
    for body in (b"", b"{}", b'{"refresh_token": 12}', b'{"refresh_token": ""}'):
        answer = request(
            shared_cluster.gateway_url, "POST", "/auth/refresh", body=body, headers=json_type
        )
        assert_json_error(answer.status, answer.body, 400)
    # A body that does not say it is JSON is refused, as README promises (a CORS "simple"
    # request could send it cross-site).
    for body in (b"", b'{"refresh_token": "x"}'):
        answer = request(shared_cluster.gateway_url, "POST", "/auth/refresh", body=body)
        assert_json_error(answer.status, answer.body, 415, "unsupported_media_type")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def eddsa_token_parts(shared_cluster: LocalCluster) -> Iterator[tuple[str, str, str]]:
    token = login(shared_cluster.gateway_url, 20, "jwt").json()["access_token"]
    header, payload, signature = token.split(".")
    yield header, payload, signature


def test_forged_and_broken_tokens_are_401(
    shared_cluster: LocalCluster, eddsa_token_parts: tuple[str, str, str]
) -> None:
    header, payload, signature = eddsa_token_parts
    kid = jwt.get_unverified_header(f"{header}.{payload}.{signature}")["kid"]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered = _b64(json.dumps({**claims, "sub": "user0"}).encode())
    none_header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid}).encode())
    other_key = ed25519.Ed25519PrivateKey.generate()
    forged = jwt.encode(claims, other_key, "EdDSA", headers={"kid": kid, "typ": "at+jwt"})
    cases = {
        "tampered-payload": f"{header}.{tampered}.{signature}",
        "alg-none": f"{none_header}.{payload}.",
        "stripped-signature": f"{header}.{payload}.",
        "wrong-key": forged,
        "unknown-kid": jwt.encode(
            claims, other_key, "EdDSA", headers={"kid": "nope", "typ": "at+jwt"}
        ),
        "not-base64": f"{header}.@@@@.{signature}",
        "oversized": f"{header}.{'A' * 5000}.{signature}",
    }
    for name, token in cases.items():
        answer = request(
            shared_cluster.gateway_url, "GET", "/api/me",
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert answer.status == 401, (name, answer.body)
        assert_json_error(answer.status, answer.body, 401)
        assert "www-authenticate" in answer.headers, name


@pytest.fixture(scope="module")
def hs256_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    from authbench.process import free_port_block
    from authbench.targets.local import Ports

    cluster = LocalCluster(
        replicas=1,
        ports=Ports.block(free_port_block()),
        settings_env={"AUTH_SEED_USERS": "5", "JWT_ALG": "HS256", "JWT_HS256_SECRET": SECRET},
        workdir=tmp_path_factory.mktemp("hs256"),
    )
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"exp": -60}, "expired_credential"),
        ({"nbf": 600}, "invalid_credential"),
        ({"aud": "someone-else"}, "invalid_credential"),
        ({"iss": "evil"}, "invalid_credential"),
        ({"jti": None}, "invalid_credential"),
        ({"sub": None}, "invalid_credential"),
    ],
    ids=["expired", "not-yet-valid", "wrong-aud", "wrong-iss", "no-jti", "no-sub"],
)
def test_correctly_signed_tokens_with_bad_claims_are_401(
    hs256_cluster: LocalCluster, changes: dict[str, object], code: str
) -> None:
    # Built when the test runs, not at import: a suite slower than the token lifetime
    # would otherwise send expired tokens to every case.
    now = int(time.time())
    claims = access_claims(
        **{k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v
           for k, v in changes.items()}
    )  # fmt: skip
    real = login(hs256_cluster.gateway_url, 1, "jwt").json()["access_token"]
    kid = jwt.get_unverified_header(real)["kid"]
    token = jwt.encode(claims, SECRET, "HS256", headers={"kid": kid, "typ": "at+jwt"})
    answer = request(
        hs256_cluster.gateway_url, "GET", "/api/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert_json_error(answer.status, answer.body, 401, code)


def test_hs256_cluster_accepts_its_own_tokens_and_wrong_typ_is_refused(
    hs256_cluster: LocalCluster,
) -> None:
    real = login(hs256_cluster.gateway_url, 1, "jwt").json()["access_token"]
    ok = request(
        hs256_cluster.gateway_url, "GET", "/api/me", headers={"Authorization": f"Bearer {real}"}
    )
    assert ok.status == 200 and ok.json()["user"] == "user1"
    kid = jwt.get_unverified_header(real)["kid"]
    id_token = jwt.encode(access_claims(), SECRET, "HS256", headers={"kid": kid, "typ": "JWT"})
    answer = request(
        hs256_cluster.gateway_url, "GET", "/api/me", headers={"Authorization": f"Bearer {id_token}"}
    )
    assert_json_error(answer.status, answer.body, 401)


def _raw(url: str, payload: bytes) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("target", ["gateway", "replica"])
def test_oversized_header_is_431_json(shared_cluster: LocalCluster, target: str) -> None:
    url = shared_cluster.gateway_url if target == "gateway" else shared_cluster.replica_urls()[0]
    raw = _raw(
        url,
        b"GET /api/me HTTP/1.1\r\nHost: x\r\nCookie: sid=" + b"a" * 20000 + b"\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"431", head[:80]
    assert json.loads(body)["error"] == "headers_too_large"


def test_overlong_url_is_414_json(shared_cluster: LocalCluster) -> None:
    raw = _raw(
        shared_cluster.gateway_url,
        b"GET /api/items/" + b"9" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"414", b"431"), head[:80]
    assert json.loads(body)["error"] in ("uri_too_long", "headers_too_large")


def test_garbage_request_line_is_400_json(shared_cluster: LocalCluster) -> None:
    raw = _raw(shared_cluster.gateway_url, b"\x16\x03\x01 not http at all\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head[:80]
    assert json.loads(body)["error"] == "bad_request"


def test_unknown_paths_and_methods(shared_cluster: LocalCluster) -> None:
    gateway = shared_cluster.gateway_url
    assert_json_error(*_sb(request(gateway, "GET", "/etc/passwd")), 404, "not_found")
    assert_json_error(*_sb(request(gateway, "GET", "/api/items/abc")), 404, "not_found")
    assert_json_error(*_sb(request(gateway, "DELETE", "/api/me")), 405, "method_not_allowed")
    assert_json_error(*_sb(request(gateway, "GET", "/auth/login")), 405, "method_not_allowed")


def _sb(answer: object) -> tuple[int, bytes]:
    return answer.status, answer.body  # type: ignore[attr-defined]


def test_failed_logins_are_throttled_with_retry_after(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(replicas=1, env={"LOGIN_MAX_FAILURES": "3"})
    bad = {"username": "user1", "password": "wrong", "mode": "jwt"}
    statuses = [
        request(cluster.gateway_url, "POST", "/auth/login", body=bad).status for _ in range(4)
    ]
    assert statuses == [401, 401, 401, 429]
    throttled = login(cluster.gateway_url, 1, "jwt")  # even the right password now waits
    assert_json_error(throttled.status, throttled.body, 429, "throttled")
    assert 0 < int(throttled.headers["retry-after"]) <= 300
