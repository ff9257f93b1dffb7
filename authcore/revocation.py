"""RevocationList: the JWT denylist (JWT_REVOCATION=denylist).

Three kinds of entry, all checked by ONE round trip (a single MGET) per request:
- `dl:<jti>`: a logged-out token, kept until the token's own expiry;
- `rb:<user>`: "revoked before": the instant of the user's last "log out everywhere";
  every token of that user issued earlier is revoked;
- `rfr:<family>`: a revoked refresh-token family (logout, or reuse of a spent refresh
  token); every access token issued in that family is revoked too.
No entry outlives the access tokens it can affect, so the list stays small. The one MGET
is the price of making a stateless token revocable, which the benchmark measures.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from authcore.redis_store import Redis, RedisStore

DENYLIST_PREFIX = "dl:"
REVOKED_BEFORE_PREFIX = "rb:"
REVOKED_FAMILY_PREFIX = "rfr:"


class RevocationCheck(Protocol):
    """What a replica asks about a verified token: the denylist here, or the pushed set
    (authcore.pushlist). Raises StoreUnavailable when it cannot tell."""

    async def is_token_revoked(self, claims: dict[str, Any], family_claim: str) -> bool: ...


class RevocationList:
    def __init__(self, store: RedisStore, leeway_s: int, token_ttl_s: int = 0) -> None:
        self._store = store
        self._leeway_s = leeway_s
        self._token_ttl_s = token_ttl_s

    async def revoke(self, jti: str, expires_at: float) -> None:
        # Keep the entry past `exp` by the verifier's leeway, which still accepts it then.
        ttl = max(1, int(expires_at - time.time()) + self._leeway_s + 1)
        await self._store.call(lambda r: r.set(DENYLIST_PREFIX + jti, 1, ex=ttl), durable=True)

    async def revoke_user(self, user: str) -> None:
        """Revoke every access token of `user` issued until now (log out everywhere)."""
        ttl = max(1, self._token_ttl_s + self._leeway_s + 1)
        now = f"{time.time():.3f}"
        await self._store.call(
            lambda r: r.set(REVOKED_BEFORE_PREFIX + user, now, ex=ttl), durable=True
        )

    async def is_token_revoked(self, claims: dict[str, Any], family_claim: str) -> bool:
        """Whether a verified token is revoked by any of the three entries: one MGET."""
        keys = [DENYLIST_PREFIX + claims["jti"], REVOKED_BEFORE_PREFIX + claims["sub"]]
        family = claims.get(family_claim)
        if isinstance(family, str):
            keys.append(REVOKED_FAMILY_PREFIX + family)
        if self._store.cluster:  # the keys sit on different shards: no MGET across slots
            values = await self._store.call(lambda r: _get_each(r, keys))
        else:
            values = await self._store.call(lambda r: r.mget(keys))
        if values[0] is not None or (len(values) > 2 and values[2] is not None):
            return True
        revoked_before = values[1]
        return revoked_before is not None and float(claims["iat"]) < float(revoked_before)


async def _get_each(r: Redis, keys: list[str]) -> list[Any]:
    """GET of each key in one pipeline (redis-py's cluster client sends each node its
    share at once): still one round trip per shard involved, in parallel."""
    async with r.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())
