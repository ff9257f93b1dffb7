"""The hostile-input table: every case gets its documented 4xx JSON answer.

Each row sends one hostile request through the real gateway of a real cluster (or, for
malformed HTTP that http.client refuses to write, through a raw socket) and pins the
contract's answer: the status, the JSON shape {"error", "detail"}, the machine code,
WWW-Authenticate on every 401, Retry-After on 429; never a 5xx, never a traceback. The
clusters' logs are scanned for the secrets used here when they stop (conftest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.client import Answer, access_claims, request
from tests.security import rawhttp
from tests.security.conftest import WatchedCluster, start_watched, stop_and_scan

HS_SECRET = "hs256-secret-of-the-hostile-suite-0123456789abcdef"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _cookie_value(answer: Answer, name: str) -> str:
    for cookie in answer.set_cookies:
        key, _, rest = cookie.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {name} cookie in {answer.set_cookies}")


@dataclass
class Material:
    """Real credentials of the clusters, from which the hostile variants are made."""

    main: WatchedCluster
    hs: WatchedCluster
    token: str
    kid: str
    claims: dict[str, Any]
    public_pem: bytes
    public_raw: bytes
    session: str
    access_cookie: str
    refresh_cookie: str
    csrf: str
    hs_kid: str

    @property
    def url(self) -> str:
        return self.main.url

    @property
    def port(self) -> int:
        return int(urlsplit(self.main.url).port or 0)

    def login(self, user: int, mode: str, watched: WatchedCluster | None = None) -> Answer:
        target = watched or self.main
        answer = request(
            target.url, "POST", "/auth/login",
            body={"username": f"user{user}", "password": f"password{user}", "mode": mode},
        )  # fmt: skip
        assert answer.status == 200, answer.body
        target.remember(f"password{user}")
        if mode == "jwt":
            target.remember(answer.json()["access_token"], answer.json()["refresh_token"])
        for cookie in answer.set_cookies:
            target.remember(cookie.split(";", 1)[0].partition("=")[2])
        if mode == "jwt-cookie":
            target.remember(answer.json()["csrf_token"])
        return answer

    def signed_hs(self, claims: dict[str, Any], **header: Any) -> str:
        """A token correctly signed by the HS256 cluster's key, with any claims."""
        headers = {"kid": self.hs_kid, "typ": "at+jwt", **header}
        return jwt.encode(claims, HS_SECRET, "HS256", headers=headers)

    def good_claims(self, **overrides: Any) -> dict[str, Any]:
        return access_claims(**overrides)


@pytest.fixture(scope="module")
def hs_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedCluster]:
    """HS256 with a secret the suite knows: tokens with bad claims, correctly signed."""
    watched = start_watched(
        tmp_path_factory.mktemp("hs256"),
        1,
        # The denylist on: a signed claim then also reaches Redis (one MGET), where text
        # that does not encode used to fail as a 500.
        {"JWT_ALG": "HS256", "JWT_HS256_SECRET": HS_SECRET, "JWT_REVOCATION": "denylist"},
    )
    yield watched
    stop_and_scan(watched)


@pytest.fixture(scope="module")
def material(hostile_cluster: WatchedCluster, hs_cluster: WatchedCluster) -> Material:
    m = Material(hostile_cluster, hs_cluster, "", "", {}, b"", b"", "", "", "", "", "")
    jwt_login = m.login(1, "jwt")
    m.token = jwt_login.json()["access_token"]
    m.kid = jwt.get_unverified_header(m.token)["kid"]
    m.claims = jwt.decode(m.token, options={"verify_signature": False})
    jwks = request(m.url, "GET", "/auth/.well-known/jwks.json").json()
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == m.kid]
    public = jwt.PyJWK(jwk).key
    m.public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    m.public_raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    m.session = _cookie_value(m.login(2, "session"), "sid")
    cookie_login = m.login(3, "jwt-cookie")
    m.access_cookie = _cookie_value(cookie_login, "at")
    m.refresh_cookie = _cookie_value(cookie_login, "rt")
    m.csrf = cookie_login.json()["csrf_token"]
    m.hs_kid = jwt.get_unverified_header(m.login(1, "jwt", hs_cluster).json()["access_token"])[
        "kid"
    ]
    return m


