"""The one place that knows the credential formats and checks a request's credential.

A request carries one of four credentials; the type is recognised per request, so one
cluster serves every mode at once:
- `Authorization: Bearer <JWT>` (mode jwt); it wins when several are present;
- `Authorization: Bearer <opaque token>` (mode opaque): 43 base64url characters, no dots,
  so never a JWT; resolved by introspection (authcore.introspection, RFC 7662);
- a session cookie `sid` (`__Host-sid` when cookies are secure) (mode session);
- an access-token cookie `at` (`__Host-at`) holding a JWT (mode jwt-cookie, the seed
  document's advice: the token out of reach of page scripts).
Every credential is format-checked before any lookup: garbage never reaches Redis.

Cookies are sent by browsers on cross-site requests too, so a state-changing request
(any method but GET/HEAD/OPTIONS) that authenticates by cookie must prove it came from
our own page: a `Sec-Fetch-Site: cross-site` header is refused for both cookies, and the
JWT cookie also needs `X-CSRF-Token`, whose SHA-256 the token itself carries (a double
submit bound to the signed token: a forger can neither read nor mint a matching pair).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from authcore import metrics
from authcore.config import Settings
from authcore.errors import (
    AuthbenchError,
    CsrfRejected,
    InvalidCredential,
    MissingCredential,
    RevokedCredential,
    StoreUnavailable,
)
from authcore.introspection import OpaqueResolver
from authcore.modes import Login
from authcore.revocation import RevocationCheck
from authcore.sessions import SessionStore
from authcore.tokens import CSRF_CLAIM, FAMILY_CLAIM, TokenVerifier, UnknownKeyId

SESSION_COOKIE = "sid"
SECURE_SESSION_COOKIE = "__Host-sid"
ACCESS_COOKIE = "at"
SECURE_ACCESS_COOKIE = "__Host-at"
# The refresh cookie is sent only to /auth/refresh; `__Host-` demands Path=/, so the
# secure variant uses `__Secure-` (Secure, no Domain is set either way).
REFRESH_COOKIE = "rt"
SECURE_REFRESH_COOKIE = "__Secure-rt"
REFRESH_COOKIE_PATH = "/auth/refresh"
CSRF_HEADER = "X-CSRF-Token"

# secrets.token_urlsafe(32): 43 base64url characters, nothing else. Session IDs,
# refresh tokens and CSRF tokens all have this shape.
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
OPAQUE_TOKEN_PATTERN = SESSION_ID_PATTERN
# RFC 6750 section 2.1 b64token, then a JWT's three segments are checked by PyJWT.
BEARER_PATTERN = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
# A compact JWS: three base64url segments (the cookie value is checked before parsing).
JWT_PATTERN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

MODE_SESSION = Login.SESSION
MODE_JWT = Login.JWT
MODE_JWT_COOKIE = Login.JWT_COOKIE
MODE_OPAQUE = Login.OPAQUE


def session_cookie_name(settings: Settings) -> str:
    return SECURE_SESSION_COOKIE if settings.cookie_secure else SESSION_COOKIE


def access_cookie_name(settings: Settings) -> str:
    return SECURE_ACCESS_COOKIE if settings.cookie_secure else ACCESS_COOKIE


def refresh_cookie_name(settings: Settings) -> str:
    return SECURE_REFRESH_COOKIE if settings.cookie_secure else REFRESH_COOKIE


def bearer_token(authorization: str) -> str:
    """The token of an Authorization header, or InvalidCredential if it is not Bearer."""
    match = BEARER_PATTERN.fullmatch(authorization)
    if match is None:
        raise InvalidCredential("Authorization must be 'Bearer <token>'")
    return match.group(1)


def checked_session_id(raw: str) -> str:
    if SESSION_ID_PATTERN.fullmatch(raw) is None:
        raise InvalidCredential("malformed session cookie")
    return raw


def checked_refresh_token(raw: str) -> str:
    if OPAQUE_TOKEN_PATTERN.fullmatch(raw) is None:
        raise InvalidCredential("malformed refresh token")
    return raw


def checked_cookie_jwt(raw: str, max_bytes: int) -> str:
    if len(raw) > max_bytes or JWT_PATTERN.fullmatch(raw) is None:
        raise InvalidCredential("malformed access-token cookie")
    return raw


def checked_csrf_token(raw: str) -> str:
    if OPAQUE_TOKEN_PATTERN.fullmatch(raw) is None:
        raise CsrfRejected(f"malformed {CSRF_HEADER}")
    return raw


def new_csrf_token() -> tuple[str, str]:
    """A fresh CSRF token and the hash an access token (or refresh record) carries."""
    token = secrets.token_urlsafe(32)
    return token, csrf_hash(token)


def csrf_hash(token: str) -> str:
    """SHA-256 (base64url) of a CSRF token that a pattern has already checked."""
    digest = hashlib.sha256(token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(presented: str | None, expected_hash: Any) -> bool:
    """Whether the presented X-CSRF-Token hashes to `expected_hash` (constant time)."""
    if presented is None or not isinstance(expected_hash, str):
        return False
    if OPAQUE_TOKEN_PATTERN.fullmatch(presented) is None:
        return False
    return secrets.compare_digest(csrf_hash(presented), expected_hash)


def check_fetch_metadata(method: str, headers: Mapping[str, str]) -> None:
    """Refuse a cookie-authenticated state change that the browser says is cross-site."""
    if method not in SAFE_METHODS and headers.get("Sec-Fetch-Site") == "cross-site":
        raise CsrfRejected("cross-site state-changing request refused")


@dataclass(frozen=True, slots=True)
class PresentedCredential:
    """What a request presents, format-checked, before any lookup or signature check."""

    mode: str
    value: str


def presented_credential(
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    settings: Settings,
) -> PresentedCredential:
    """The credential a request carries (Bearer header, then session, then JWT cookie);
    MissingCredential or InvalidCredential when there is none or it is malformed."""
    authorization = headers.get("Authorization")
    if authorization is not None:
        return PresentedCredential(MODE_JWT, bearer_token(authorization))
    raw = cookies.get(session_cookie_name(settings))
    if raw is not None:
        return PresentedCredential(MODE_SESSION, checked_session_id(raw))
    raw = cookies.get(access_cookie_name(settings))
    if raw is not None:
        return PresentedCredential(MODE_JWT_COOKIE, checked_cookie_jwt(raw, settings.jwt_max_bytes))
    raise MissingCredential()


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    mode: str
    session_id: str | None = None
    claims: dict[str, Any] | None = None
    opaque_token: str | None = None  # mode opaque: the token itself (logout revokes it)


KeyRefresher = Callable[[], Awaitable[bool]]
"""Re-fetches verification keys (JWKS); returns whether the key set changed."""


class CredentialChecker:
    """Authenticates a request: one Redis round trip for a session, a local signature
    check for a JWT (plus one MGET with the denylist)."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionStore,
        verifier: TokenVerifier,
        revocations: RevocationCheck | None,
        refresh_keys: KeyRefresher | None = None,
        opaque: OpaqueResolver | None = None,
    ) -> None:
        self._settings = settings
        self._cookie = session_cookie_name(settings)
        self._lone_session_cookie = re.compile(
            re.escape(self._cookie) + "=(" + SESSION_ID_PATTERN.pattern + ")"
        )
        self._observers: dict[tuple[str, str], Any] = {}
        self._access_cookie = access_cookie_name(settings)
        self._sessions = sessions
        self._verifier = verifier
        self._revocations = revocations
        # DENYLIST_FAIL is the denylist's policy; the pushlist always fails closed.
        self._fail_open = settings.denylist_fail == "open" and settings.denylist_enabled
        self._refresh_keys = refresh_keys
        self._opaque = opaque  # None: opaque tokens are not accepted (no introspection)

    @property
    def cookie_name(self) -> str:
        return self._cookie

    @property
    def access_cookie_name(self) -> str:
        return self._access_cookie

    async def authenticate(self, request: web.Request) -> Principal:
        headers = request.headers
        authorization = headers.get("Authorization")
        if authorization is not None:  # the hot path of mode jwt: no cookie parsing
            token = bearer_token(authorization)
            if self._opaque is not None and OPAQUE_TOKEN_PATTERN.fullmatch(token):
                return await self._timed(MODE_OPAQUE, self._check_opaque(token))
            # _timed inlined: one coroutine less on the path every JWT request takes.
            started = time.perf_counter()
            outcome = "ok"
            try:
                return await self._check_jwt(token)
            except AuthbenchError as err:
                outcome = err.code
                raise
            finally:
                self._observe(MODE_JWT, outcome, started)
        # The hot path of mode session: a Cookie header that is exactly one well-formed
        # session cookie parses to just that, so aiohttp's cookie parsing (~6 µs, more
        # than the rest of the check) is skipped; anything else takes the general path.
        lone = self._lone_session_cookie.fullmatch(headers.get("Cookie", ""))
        if lone is not None:
            check_fetch_metadata(request.method, headers)
            started = time.perf_counter()  # _timed inlined, as for Bearer above
            outcome = "ok"
            try:  # _check_session inlined too: one coroutine layer less per request
                session_id = lone.group(1)
                session = await self._sessions.validate(session_id)
                return Principal(session.user, MODE_SESSION, session_id=session_id)
            except AuthbenchError as err:
                outcome = err.code
                raise
            finally:
                self._observe(MODE_SESSION, outcome, started)
        presented = presented_credential(headers, request.cookies, self._settings)
        check_fetch_metadata(request.method, headers)
        if presented.mode == MODE_SESSION:
            return await self._timed(MODE_SESSION, self._check_session(presented.value))
        principal = await self._timed(MODE_JWT_COOKIE, self._check_jwt(presented.value))
        assert principal.claims is not None
        if request.method not in SAFE_METHODS and not csrf_matches(
            headers.get(CSRF_HEADER), principal.claims.get(CSRF_CLAIM)
        ):
            raise CsrfRejected(f"{CSRF_HEADER} missing or not the one issued at login")
        return Principal(principal.user, MODE_JWT_COOKIE, claims=principal.claims)

    async def _timed(self, mode: str, check: Awaitable[Principal]) -> Principal:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await check
        except AuthbenchError as err:
            outcome = err.code
            raise
        finally:
            self._observe(mode, outcome, started)

    def _observe(self, mode: str, outcome: str, started: float) -> None:
        observer = self._observers.get((mode, outcome))
        if observer is None:  # labels() takes a lock and builds a key: once per pair
            observer = metrics.CREDENTIAL_VALIDATION.labels(mode, outcome)
            self._observers[(mode, outcome)] = observer
        observer.observe(time.perf_counter() - started)

    async def _check_session(self, session_id: str) -> Principal:
        session = await self._sessions.validate(session_id)
        return Principal(session.user, MODE_SESSION, session_id=session_id)

    async def _check_opaque(self, token: str) -> Principal:
        assert self._opaque is not None
        info = await self._opaque.resolve(token)
        return Principal(info.user, MODE_OPAQUE, opaque_token=token)

    async def _check_jwt(self, token: str) -> Principal:
        try:
            claims = self._verifier.verify(token)
        except UnknownKeyId:
            # A kid we have not seen may be a key rotated in since our last JWKS fetch.
            if self._refresh_keys is None or not await self._refresh_keys():
                raise
            claims = self._verifier.verify(token)
        if self._revocations is not None:
            try:
                revoked = await self._revocations.is_token_revoked(claims, FAMILY_CLAIM)
            except StoreUnavailable:
                if not self._fail_open:
                    raise
                revoked = False  # DENYLIST_FAIL=open: a valid signature is enough
            if revoked:
                raise RevokedCredential("token has been revoked (logged out)")
        return Principal(claims["sub"], MODE_JWT, claims=claims)
