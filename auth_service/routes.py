"""HTTP routes of the auth service: login, refresh, logout, JWKS, key rotation,
token introspection (for the replicas only), the edge check (for nginx's auth_request only)."""

from __future__ import annotations

import secrets
import time

from aiohttp import web

from auth_service import state
from auth_service.edge_check import EDGE_CHECK_PATH, edge_check
from auth_service.introspection import introspect as answer_introspection
from authcore import metrics
from authcore.credentials import (
    CSRF_HEADER,
    MODE_JWT,
    MODE_JWT_COOKIE,
    MODE_OPAQUE,
    MODE_SESSION,
    REFRESH_COOKIE_PATH,
    SESSION_ID_PATTERN,
    Principal,
    check_fetch_metadata,
    checked_csrf_token,
    checked_refresh_token,
    csrf_hash,
    new_csrf_token,
    refresh_cookie_name,
)
from authcore.errors import (
    CsrfRejected,
    InvalidField,
    NotFound,
    WrongPassword,
)
from authcore.http import client_address, json_response, read_json_object, string_field
from authcore.tokens import FAMILY_CLAIM

routes = web.RouteTableDef()

MODES = (MODE_SESSION, MODE_JWT, MODE_JWT_COOKIE, MODE_OPAQUE)


LOGOUT_SCOPES = ("all",)  # absent: this credential only