# --- how a case is sent ----------------------------------------------------------------
Send = Callable[[Material], Answer]


def me(headers: Callable[[Material], dict[str, str]], url: str = "main") -> Send:
    def _send(m: Material) -> Answer:
        base = m.url if url == "main" else m.hs.url
        return request(base, "GET", "/api/me", headers=headers(m))

    return _send


def bearer(token: Callable[[Material], str]) -> Send:
    return me(lambda m: {"Authorization": f"Bearer {token(m)}"})


def hs_bearer(token: Callable[[Material], str]) -> Send:
    return me(lambda m: {"Authorization": f"Bearer {token(m)}"}, url="hs")


def post(
    path: str,
    body: bytes | str | dict[str, Any] | None,
    headers: Callable[[Material], dict[str, str]] = lambda m: {},
    content_type: str | None = "application/json",
) -> Send:
    def _send(m: Material) -> Answer:
        extra = dict(headers(m))
        if content_type is not None:
            extra.setdefault("Content-Type", content_type)
        return request(m.url, "POST", path, body=body, headers=extra)

    return _send


def raw(payload: bytes | Callable[[Material], bytes]) -> Send:
    def _send(m: Material) -> Answer:
        data = payload(m) if callable(payload) else payload
        answer = rawhttp.send(m.port, data)
        assert answer is not None, "the gateway closed the connection without an answer"
        return Answer(answer.status, answer.headers, answer.body)

    return _send


def auth_direct(
    path: str, headers: Callable[[Material], dict[str, bytes]], body: bytes = b""
) -> Send:
    """A POST straight to the auth service's port (no gateway to tidy the headers up)."""

    def _send(m: Material) -> Answer:
        port = int(urlsplit(m.main.cluster.auth_url).port or 0)
        lines = [f"POST {path} HTTP/1.1".encode(), b"Host: x", b"Connection: close"]
        lines += [k.encode() + b": " + v for k, v in headers(m).items()]
        lines.append(b"Content-Length: %d" % len(body))
        payload = b"\r\n".join(lines) + b"\r\n\r\n" + body
        answer = rawhttp.send(port, payload)
        assert answer is not None, "the auth service closed the connection without an answer"
        return Answer(answer.status, answer.headers, answer.body)

    return _send


def reused_refresh(m: Material) -> Answer:
    first = m.login(4, "jwt").json()["refresh_token"]
    rotated = request(m.url, "POST", "/auth/refresh", body={"refresh_token": first})
    assert rotated.status == 200
    m.main.remember(rotated.json()["refresh_token"], rotated.json()["access_token"])
    return request(m.url, "POST", "/auth/refresh", body={"refresh_token": first})


def refresh_of_a_family_revoked_by_reuse(m: Material) -> Answer:
    first = m.login(4, "jwt").json()["refresh_token"]
    second = request(m.url, "POST", "/auth/refresh", body={"refresh_token": first}).json()
    m.main.remember(second["refresh_token"], second["access_token"])
    request(m.url, "POST", "/auth/refresh", body={"refresh_token": first})  # the theft
    return request(m.url, "POST", "/auth/refresh", body={"refresh_token": second["refresh_token"]})


def access_token_of_a_family_revoked_by_reuse(m: Material) -> Answer:
    tokens = m.login(5, "jwt").json()
    rotated = request(
        m.url, "POST", "/auth/refresh", body={"refresh_token": tokens["refresh_token"]}
    )
    m.main.remember(rotated.json()["refresh_token"], rotated.json()["access_token"])
    request(m.url, "POST", "/auth/refresh", body={"refresh_token": tokens["refresh_token"]})
    return request(
        m.url,
        "GET",
        "/api/me",
        headers={"Authorization": f"Bearer {rotated.json()['access_token']}"},
    )


