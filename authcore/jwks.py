"""KeySetFetcher: keeps the verification keys of a replica (or of the gateway, when it
validates: VALIDATE_AT=gateway) in step with the auth service's JWKS.

Keys are fetched asynchronously at start-up (retrying until the auth service answers) and
again when a token names a `kid` we do not know, at most once per JWKS_REFRESH_MIN_S, with
concurrent requests sharing one fetch: random kids from an attacker cannot turn into a
flood of JWKS requests.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from authcore.config import Settings
from authcore.tokens import TokenVerifier, VerificationKey

log = logging.getLogger("authcore.jwks")

JWKS_PATH = "/auth/.well-known/jwks.json"


class KeySetFetcher:
    def __init__(
        self, settings: Settings, verifier: TokenVerifier, session: aiohttp.ClientSession
    ) -> None:
        self._url = settings.auth_service_url + JWKS_PATH  # one of AUTH_URL's replicas
        self._verifier = verifier
        self._session = session
        self._min_interval_s = settings.jwks_refresh_min_s
        self._hs256_secret = settings.jwt_hs256_secret if settings.jwt_algorithm == "HS256" else ""
        self._last_fetch = 0.0
        self._inflight: asyncio.Future[bool] | None = None
        self.loaded = asyncio.Event()
        if self._hs256_secret:
            # A symmetric key is never published: it comes from the shared secret.
            from authcore.tokens import generate_key

            key = generate_key("HS256", self._hs256_secret)
            verifier.set_keys({key.kid: VerificationKey("HS256", key.public_key)})
            self.loaded.set()

    async def fetch(self) -> bool:
        """Load the JWKS; returns whether the set of kids changed."""
        async with self._session.get(self._url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            resp.raise_for_status()
            jwks = await resp.json()
        before = self._verifier.kids
        if not self._hs256_secret:
            self._verifier.load_jwks(jwks)
        self.loaded.set()
        return self._verifier.kids != before

    async def refresh_on_unknown_kid(self) -> bool:
        """Re-fetch, rate-limited and shared between concurrent callers."""
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        if time.monotonic() - self._last_fetch < self._min_interval_s:
            return False
        self._last_fetch = time.monotonic()
        self._inflight = asyncio.get_running_loop().create_future()
        try:
            changed = await self.fetch()
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            log.warning("JWKS refresh failed: %s", type(err).__name__)
            changed = False
        self._inflight.set_result(changed)
        self._inflight = None
        return changed

    async def load_until_ready(self) -> None:
        """Start-up: retry until the auth service hands out its keys."""
        delay = 0.1
        while not self.loaded.is_set():
            try:
                await self.fetch()
                log.info("loaded %d verification keys", len(self._verifier.kids))
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                log.info("JWKS not available yet (%s); retrying", type(err).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def readiness(self) -> str | None:
        return None if self.loaded.is_set() else "verification keys not loaded yet"