@routes.post("/auth/login")
async def login(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    username = string_field(data, "username", max_length=128)
    password = string_field(data, "password", max_length=1024, pattern=None)
    mode = data.get("mode", MODE_SESSION)
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidField("'mode' must be 'session', 'jwt', 'jwt-cookie' or 'opaque'")
    if mode == MODE_OPAQUE and not request.app[state.SETTINGS].introspect_secret:
        raise InvalidField("mode 'opaque' is off here: the deployment sets no INTROSPECT_SECRET")

    app = request.app
    address = client_address(request, app[state.TRUSTED_PROXIES])
    throttle = app[state.THROTTLE]
    # Reserved before verifying: at most LOGIN_MAX_FAILURES guesses per account reach
    # argon2, however many arrive at once. Redis down: 503 before any password is
    # checked (never fails open).
    await throttle.reserve(username, address)
    if not await app[state.USERS].verify(username, password):
        await throttle.record_failure(address)
        metrics.LOGINS.labels(mode, "failure").inc()
        raise WrongPassword()
    await throttle.record_success(username)
    metrics.LOGINS.labels(mode, "success").inc()

    if mode == MODE_SESSION:
        return await _session_login(request, username)
    if mode == MODE_JWT_COOKIE:
        return await _cookie_login(request, username)
    if mode == MODE_OPAQUE:
        return await _opaque_login(request, username)

    family, refresh_token = await app[state.REFRESH_TOKENS].start_family(username)
    access = app[state.ISSUER].issue(username, family)
    return json_response(
        {
            "mode": MODE_JWT,
            "user": username,
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": access.expires_in,
            "refresh_token": refresh_token,
        }
    )


async def _session_login(request: web.Request, username: str) -> web.Response:
    app = request.app
    sessions = app[state.SESSIONS]
    # No fixation: a session ID the client brings is ended, never adopted; the new
    # ID comes from `secrets`.
    old = request.cookies.get(app[state.CHECKER].cookie_name)
    if old is not None and SESSION_ID_PATTERN.fullmatch(old):
        await sessions.discard(old)
    session_id = await sessions.create(username)
    response = json_response(
        {"mode": MODE_SESSION, "user": username, "expires_in": sessions.idle_s}
    )
    _set_cookie(request, response, app[state.CHECKER].cookie_name, session_id)
    return response


async def _cookie_login(request: web.Request, username: str) -> web.Response:
    """Mode jwt-cookie: the access token in an HttpOnly cookie, the refresh token in an
    HttpOnly cookie sent only to /auth/refresh, and a CSRF token for the page to echo."""
    app = request.app
    csrf_token, bound_hash = new_csrf_token()
    family, refresh_token = await app[state.REFRESH_TOKENS].start_family(username, bound_hash)
    access = app[state.ISSUER].issue(username, family, bound_hash)
    response = json_response(
        {
            "mode": MODE_JWT_COOKIE,
            "user": username,
            "expires_in": access.expires_in,
            "csrf_token": csrf_token,
        }
    )
    _set_token_cookies(request, response, access.token, refresh_token)
    return response


async def _opaque_login(request: web.Request, username: str) -> web.Response:
    """Mode opaque: a random bearer token, meaningful only to the auth service."""
    tokens = request.app[state.OPAQUE_TOKENS]
    token = await tokens.issue(username)
    return json_response(
        {
            "mode": MODE_OPAQUE,
            "user": username,
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": tokens.ttl_s,
        }
    )


@routes.post("/auth/introspect")
async def introspect(request: web.Request) -> web.Response:
    """RFC 7662 token introspection, for the replicas (auth_service/introspection.py)."""
    app = request.app
    return json_response(
        await answer_introspection(request, app[state.SETTINGS], app[state.OPAQUE_TOKENS])
    )


@routes.get(EDGE_CHECK_PATH)
async def check_at_the_edge(request: web.Request) -> web.Response:
    """nginx's auth_request subrequest: 204 with an identity assertion, or the refusal
    (auth_service/edge_check.py)."""
    app = request.app
    return await edge_check(request, app[state.CHECKER], app.get(state.EDGE_SIGNER))


@routes.post("/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    """Rotate a refresh token: from the JSON body (mode jwt) or the refresh cookie
    (mode jwt-cookie, which also needs the login's X-CSRF-Token)."""
    app = request.app
    settings = app[state.SETTINGS]
    cookie = request.cookies.get(refresh_cookie_name(settings))
    data = await read_json_object(request) if request.can_read_body or cookie is None else {}
    from_cookie = "refresh_token" not in data and cookie is not None
    if from_cookie:
        assert cookie is not None
        check_fetch_metadata(request.method, request.headers)
        token = checked_refresh_token(cookie)
        presented = request.headers.get(CSRF_HEADER)
        if presented is None:
            raise CsrfRejected(f"{CSRF_HEADER} is required to refresh from the cookie")
        expected_csrf = csrf_hash(checked_csrf_token(presented))
    else:
        token = checked_refresh_token(string_field(data, "refresh_token", max_length=128))
        expected_csrf = ""
    rotation = await app[state.REFRESH_TOKENS].rotate(token, expected_csrf)
    access = app[state.ISSUER].issue(rotation.user, rotation.family, rotation.csrf_hash)
    if from_cookie:
        response = json_response(
            {"mode": MODE_JWT_COOKIE, "user": rotation.user, "expires_in": access.expires_in}
        )
        _set_token_cookies(
            request, response, access.token, rotation.refresh_token, rotation.expires_in
        )
        return response
    return json_response(
        {
            "mode": MODE_JWT,
            "user": rotation.user,
            "access_token": access.token,
            "token_type": "Bearer",
            "expires_in": access.expires_in,
            "refresh_token": rotation.refresh_token,
        }
    )


@routes.post("/auth/logout")
async def logout(request: web.Request) -> web.Response:
    """End the credential presented; `?scope=all` ends every session and token family
    of the user and, with the denylist, every access token issued to them so far."""
    app = request.app
    scope = request.query.getall("scope", [])
    if len(scope) > 1 or (scope and scope[0] not in LOGOUT_SCOPES):
        # Not a silent single logout: a client asking for something else must know.
        raise InvalidField("'scope' must be absent (this credential) or 'all'")
    principal = await app[state.CHECKER].authenticate(request)
    everywhere = scope == ["all"]
    if principal.mode == MODE_SESSION:
        assert principal.session_id is not None
        await app[state.SESSIONS].delete(principal.session_id, principal.user)
    elif principal.mode == MODE_OPAQUE:
        assert principal.opaque_token is not None
        await app[state.OPAQUE_TOKENS].revoke(principal.opaque_token, principal.user)
    else:
        await _revoke_token(request, principal)
    if everywhere:
        await app[state.SESSIONS].delete_all(principal.user)
        await app[state.REFRESH_TOKENS].revoke_all(principal.user)
        await app[state.OPAQUE_TOKENS].revoke_all(principal.user)
        if app[state.SETTINGS].denylist_enabled:
            await app[state.REVOCATIONS].revoke_user(principal.user)
        feed = app.get(state.REVOCATION_FEED)
        if feed is not None:  # JWT_REVOCATION=pushlist
            await feed.revoke_user(principal.user)
    response = web.Response(status=204, headers={"Cache-Control": "no-store"})
    checker = app[state.CHECKER]
    if principal.mode == MODE_SESSION:
        _clear_cookie(request, response, checker.cookie_name)
    elif principal.mode == MODE_JWT_COOKIE:
        _clear_cookie(request, response, checker.access_cookie_name)
        _clear_cookie(
            request, response, refresh_cookie_name(app[state.SETTINGS]), REFRESH_COOKIE_PATH
        )
    return response


async def _revoke_token(request: web.Request, principal: Principal) -> None:
    claims = principal.claims
    assert claims is not None
    app = request.app
    family = claims.get(FAMILY_CLAIM)
    if isinstance(family, str):
        await app[state.REFRESH_TOKENS].revoke_family(family)
    if app[state.SETTINGS].denylist_enabled:
        await app[state.REVOCATIONS].revoke(claims["jti"], float(claims["exp"]))
    feed = app.get(state.REVOCATION_FEED)
    if feed is not None:  # JWT_REVOCATION=pushlist (the family went out with revoke_family)
        await feed.revoke_token(claims["jti"], float(claims["exp"]))


@routes.get("/auth/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    # Short caching: replicas re-fetch on an unknown kid anyway.
    return json_response(
        request.app[state.KEYRING].jwks(), headers={"Cache-Control": "public, max-age=60"}
    )


@routes.post("/auth/admin/rotate-keys")
async def rotate_keys(request: web.Request) -> web.Response:
    """Operator endpoint (needs AUTH_ADMIN_TOKEN): a new signing key; retired keys stay
    in the JWKS until the tokens they signed have expired."""
    expected = request.app[state.SETTINGS].admin_token
    # surrogateescape: header bytes that are not UTF-8 compare as themselves, never raise.
    presented = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    wanted = f"Bearer {expected}".encode()
    if not expected or not secrets.compare_digest(presented, wanted):
        raise NotFound()  # the endpoint does not exist for anyone without the secret
    keyring = request.app[state.KEYRING]
    keystore = request.app.get(state.KEYSTORE)
    if keystore is not None:  # shared keys: every auth replica takes it from the store
        stored = await keystore.rotate()
        return json_response(
            {
                "kid": stored.key.kid,
                "verifying": [k.kid for k in keyring.keys()],
                "signs_in_s": round(max(0.0, stored.signs_from - time.time()), 3),
                "ring_version": keystore.version,
            }
        )
    new_key = keyring.rotate()
    request.app[state.VERIFIER].set_keys(keyring.verification_keys())
    return json_response(
        {"kid": new_key.kid, "verifying": [k.kid for k in keyring.keys()]},
    )


def _set_cookie(
    request: web.Request,
    response: web.StreamResponse,
    name: str,
    value: str,
    path: str = "/",
    max_age: int | None = None,
) -> None:
    """Every cookie: HttpOnly, SameSite from COOKIE_SAMESITE, never a Domain; Secure (and
    a __Host-/__Secure- name, chosen by the caller) with COOKIE_SECURE=1."""
    settings = request.app[state.SETTINGS]
    response.set_cookie(
        name,
        value,
        path=path,
        max_age=max_age,
        httponly=True,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
    )


def _set_token_cookies(
    request: web.Request,
    response: web.StreamResponse,
    access_token: str,
    refresh_token: str,
    refresh_max_age: int | None = None,
) -> None:
    app = request.app
    settings = app[state.SETTINGS]
    _set_cookie(
        request,
        response,
        app[state.CHECKER].access_cookie_name,
        access_token,
        max_age=settings.jwt_ttl_s,
    )
    _set_cookie(
        request,
        response,
        refresh_cookie_name(settings),
        refresh_token,
        path=REFRESH_COOKIE_PATH,
        max_age=refresh_max_age or settings.refresh_ttl_s,
    )


def _clear_cookie(
    request: web.Request, response: web.StreamResponse, name: str, path: str = "/"
) -> None:
    settings = request.app[state.SETTINGS]
    response.del_cookie(
        name,
        path=path,
        secure=settings.cookie_secure,
        httponly=True,
        samesite=settings.cookie_samesite,
    )
