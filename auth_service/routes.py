"""HTTP routes of the auth service: login, refresh, logout, JWKS, key rotation."""

from __future__ import annotations

import secrets

from aiohttp import web

from auth_service import state
from authbench import metrics
from authbench.credentials import MODE_JWT, MODE_SESSION, Principal
from authbench.errors import InvalidField, NotFound, WrongPassword
from authbench.http import json_response, read_json_object, string_field
from authbench.tokens import FAMILY_CLAIM

routes = web.RouteTableDef()

MODES = (MODE_SESSION, MODE_JWT)


def client_address(request: web.Request) -> str:
    """The client as the gateway saw it: the last X-Forwarded-For hop, which the gateway
    appends itself; without the header, the peer address."""
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64]
    return request.remote or "unknown"


@routes.post("/auth/login")
async def login(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    username = string_field(data, "username", max_length=128)
    password = string_field(data, "password", max_length=1024)
    mode = data.get("mode", MODE_SESSION)
    if mode not in MODES:
        raise InvalidField("'mode' must be 'session' or 'jwt'")

    app = request.app
    address = client_address(request)
    throttle = app[state.THROTTLE]
    await throttle.check(username, address)
    if not await app[state.USERS].verify(username, password):
        await throttle.record_failure(username, address)
        metrics.LOGINS.labels(mode, "failure").inc()
        raise WrongPassword()
    await throttle.record_success(username)
    metrics.LOGINS.labels(mode, "success").inc()

    if mode == MODE_SESSION:
        sessions = app[state.SESSIONS]
        session_id = await sessions.create(username)
        response = json_response(
            {"mode": MODE_SESSION, "user": username, "expires_in": sessions.idle_s}
        )
        _set_session_cookie(request, response, session_id)
        return response

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


@routes.post("/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    token = string_field(data, "refresh_token", max_length=128)
    rotation = await request.app[state.REFRESH_TOKENS].rotate(token)
    access = request.app[state.ISSUER].issue(rotation.user, rotation.family)
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
    """End the credential presented; `?scope=all` ends every session and token family."""
    app = request.app
    principal = await app[state.CHECKER].authenticate(request)
    everywhere = request.query.get("scope") == "all"
    if principal.mode == MODE_SESSION:
        assert principal.session_id is not None
        await app[state.SESSIONS].delete(principal.session_id, principal.user)
    else:
        await _revoke_token(request, principal)
    if everywhere:
        await app[state.SESSIONS].delete_all(principal.user)
        await app[state.REFRESH_TOKENS].revoke_all(principal.user)
    response = web.Response(status=204, headers={"Cache-Control": "no-store"})
    if principal.mode == MODE_SESSION:
        settings = app[state.SETTINGS]
        response.del_cookie(
            app[state.CHECKER].cookie_name,
            path="/",
            secure=settings.cookie_secure,
            httponly=True,
            samesite=settings.cookie_samesite,
        )
    return response


async def _revoke_token(request: web.Request, principal: Principal) -> None:
    claims = principal.claims
    assert claims is not None
    app = request.app
    family = claims.get(FAMILY_CLAIM)
    if isinstance(family, str):
        await app[state.REFRESH_TOKENS].revoke_family(family)
    if app[state.SETTINGS].jwt_revocation == "denylist":
        await app[state.REVOCATIONS].revoke(claims["jti"], float(claims["exp"]))


@routes.get("/auth/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    # Short caching: replicas re-fetch on an unknown kid anyway.
    return json_response(
        request.app[state.KEYRING].jwks(), headers={"Cache-Control": "public, max-age=60"}
    )


@routes.post("/auth/admin/rotate-keys")
async def rotate_keys(request: web.Request) -> web.Response:
    """Operator endpoint (needs AUTH_ADMIN_TOKEN): new signing key, previous kept."""
    expected = request.app[state.SETTINGS].admin_token
    presented = request.headers.get("Authorization", "")
    wanted = f"Bearer {expected}".encode()
    if not expected or not secrets.compare_digest(presented.encode(), wanted):
        raise NotFound()  # the endpoint does not exist for anyone without the secret
    keyring = request.app[state.KEYRING]
    new_key = keyring.rotate()
    request.app[state.VERIFIER].set_keys(keyring.verification_keys())
    previous = keyring.previous.kid if keyring.previous else None
    return json_response({"kid": new_key.kid, "previous": previous})


def _set_session_cookie(request: web.Request, response: web.Response, session_id: str) -> None:
    settings = request.app[state.SETTINGS]
    response.set_cookie(
        request.app[state.CHECKER].cookie_name,
        session_id,
        path="/",
        httponly=True,
        secure=settings.cookie_secure,
        samesite=settings.cookie_samesite,
    )
