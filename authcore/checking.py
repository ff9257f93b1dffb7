"""The credential check of a validating process, wired once.

A resource replica checks every request's credential; with VALIDATE_AT=gateway the
gateway does instead (gateway/edge.py). Both need the same parts, built from the same
settings: a Redis pool, the token verifier with its JWKS fetcher, the session store (with
the near cache of SESSION_CACHE), the denylist or the pushed revocation set of
JWT_REVOCATION, and the introspection client of mode opaque. `credential_checking` builds
them, runs their background tasks while the process serves, and stops them in order:

    async with credential_checking(settings, name="replica-1") as checking:
        principal = await checking.checker.authenticate(request)
        problems = [await check() for check in checking.readiness]
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from authcore.config import Settings
from authcore.credentials import CredentialChecker
from authcore.introspection import IntrospectionClient
from authcore.jwks import KeySetFetcher
from authcore.pushlist import PushList
from authcore.redis_store import RedisStore
from authcore.revocation import RevocationList
from authcore.session_cache import CachedSessionStore
from authcore.sessions import SessionStore
from authcore.tokens import TokenVerifier

ReadinessCheck = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Checking:
    """A running credential check: the checker and what readiness must ask."""

    checker: CredentialChecker
    readiness: tuple[ReadinessCheck, ...]  # each answers None when ready, else why not
    fetcher: KeySetFetcher
    pushlist: PushList | None  # JWT_REVOCATION=pushlist


@contextlib.asynccontextmanager
async def credential_checking(settings: Settings, name: str) -> AsyncIterator[Checking]:
    """Build the check for `settings` (`name`: this process, in the pushed set's stream
    reader), run its background tasks while the block runs, then stop everything."""
    store = RedisStore(settings)
    verifier = TokenVerifier(settings)
    client = aiohttp.ClientSession()
    fetcher = KeySetFetcher(settings, verifier, client)
    denylist = RevocationList(store, settings.jwt_leeway_s) if settings.denylist_enabled else None
    # JWT_REVOCATION=pushlist: the revocation set is held here, pushed through a stream.
    pushlist = PushList(settings, name) if settings.pushlist_enabled else None
    # SESSION_CACHE: the near cache and its invalidation listener (mode session+cache).
    cache = CachedSessionStore(store, settings) if settings.session_cache else None
    checker = CredentialChecker(
        settings,
        cache if cache is not None else SessionStore(store, settings),
        verifier,
        denylist or pushlist,
        refresh_keys=fetcher.refresh_on_unknown_kid,
        # Mode opaque: every such read asks the auth service (RFC 7662), when it is set up.
        opaque=IntrospectionClient(settings, client) if settings.introspect_secret else None,
    )
    readiness: list[ReadinessCheck] = [store.ping, fetcher.readiness]
    background = [asyncio.create_task(fetcher.load_until_ready())]
    if cache is not None:
        background.append(asyncio.create_task(cache.listener.run()))
    if pushlist is not None:
        readiness.append(pushlist.readiness)
        pushlist.start()
    try:
        yield Checking(checker, tuple(readiness), fetcher, pushlist)
    finally:
        if pushlist is not None:
            await pushlist.stop()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if cache is not None:
            await cache.close()
        await client.close()
        await store.close()
