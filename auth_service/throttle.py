"""LoginThrottle: failed-login counters per account and per client address, in Redis.

Counters live in the shared Redis, so every auth replica sees the same count. Only failed
attempts count (a benchmark logs the same users in again and again, legitimately). Over
the limit, logins answer 429 with Retry-After until the window ends, even with the right
password, so a guessing attacker learns nothing from a late success. When Redis is down,
login cannot issue anything anyway (sessions and refresh tokens live there): it answers
503 before any password is checked, so throttling never fails open.
"""

from __future__ import annotations

from authcore.config import Settings
from authcore.errors import Throttled
from authcore.redis_store import Redis, RedisStore

ACCOUNT_PREFIX = "lf:u:"
ADDRESS_PREFIX = "lf:ip:"


class LoginThrottle:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self._store = store
        self._max_account = settings.login_max_failures
        self._max_address = settings.login_max_failures_per_ip
        self._window_s = settings.login_window_s

    async def check(self, username: str, address: str) -> None:
        """Raise Throttled if the account or the address is over its limit."""
        keys = (ACCOUNT_PREFIX + username, ADDRESS_PREFIX + address)

        async def _check(r: Redis) -> list[int]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(keys[0])
                pipe.ttl(keys[0])
                pipe.get(keys[1])
                pipe.ttl(keys[1])
                account, account_ttl, address_count, address_ttl = await pipe.execute()
            return [int(account or 0), account_ttl, int(address_count or 0), address_ttl]

        account, account_ttl, per_address, address_ttl = await self._store.call(_check)
        if account >= self._max_account:
            raise Throttled(account_ttl if account_ttl > 0 else self._window_s)
        if per_address >= self._max_address:
            raise Throttled(address_ttl if address_ttl > 0 else self._window_s)

    async def record_failure(self, username: str, address: str) -> None:
        async def _record(r: Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                for key in (ACCOUNT_PREFIX + username, ADDRESS_PREFIX + address):
                    pipe.incr(key)
                    pipe.expire(key, self._window_s, nx=True)
                await pipe.execute()

        await self._store.call(_record)

    async def record_success(self, username: str) -> None:
        await self._store.call(lambda r: r.delete(ACCOUNT_PREFIX + username))
