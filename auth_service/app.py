"""App factory of the auth service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from auth_service import state
from auth_service.introspection import OpaqueTokenStore
from auth_service.refresh_tokens import RefreshTokenStore
from auth_service.routes import routes
from auth_service.throttle import LoginThrottle
from auth_service.users import UserDirectory
from authcore.assertion import AssertionSigner
from authcore.config import Settings
from authcore.credentials import CredentialChecker
from authcore.http import READINESS_CHECKS, base_app
from authcore.keystore import KeyStore
from authcore.pushlist import PushList, RevocationFeed
from authcore.redis_store import RedisStore
from authcore.revocation import RevocationList
from authcore.sessions import SessionStore
from authcore.tokens import KeyRing, TokenIssuer, TokenVerifier


def create_app(settings: Settings) -> web.Application:
    app = base_app("auth", client_max_size=settings.max_body_bytes)
    app[state.SETTINGS] = settings
    app[state.TRUSTED_PROXIES] = settings.trusted_proxy_networks()
    app.add_routes(routes)
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_shared_keys)
    return app


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[state.SETTINGS]
    store = RedisStore(settings)
    # Retired keys verify until the last token they signed has expired.
    keyring = KeyRing(
        settings.jwt_algorithm,
        settings.jwt_hs256_secret,
        retain_s=settings.jwt_ttl_s + settings.jwt_leeway_s,
    )
    verifier = TokenVerifier(settings)
    verifier.set_keys(keyring.verification_keys())
    sessions = SessionStore(store, settings)
    revocations = RevocationList(store, settings.jwt_leeway_s, settings.jwt_ttl_s)
    users = UserDirectory(settings)

    app[state.STORE] = store
    app[state.KEYRING] = keyring
    app[state.VERIFIER] = verifier
    app[state.ISSUER] = TokenIssuer(keyring, settings)
    app[state.SESSIONS] = sessions
    app[state.REVOCATIONS] = revocations
    # JWT_REVOCATION=pushlist: revocations go to the stream; this process holds the set too,
    # so a token already revoked cannot log out again (and append again).
    publish = settings.pushlist_enabled or settings.pushlist_publish
    feed = RevocationFeed(store, settings) if publish else None
    pushlist = PushList(settings, "auth") if settings.pushlist_enabled else None
    if feed is not None:
        app[state.REVOCATION_FEED] = feed
    app[state.REFRESH_TOKENS] = RefreshTokenStore(
        store,
        settings.refresh_ttl_s,
        settings.refresh_family_absolute_s,
        settings.jwt_ttl_s + settings.jwt_leeway_s + 1,
        feed,
    )
    app[state.THROTTLE] = LoginThrottle(store, settings)
    app[state.USERS] = users
    opaque_tokens = OpaqueTokenStore(store, settings)
    app[state.OPAQUE_TOKENS] = opaque_tokens
    # Logout accepts either credential; a revoked token cannot log out twice.
    denylist = revocations if settings.denylist_enabled else pushlist
    app[state.CHECKER] = CredentialChecker(
        settings, sessions, verifier, denylist, opaque=opaque_tokens
    )
    if settings.edge_assertion_key:  # edge validation behind nginx (auth_service.edge_check)
        app[state.EDGE_SIGNER] = AssertionSigner.from_settings(settings)
    app[READINESS_CHECKS].append(store.ping)

    seeding = asyncio.create_task(users.seed())
    if pushlist is not None:
        pushlist.start()
    try:
        yield
    finally:
        if pushlist is not None:
            await pushlist.stop()
        seeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await seeding
        users.close()
        await store.close()


async def _shared_keys(app: web.Application) -> AsyncIterator[None]:
    """With JWT_KEY_ENCRYPTION_KEY: the signing keys come from the key store in Redis
    (authcore.keystore), shared by every auth replica and kept across restarts; each
    replica polls it for rotations. Without it, the keys are this process's own."""
    settings = app[state.SETTINGS]
    if not settings.jwt_key_encryption_key or settings.jwt_algorithm == "HS256":
        yield
        return
    keystore = KeyStore(app[state.STORE], settings, app[state.KEYRING], app[state.VERIFIER])
    await keystore.load_or_create()
    app[state.KEYSTORE] = keystore
    polling = asyncio.create_task(keystore.run())
    try:
        yield
    finally:
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
