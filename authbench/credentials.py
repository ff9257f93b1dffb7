"""The one place that knows the credential formats and checks a request's credential.

A request carries either a session cookie (`sid`, or `__Host-sid` when cookies are
secure) or an `Authorization: Bearer <JWT>` header; the type is recognised per request,
so one cluster serves both modes at once. A Bearer header wins when both are present.
Every credential is format-checked before any lookup: garbage never reaches Redis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from authbench import metrics
from authbench.config import Settings
from authbench.errors import (
    AuthbenchError,
    InvalidCredential,
    MissingCredential,
    RevokedCredential,
    StoreUnavailable,
)
from authbench.revocation import RevocationList
from authbench.sessions import SessionStore
from authbench.tokens import TokenVerifier, UnknownKeyId

SESSION_COOKIE = "sid"
SECURE_SESSION_COOKIE = "__Host-sid"
# secrets.token_urlsafe(32): 43 base64url characters, nothing else.
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
# RFC 6750 section 2.1 b64token, then a JWT's three segments are checked by PyJWT.
BEARER_PATTERN = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")

MODE_SESSION = "session"
MODE_JWT = "jwt"


def session_cookie_name(settings: Settings) -> str:
    return SECURE_SESSION_COOKIE if settings.cookie_secure else SESSION_COOKIE


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


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    mode: str
    session_id: str | None = None
    claims: dict[str, Any] | None = None


KeyRefresher = Callable[[], Awaitable[bool]]
"""Re-fetches verification keys (JWKS); returns whether the key set changed."""


class CredentialChecker:
    """Authenticates a request: one Redis round trip for a session, a local signature
    check for a JWT (plus one EXISTS with the denylist)."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionStore,
        verifier: TokenVerifier,
        revocations: RevocationList | None,
        refresh_keys: KeyRefresher | None = None,
    ) -> None:
        self._cookie = session_cookie_name(settings)
        self._sessions = sessions
        self._verifier = verifier
        self._revocations = revocations
        self._fail_open = settings.denylist_fail == "open"
        self._refresh_keys = refresh_keys

    @property
    def cookie_name(self) -> str:
        return self._cookie

    async def authenticate(self, request: web.Request) -> Principal:
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            return await self._timed(MODE_JWT, self._check_jwt(bearer_token(authorization)))
        raw = request.cookies.get(self._cookie)
        if raw is not None:
            return await self._timed(MODE_SESSION, self._check_session(raw))
        raise MissingCredential()

    async def _timed(self, mode: str, check: Awaitable[Principal]) -> Principal:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await check
        except AuthbenchError as err:
            outcome = err.code
            raise
        finally:
            metrics.CREDENTIAL_VALIDATION.labels(mode, outcome).observe(
                time.perf_counter() - started
            )

    async def _check_session(self, raw: str) -> Principal:
        session_id = checked_session_id(raw)
        session = await self._sessions.validate(session_id)
        return Principal(session.user, MODE_SESSION, session_id=session_id)

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
                revoked = await self._revocations.is_revoked(claims["jti"])
            except StoreUnavailable:
                if not self._fail_open:
                    raise
                revoked = False  # DENYLIST_FAIL=open: a valid signature is enough
            if revoked:
                raise RevokedCredential("token has been revoked (logged out)")
        return Principal(claims["sub"], MODE_JWT, claims=claims)
