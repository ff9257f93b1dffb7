"""LoginThrottle: failed-login counters per account and per client address, in Redis.

Counters live in the shared Redis, so every auth replica sees the same count. Over the
limit, logins answer 429 with Retry-After until the window ends, even with the right
password, so a guessing attacker learns nothing from a late success.

An attempt on an account is *reserved* before its password is verified: one Lua script
checks both counters and, when neither is over its limit, counts the attempt against
the account, atomically. So however many guesses arrive at once, at most
LOGIN_MAX_FAILURES of them reach argon2 per account and window (checking first and
counting after the verification let 186 of 200 parallel guesses through). A success
gives its reservation back (and clears the account's count, as before), so a benchmark
that logs the same users in again and again is never throttled.

The per-address counter is a coarser backstop, counted after a failed verification: it
is not reserved, because every client behind one address (the gateway's, without
TRUSTED_PROXIES) would otherwise share LOGIN_MAX_FAILURES_PER_IP logins *in flight*,
and a burst of legitimate logins would get 429s. Its overshoot under parallel guessing
is bounded by the per-account reservations.

When Redis is down, login cannot issue anything anyway (sessions and refresh tokens live
there): it answers 503 before any password is checked, so throttling never fails open.
"""

from __future__ import annotations

from authcore.config import Settings
from authcore.errors import Throttled
from authcore.redis_store import Redis, RedisStore

ACCOUNT_PREFIX = "lf:u:"
ADDRESS_PREFIX = "lf:ip:"

# KEYS[1] account counter, KEYS[2] address counter; ARGV[1] account limit, ARGV[2]
# address limit, ARGV[3] window. Answers {0, 0} when the attempt is reserved, else
# {1, seconds until the counter that is over its limit expires}.
_RESERVE = """
local account = tonumber(redis.call('GET', KEYS[1]) or '0')
local address = tonumber(redis.call('GET', KEYS[2]) or '0')
if account >= tonumber(ARGV[1]) then return {1, redis.call('TTL', KEYS[1])} end
if address >= tonumber(ARGV[2]) then return {1, redis.call('TTL', KEYS[2])} end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')
return {0, 0}
"""


# Sharded (REDIS_CLUSTER_NODES): the account counter alone. KEYS[1] account counter;
# ARGV[1] account limit, ARGV[2] window. Answers as _RESERVE.
_RESERVE_ACCOUNT = """
local account = tonumber(redis.call('GET', KEYS[1]) or '0')
if account >= tonumber(ARGV[1]) then return {1, redis.call('TTL', KEYS[1])} end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
return {0, 0}
"""


class LoginThrottle:
    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self._store = store
        self._max_account = settings.login_max_failures
        self._max_address = settings.login_max_failures_per_ip
        self._window_s = settings.login_window_s
        self._reserve = store.client.register_script(_RESERVE)
        self._reserve_account = store.client.register_script(_RESERVE_ACCOUNT)

    async def reserve(self, username: str, address: str) -> None:
        """Count an attempt on `username` before it is verified; Throttled if the account
        or the address is over its limit (then nothing is counted)."""
        keys = [ACCOUNT_PREFIX + username, ADDRESS_PREFIX + address]
        args = [self._max_account, self._max_address, self._window_s]
        if self._store.cluster:
            # The two counters sit on different shards: the address counter (only read
            # here, a coarse backstop) is read first; the account's is reserved atomically.
            throttled, ttl = await self._store.call(lambda r: self._reserve_sharded(r, keys, args))
        else:
            throttled, ttl = await self._store.call(
                lambda r: self._reserve(keys=keys, args=args, client=r)
            )
        if throttled:
            raise Throttled(ttl if ttl > 0 else self._window_s)

    async def _reserve_sharded(self, r: Redis, keys: list[str], args: list[int]) -> list[int]:
        async with r.pipeline(transaction=False) as pipe:
            pipe.get(keys[1])
            pipe.ttl(keys[1])
            address, address_ttl = await pipe.execute()
        if int(address or 0) >= args[1]:
            return [1, int(address_ttl)]
        found = await self._reserve_account(keys=keys[:1], args=[args[0], args[2]], client=r)
        return [int(found[0]), int(found[1])]

    async def record_failure(self, address: str) -> None:
        """A reserved attempt failed: it stays counted; the address counts it too."""
        key = ADDRESS_PREFIX + address

        async def _record(r: Redis) -> None:
            async with r.pipeline(transaction=not self._store.cluster) as pipe:
                pipe.incr(key)
                pipe.expire(key, self._window_s, nx=True)
                await pipe.execute()

        await self._store.call(_record)

    async def record_success(self, username: str) -> None:
        """The password was right: the account's failures (and this reservation) end."""
        await self._store.call(lambda r: r.delete(ACCOUNT_PREFIX + username))
