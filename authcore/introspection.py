"""Token introspection (RFC 7662): what mode `opaque` asks the auth service on every read.

An opaque access token is 256 random bits (`secrets.token_urlsafe(32)`, the shape of a
session ID) and means nothing by itself: the auth service keeps what it stands for in
Redis, and a replica learns it by `POST /auth/introspect` (form-encoded `token=`, JSON
answer `{"active", "sub", "exp", "scope", ...}`; an unknown, expired or revoked token is
`{"active": false}` and nothing else, RFC 7662 section 2.2). The endpoint is for the
replicas only: they authenticate with a client credential (HTTP Basic, section 2.1), and
the auth service refuses it to anything that came through a gateway.

This module is the one definition of that exchange, both ends:
- `client_authorization` / `client_authenticated`: the Basic credential, built by the
  replica and checked (constant time) by the auth service;
- `parse_introspection_form`: the request body, refused with a 4xx when it is anything
  but well-formed `application/x-www-form-urlencoded` UTF-8 with one `token`;
- `IntrospectionClient`: the replica's side, an `OpaqueResolver` for
  `authcore.credentials.CredentialChecker`, with an optional cache (INTROSPECT_CACHE_S)
  that never keeps an answer past the token's own `exp`.
The auth service's own resolver reads Redis directly (auth_service/introspection.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from authcore.config import Settings
from authcore.errors import AuthServiceUnavailable, InvalidCredential, InvalidField

INTROSPECT_PATH = "/auth/introspect"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
ACCESS_SCOPE = "api"  # what an opaque access token may do: read the API
TOKEN_TYPE_HINTS = ("access_token", "refresh_token")  # RFC 7009 section 4.1.2
MAX_TOKEN_CHARS = 4096  # a token longer than this is no token of ours: inactive
CACHE_MAX_ENTRIES = 100_000  # per replica; the oldest entry goes first beyond it


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What an active token stands for."""

    user: str
    exp: int  # seconds since the epoch
    scope: str = ACCESS_SCOPE


class OpaqueResolver(Protocol):
    """Resolves an opaque token (already format-checked) to what it stands for;
    InvalidCredential when it is not active."""

    async def resolve(self, token: str) -> TokenInfo: ...


# --- the client credential (RFC 7662 section 2.1: HTTP Basic, RFC 7617) -------------------
def client_authorization(client_id: str, secret: str) -> str:
    """The Authorization header a replica sends."""
    pair = f"{client_id}:{secret}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def client_authenticated(authorization: str | None, client_id: str, secret: str) -> bool:
    """Whether `authorization` carries exactly this client's credential.

    The decoded pair is compared in constant time against the expected one; a header
    that is not Basic, not base64 or not UTF-8 is simply not the credential (never an
    error, never logged)."""
    if authorization is None or not secret:
        return False
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        # surrogateescape: header bytes that are not UTF-8 compare as themselves.
        presented = base64.b64decode(
            encoded.strip().encode("utf-8", "surrogateescape"), validate=True
        )
    except (binascii.Error, ValueError):
        return False
    return secrets.compare_digest(presented, f"{client_id}:{secret}".encode())


# --- the request body ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IntrospectionRequest:
    token: str
    token_type_hint: str | None


def parse_introspection_form(body: bytes) -> IntrospectionRequest:
    """The form of RFC 7662 section 2.1; InvalidField (400) for anything malformed.

    One `token` parameter (RFC 6749 section 3.1: a parameter sent twice is an error), an
    optional `token_type_hint`, nothing else that could hide a second value. The token's
    own shape is not judged here: an unknown token is inactive, not a bad request."""
    try:
        text = body.decode("utf-8")
        pairs = urllib.parse.parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            errors="strict",
            max_num_fields=8,
        )
    except (UnicodeDecodeError, ValueError) as err:
        raise InvalidField(
            "the body must be a UTF-8 application/x-www-form-urlencoded form"
        ) from err
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise InvalidField(f"parameter {name!r} is repeated")
        values[name] = value
    token = values.get("token")
    if not token:
        raise InvalidField("'token' is required")
    if not token.isprintable():
        raise InvalidField("'token' holds control characters")
    hint = values.get("token_type_hint")
    if hint is not None and hint not in TOKEN_TYPE_HINTS:
        # RFC 7009 section 2.2.1 (which RFC 7662 follows): an unsupported hint is an error.
        raise InvalidField(f"'token_type_hint' must be one of {', '.join(TOKEN_TYPE_HINTS)}")
    return IntrospectionRequest(token, hint)


def active_answer(info: TokenInfo, issued_at: int) -> dict[str, object]:
    """The JSON of an active token (RFC 7662 section 2.2)."""
    return {
        "active": True,
        "sub": info.user,
        "username": info.user,
        "scope": info.scope,
        "token_type": "Bearer",
        "exp": info.exp,
        "iat": issued_at,
    }


INACTIVE: dict[str, object] = {"active": False}  # and nothing else: it would leak


# --- the replica's side -------------------------------------------------------------------
class IntrospectionClient:
    """Asks the auth service what a token means, through one keep-alive session.

    A dead, paused or failing auth service is a 503 `auth_unavailable` within
    INTROSPECT_TIMEOUT_MS, never a hang and never an accepted token. With
    INTROSPECT_CACHE_S > 0 active answers are kept that long (bounded by the token's
    `exp`), so a logged-out token may still pass here for up to that long: the price of
    the cache, which the bench and chaos runs measure."""

    def __init__(self, settings: Settings, session: aiohttp.ClientSession) -> None:
        self._url = settings.auth_service_url + INTROSPECT_PATH
        self._session = session
        self._headers = {
            "Authorization": client_authorization(
                settings.introspect_client_id, settings.introspect_secret
            ),
            "Content-Type": FORM_MEDIA_TYPE,
            "Accept": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=settings.introspect_timeout_ms / 1000)
        self._cache_s = settings.introspect_cache_s
        self._cache: OrderedDict[str, tuple[float, TokenInfo]] = OrderedDict()

    async def resolve(self, token: str) -> TokenInfo:
        if self._cache_s > 0:
            cached = self._cache.get(token)
            if cached is not None:
                until, info = cached
                if time.time() < until:
                    return info
                del self._cache[token]
        info = await self._ask(token)
        if self._cache_s > 0:
            self._cache[token] = (min(time.time() + self._cache_s, float(info.exp)), info)
            if len(self._cache) > CACHE_MAX_ENTRIES:
                self._cache.popitem(last=False)
        return info

    async def _ask(self, token: str) -> TokenInfo:
        body = urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"})
        try:
            async with self._session.post(
                self._url, data=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise AuthServiceUnavailable() from err
        if status != 200:
            # 503 (its Redis is down), 401 (our client secret is not its own), anything:
            # the token could not be checked, which is never a reason to accept it.
            raise AuthServiceUnavailable(f"introspection answered HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError as err:
            raise AuthServiceUnavailable("introspection answer is not JSON") from err
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise InvalidCredential("token is not active (unknown, expired or revoked)")
        user, exp, scope = answer.get("sub"), answer.get("exp"), answer.get("scope", "")
        if not isinstance(user, str) or not isinstance(exp, int) or exp <= time.time():
            raise InvalidCredential("token is not active (expired)")
        if ACCESS_SCOPE not in str(scope).split():
            raise InvalidCredential("token does not grant API access")
        return TokenInfo(user, exp, str(scope))

    def forget(self) -> None:
        self._cache.clear()
