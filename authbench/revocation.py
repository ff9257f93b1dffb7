"""RevocationList: the JWT denylist (JWT_REVOCATION=denylist).

A logged-out token's `jti` is stored until the token's own expiry, so the list never
grows past the tokens that are still alive. Checking costs one EXISTS round trip: the
price of making a stateless token revocable, which the benchmark measures.
"""

from __future__ import annotations

import time

from authbench.redis_store import RedisStore

DENYLIST_PREFIX = "dl:"


class RevocationList:
    def __init__(self, store: RedisStore, leeway_s: int) -> None:
        self._store = store
        self._leeway_s = leeway_s

    async def revoke(self, jti: str, expires_at: float) -> None:
        # Keep the entry past `exp` by the verifier's leeway, which still accepts it then.
        ttl = max(1, int(expires_at - time.time()) + self._leeway_s + 1)
        await self._store.call(lambda r: r.set(DENYLIST_PREFIX + jti, 1, ex=ttl))

    async def is_revoked(self, jti: str) -> bool:
        return bool(await self._store.call(lambda r: r.exists(DENYLIST_PREFIX + jti)))