def logged_out_token(m: Material) -> Answer:
    token = m.login(6, "jwt").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert request(m.url, "POST", "/auth/logout", headers=auth).status == 204
    return request(m.url, "GET", "/api/me", headers=auth)


def logged_out_session(m: Material) -> Answer:
    sid = _cookie_value(m.login(7, "session"), "sid")
    cookie = {"Cookie": f"sid={sid}"}
    assert request(m.url, "POST", "/auth/logout", headers=cookie).status == 204
    return request(m.url, "POST", "/auth/logout", headers=cookie)


def token_from_before_logout_everywhere(m: Material) -> Answer:
    token = m.login(8, "jwt").json()["access_token"]
    sid = _cookie_value(m.login(8, "session"), "sid")
    everywhere = request(m.url, "POST", "/auth/logout?scope=all", headers={"Cookie": f"sid={sid}"})
    assert everywhere.status == 204
    return request(m.url, "GET", "/api/me", headers={"Authorization": f"Bearer {token}"})


def hs256_with_public_key(key: Callable[[Material], bytes]) -> Callable[[Material], str]:
    """RFC 8725 2.1 key confusion: HMAC the token with the verifier's *public* key."""

    def _token(m: Material) -> str:
        header = _b64(json.dumps({"alg": "HS256", "kid": m.kid, "typ": "at+jwt"}).encode())
        payload = _b64(json.dumps(m.claims).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = hmac.new(key(m), signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    return _token


def with_header(**changes: Any) -> Callable[[Material], str]:
    """The real token with a changed header and the real signature (no longer valid)."""

    def _token(m: Material) -> str:
        _, payload, signature = m.token.split(".")
        header = {"alg": "EdDSA", "kid": m.kid, "typ": "at+jwt", **changes}
        header = {k: v for k, v in header.items() if v is not None}
        return f"{_b64(json.dumps(header).encode())}.{payload}.{signature}"

    return _token


def attacker_signed(**header: Any) -> Callable[[Material], str]:
    """Signed by an attacker's own key, which the header tries to smuggle in."""
    attacker = ed25519.Ed25519PrivateKey.generate()

    def _token(m: Material) -> str:
        headers = {"typ": "at+jwt", **header}
        if headers.get("jwk") == "embed":
            headers["jwk"] = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
        return jwt.encode(m.claims, attacker, "EdDSA", headers=headers)

    return _token


def _rs256_of_attacker(m: Material) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(m.claims, key, "RS256", headers={"kid": m.kid, "typ": "at+jwt"})


def _tampered(m: Material) -> str:
    header, _, signature = m.token.split(".")
    payload = _b64(json.dumps({**m.claims, "sub": "user0"}).encode())
    return f"{header}.{payload}.{signature}"


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()


def _with_header(line: bytes) -> bytes:
    return b"GET /api/me HTTP/1.1\r\nHost: x\r\n" + line + b"\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str | None
    send: Send


LOGIN = "/auth/login"
GOOD_LOGIN = {"username": "user1", "password": "password1", "mode": "jwt"}
CASES = [
    # --- login -------------------------------------------------------------------------
    Case("login-malformed-json", 400, "invalid_json", post(LOGIN, b'{"username": ')),
    Case("login-not-utf8", 400, "invalid_json", post(LOGIN, b'{"username": "\xff\xfe"}')),
    Case("login-deep-nesting", 400, "invalid_json", post(LOGIN, b"[" * 30000 + b"]" * 30000)),
    Case("login-huge-integer", 400, "invalid_json",
         post(LOGIN, b'{"username": ' + b"9" * 5000 + b', "password": "x"}')),
    Case("login-huge-float", 400, "invalid_field",
         post(LOGIN, b'{"username": 1e999999, "password": "x"}')),
    Case("login-array-body", 400, "invalid_json", post(LOGIN, b'["user1", "password1"]')),
    Case("login-username-object", 400, "invalid_field",
         post(LOGIN, {"username": {"$ne": None}, "password": "x"})),
    Case("login-mode-list", 400, "invalid_field", post(LOGIN, {**GOOD_LOGIN, "mode": ["jwt"]})),
    Case("login-text-plain", 415, "unsupported_media_type",
         post(LOGIN, json.dumps(GOOD_LOGIN), content_type="text/plain")),
    Case("login-form-urlencoded", 415, "unsupported_media_type",
         post(LOGIN, "username=user1&password=password1",
              content_type="application/x-www-form-urlencoded")),
    Case("login-body-too-large", 413, "payload_too_large",
         post(LOGIN, {"username": "user1", "password": "x" * 70000})),
    Case("login-unknown-user", 401, "invalid_login",
         post(LOGIN, {"username": "nobody", "password": "password1"})),
    Case("login-wrong-password", 401, "invalid_login",
         post(LOGIN, {"username": "user1", "password": "password2"})),
    Case("login-nul-in-username", 400, "invalid_field",
         post(LOGIN, {"username": "user1\u0000", "password": "password1"})),
    Case("login-lone-surrogate-in-username", 400, "invalid_field",
         post(LOGIN, {"username": "user1\ud800", "password": "password1"})),
    Case("login-lone-surrogate-in-password", 400, "invalid_field",
         post(LOGIN, {"username": "user1", "password": "password1\udfff"})),
    Case("login-no-content-type", 415, "unsupported_media_type",
         post(LOGIN, json.dumps(GOOD_LOGIN), content_type=None)),
    Case("login-not-utf8-forwarded-for-to-the-auth-port", 401, "invalid_login",
         auth_direct(LOGIN, lambda m: {"X-Forwarded-For": b"\xff\xfe",
                                       "Content-Type": b"application/json"},
                     json.dumps({**GOOD_LOGIN, "password": "wrong"}).encode())),
    Case("login-get", 405, "method_not_allowed", lambda m: request(m.url, "GET", LOGIN)),
    # --- refresh -----------------------------------------------------------------------
    Case("refresh-reused-token", 401, "revoked_credential", reused_refresh),
    Case("refresh-successor-after-reuse", 401, "revoked_credential",
         refresh_of_a_family_revoked_by_reuse),
    Case("refresh-malformed-token", 401, "invalid_credential",
         post("/auth/refresh", {"refresh_token": "abc'; DROP"})),
    Case("refresh-unknown-token", 401, "invalid_credential",
         post("/auth/refresh", {"refresh_token": "A" * 43})),
    Case("refresh-token-not-a-string", 400, "invalid_field",
         post("/auth/refresh", {"refresh_token": ["A" * 43]})),
    Case("refresh-access-token-as-refresh-token", 400, "invalid_field",
         lambda m: request(m.url, "POST", "/auth/refresh", body={"refresh_token": m.token})),
    Case("refresh-cookie-without-csrf", 403, "csrf_rejected",
         post("/auth/refresh", None, lambda m: {"Cookie": f"rt={m.refresh_cookie}"}, None)),
    Case("refresh-cookie-wrong-csrf", 403, "csrf_rejected",
         post("/auth/refresh", None,
              lambda m: {"Cookie": f"rt={m.refresh_cookie}", "X-CSRF-Token": "B" * 43}, None)),
    Case("refresh-cookie-csrf-not-utf8", 403, "csrf_rejected",
         auth_direct("/auth/refresh", lambda m: {"Cookie": f"rt={m.refresh_cookie}".encode(),
                                                 "X-CSRF-Token": b"\xff" * 43})),
    Case("refresh-no-content-type", 415, "unsupported_media_type",
         post("/auth/refresh", '{"refresh_token": "x"}', content_type=None)),
    Case("refresh-text-plain", 415, "unsupported_media_type",
         post("/auth/refresh", '{"refresh_token": "x"}', content_type="text/plain")),
    # --- logout ------------------------------------------------------------------------
    Case("logout-without-credential", 401, "missing_credential", post("/auth/logout", None)),
    Case("logout-twice", 401, "invalid_credential", logged_out_session),
    Case("logout-jwt-cookie-without-csrf", 403, "csrf_rejected",
         post("/auth/logout", None, lambda m: {"Cookie": f"at={m.access_cookie}"}, None)),
    Case("logout-jwt-cookie-wrong-csrf", 403, "csrf_rejected",
         post("/auth/logout", None,
              lambda m: {"Cookie": f"at={m.access_cookie}", "X-CSRF-Token": "C" * 43}, None)),
    Case("logout-session-cross-site", 403, "csrf_rejected",
         post("/auth/logout", None,
              lambda m: {"Cookie": f"sid={m.session}", "Sec-Fetch-Site": "cross-site"}, None)),
    Case("logout-scope-in-capitals", 400, "invalid_field",
         post("/auth/logout?scope=ALL", None, lambda m: {"Cookie": f"sid={m.session}"}, None)),
    Case("logout-unknown-scope", 400, "invalid_field",
         post("/auth/logout?scope=everywhere", None, lambda m: {"Cookie": f"sid={m.session}"},
              None)),
    Case("logout-two-scopes", 400, "invalid_field",
         post("/auth/logout?scope=all&scope=x", None, lambda m: {"Cookie": f"sid={m.session}"},
              None)),
    Case("logout-admin-secret-not-utf8", 404, "not_found",
         auth_direct("/auth/admin/rotate-keys", lambda m: {"Authorization": b"Bearer \xff"})),
    # --- cookies -----------------------------------------------------------------------
    Case("cookie-fixed-session-id", 401, "invalid_credential",
         me(lambda m: {"Cookie": "sid=" + "F" * 43})),
    Case("cookie-session-id-too-short", 401, "invalid_credential",
         me(lambda m: {"Cookie": "sid=abc"})),
    Case("cookie-session-id-too-long", 401, "invalid_credential",
         me(lambda m: {"Cookie": f"sid={m.session}A"})),
    Case("cookie-session-id-injection", 401, "invalid_credential",
         me(lambda m: {"Cookie": 'sid="*"; x=1'})),
    Case("cookie-session-id-latin1", 401, "invalid_credential",
         me(lambda m: {"Cookie": "sid=" + "\u00e9" * 43})),
    Case("cookie-logged-out-session", 401, "invalid_credential", logged_out_session),
    Case("cookie-tampered-access-token", 401, "invalid_credential",
         me(lambda m: {"Cookie": f"at={_tampered(m)}"})),
    Case("cookie-access-token-garbage", 401, "invalid_credential",
         me(lambda m: {"Cookie": "at=not.a.jwt!"})),
    # --- Bearer tokens -----------------------------------------------------------------
    Case("bearer-alg-none", 401, "invalid_credential", bearer(
        lambda m: f"{_b64(json.dumps({'alg': 'none', 'kid': m.kid, 'typ': 'at+jwt'}).encode())}"
                  f".{m.token.split('.')[1]}.")),
    Case("bearer-alg-None-mixed-case", 401, "invalid_credential", bearer(with_header(alg="nOnE"))),
    Case("bearer-hs256-with-public-key-pem", 401, "invalid_credential",
         bearer(hs256_with_public_key(lambda m: m.public_pem))),
    Case("bearer-hs256-with-public-key-raw", 401, "invalid_credential",
         bearer(hs256_with_public_key(lambda m: m.public_raw))),
    Case("bearer-rs256-under-an-eddsa-kid", 401, "invalid_credential", bearer(_rs256_of_attacker)),
    Case("bearer-unknown-kid", 401, "invalid_credential",
         bearer(attacker_signed(kid="0123456789abcdef"))),
    Case("bearer-injected-kid-path", 401, "invalid_credential",
         bearer(with_header(kid="../../../../dev/null"))),
    Case("bearer-injected-kid-sql", 401, "invalid_credential",
         bearer(with_header(kid="x' UNION SELECT 'key"))),
    Case("bearer-kid-not-a-string", 401, "invalid_credential", bearer(with_header(kid=["a"]))),
    Case("bearer-no-kid", 401, "invalid_credential", bearer(with_header(kid=None))),
    Case("bearer-embedded-jwk", 401, "invalid_credential",
         bearer(attacker_signed(kid="attacker", jwk="embed"))),
    Case("bearer-jku-to-attacker", 401, "invalid_credential",
         bearer(attacker_signed(kid="attacker", jku="http://127.0.0.1:1/jwks.json"))),
    Case("bearer-tampered-payload", 401, "invalid_credential", bearer(_tampered)),
    Case("bearer-stripped-signature", 401, "invalid_credential",
         bearer(lambda m: m.token.rsplit(".", 1)[0] + ".")),
    Case("bearer-two-segments", 401, "invalid_credential",
         bearer(lambda m: m.token.rsplit(".", 1)[0])),
    Case("bearer-invalid-base64", 401, "invalid_credential",
         bearer(lambda m: m.token.split(".")[0] + ".%%%%.abc")),
    Case("bearer-oversized", 401, "invalid_credential",
         bearer(lambda m: m.token.split(".")[0] + "." + "A" * 6000 + ".abc")),
    Case("bearer-wrong-typ", 401, "invalid_credential", bearer(with_header(typ="JWT"))),
    Case("bearer-crit-header", 401, "invalid_credential",
         bearer(with_header(crit=["exp"], exp=1))),
    Case("bearer-basic-scheme", 401, "invalid_credential",
         me(lambda m: {"Authorization": "Basic dXNlcjE6cGFzc3dvcmQx"})),
    Case("bearer-empty", 401, "invalid_credential", me(lambda m: {"Authorization": "Bearer "})),
    Case("bearer-logged-out-token", 401, "revoked_credential", logged_out_token),
    Case("bearer-after-logout-everywhere", 401, "revoked_credential",
         token_from_before_logout_everywhere),
    Case("bearer-family-revoked-by-refresh-reuse", 401, "revoked_credential",
         access_token_of_a_family_revoked_by_reuse),
    # correctly signed (HS256 cluster), bad claims
    Case("claims-expired", 401, "expired_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(exp=int(time.time()) - 60)))),
    Case("claims-not-yet-valid", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(nbf=int(time.time()) + 600)))),
    Case("claims-issued-in-the-future", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(iat=int(time.time()) + 600)))),
    Case("claims-wrong-iss", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(iss="https://evil.example")))),
    Case("claims-wrong-aud", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(aud="another-api")))),
    Case("claims-wrong-typ", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(), typ="JWT"))),
    Case("claims-no-typ", 401, "invalid_credential",
         hs_bearer(lambda m: jwt.encode(m.good_claims(), HS_SECRET, "HS256",
                                        headers={"kid": m.hs_kid, "typ": None}))),
    Case("claims-missing-exp", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(exp=None)))),
    Case("claims-missing-jti", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(jti=None)))),
    Case("claims-sub-not-a-string", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(sub=42)))),
    Case("claims-empty-sub", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(sub="")))),
    Case("claims-exp-a-string", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(exp=str(int(time.time()) + 300))))),
    Case("claims-nbf-a-bool", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(nbf=True)))),
    Case("claims-lone-surrogate-in-sub", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(sub="user1\ud800")))),
    Case("claims-lone-surrogate-in-jti", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(jti="\udc80" * 22)))),
    Case("claims-iat-out-of-range", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(iat=-(10**400))))),
    Case("claims-exp-out-of-range", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(exp=10**400)))),
    Case("claims-family-not-a-string", 401, "invalid_credential",
         hs_bearer(lambda m: m.signed_hs(m.good_claims(fam=["x"])))),
    Case("claims-hs256-token-with-another-secret", 401, "invalid_credential",
         hs_bearer(lambda m: jwt.encode(m.good_claims(), "x" * 48, "HS256",
                                        headers={"kid": m.hs_kid, "typ": "at+jwt"}))),
    # --- gateway -----------------------------------------------------------------------
    Case("gateway-spoofed-identity-headers", 401, "missing_credential", me(lambda m: {
        "X-User": "user1", "X-Authenticated-User": "user1", "X-Forwarded-User": "user1",
        "X-Remote-User": "user1", "Remote-User": "user1", "X-Forwarded-For": "10.0.0.1",
        "X-Real-IP": "10.0.0.1", "Forwarded": "for=10.0.0.1", "X-Replica": "replica-1"})),
    Case("gateway-crlf-in-header", 400, "bad_request",
         raw(_with_header(b"X-Note: a\rX-User: user1"))),
    Case("gateway-bare-lf-in-header", 400, "bad_request",
         raw(_with_header(b"X-Note: a\nX-User: user1"))),
    Case("gateway-nul-in-header", 400, "bad_request", raw(_with_header(b"X-Note: a\x00b"))),
    Case("gateway-header-without-colon", 400, "bad_request", raw(_with_header(b"X-Note"))),
    Case("gateway-space-before-colon", 400, "bad_request", raw(_with_header(b"X-User : user1"))),
    Case("gateway-obsolete-line-folding", 400, "bad_request",
         raw(_with_header(b"X-Note: a\r\n X-User: user1"))),
    Case("gateway-content-length-and-chunked", 400, "bad_request", raw(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")),
    Case("gateway-two-content-lengths", 400, "bad_request", raw(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n"
        b"\r\n{}x")),
    Case("gateway-not-http", 400, "bad_request", raw(b"\x16\x03\x01\x02\x00 hello\r\n\r\n")),
    Case("gateway-header-too-large", 431, "headers_too_large",
         raw(_with_header(b"X-Big: " + b"a" * 20000))),
    Case("gateway-too-many-headers", 431, "headers_too_large",
         raw(_with_header(b"\r\n".join(b"X-H%d: v" % i for i in range(300))))),
    Case("gateway-url-too-long", 414, "uri_too_long", raw(_get("/api/items/" + "1" * 9000))),
    Case("gateway-body-too-large", 413, "payload_too_large",
         post(LOGIN, b"{" + b" " * 100_000 + b"}")),
    Case("gateway-chunked-body-too-large", 413, "payload_too_large", raw(
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"".join(b"4000\r\n" + b" " * 0x4000 + b"\r\n" for _ in range(6)) + b"0\r\n\r\n")),
    Case("gateway-absolute-form-to-another-host", 401, "missing_credential",
         raw(_get("http://evil.example/api/me"))),
    Case("gateway-connect", 404, "not_found",
         raw(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n")),
    Case("gateway-asterisk-form", 404, "not_found", raw(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")),
    Case("gateway-host-of-another-site", 401, "missing_credential",
         me(lambda m: {"Host": "evil.example"})),
    Case("gateway-two-hosts", 400, "bad_request",
         raw(b"GET /api/me HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")),
    Case("gateway-path-traversal-to-admin", 400, "bad_request",
         raw(_get("/api/../auth/admin/rotate-keys"))),
    Case("gateway-encoded-traversal", 400, "bad_request",
         raw(_get("/api/%2e%2e/%2e%2e/etc/passwd"))),
    Case("gateway-traversal-to-replica-metrics", 400, "bad_request", raw(_get("/api/../metrics"))),
    Case("gateway-admin-endpoint-without-secret", 404, "not_found",
         post("/auth/admin/rotate-keys", None, lambda m: {"Authorization": "Bearer guess"}, None)),
    Case("gateway-unrouted-path", 404, "not_found",
         lambda m: request(m.url, "GET", "/internal/metrics-of-redis")),
    Case("gateway-trace-method", 405, "method_not_allowed",
         lambda m: request(m.url, "TRACE", "/api/me")),
]  # fmt: skip


ANSWERED: list[int] = []  # statuses of the cases that passed, for the summary line


@pytest.fixture(scope="module", autouse=True)
def summary() -> Iterator[None]:
    yield
    if ANSWERED:
        print(
            f"\nhostile table: {len(ANSWERED)} of {len(CASES)} cases run, every one a JSON 4xx "
            f"({min(ANSWERED)}-{max(ANSWERED)}), none a 5xx"
        )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_gets_its_documented_json_answer(material: Material, case: Case) -> None:
    answer = case.send(material)
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    assert answer.status == case.status, (answer.status, answer.body[:300])
    assert b"Traceback" not in answer.body
    body = json.loads(answer.body)
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    if case.code is not None:
        assert body["error"] == case.code, body
    if answer.status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer realm=")
    for secret in (material.token, material.session, material.csrf, material.access_cookie):
        assert secret.encode() not in answer.body
    ANSWERED.append(answer.status)


def test_the_table_is_large_and_covers_every_surface() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 40
    for surface in ("login", "refresh", "logout", "cookie", "bearer", "claims", "gateway"):
        assert sum(n.startswith(surface) for n in names) >= 4, surface


def test_the_real_credentials_still_work(material: Material) -> None:
    """The table is meaningful only if the untampered originals are accepted."""
    assert bearer(lambda m: m.token)(material).status == 200
    assert me(lambda m: {"Cookie": f"sid={m.session}"})(material).status == 200
    assert me(lambda m: {"Cookie": f"at={m.access_cookie}"})(material).status == 200
    hs_token = material.signed_hs(material.good_claims())
    assert hs_bearer(lambda m: hs_token)(material).status == 200


class _Canary:
    """A listener that counts connections: the gateway must never dial anything but its
    configured upstreams, whatever URL or Host a client names."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_the_gateway_is_no_open_proxy(material: Material) -> None:
    canary = _Canary()
    try:
        target = f"127.0.0.1:{canary.port}"
        attempts = [
            _get(f"http://{target}/api/me"),
            _get(f"http://{target}/auth/.well-known/jwks.json"),
            f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode(),
            f"GET /api/me HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode(),
            f"GET //{target}/api/me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
            f"GET /api/me HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: {target}\r\n"
            f"Connection: close\r\n\r\n".encode(),
        ]
        for payload in attempts:
            # Answered here (our own routes, or a 4xx), never relayed to the named host.
            answer = rawhttp.send(material.port, payload)
            assert answer is not None and answer.status < 500, payload
        time.sleep(0.3)
        assert canary.connections == 0
    finally:
        canary.close()


def test_request_ids_are_generated_unless_well_formed(material: Material) -> None:
    for hostile in ("a", "x" * 200, "id with spaces", "<script>", "abc;rm -rf"):
        answer = request(material.url, "GET", "/api/me", headers={"X-Request-Id": hostile})
        assert answer.headers["x-request-id"] != hostile
        assert 8 <= len(answer.headers["x-request-id"]) <= 64
    kept = request(material.url, "GET", "/api/me", headers={"X-Request-Id": "trace-12345678"})
    assert kept.headers["x-request-id"] == "trace-12345678"
    generated = {request(material.url, "GET", "/api/me").headers["x-request-id"] for _ in range(5)}
    assert len(generated) == 5
