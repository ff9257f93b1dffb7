"""RefreshTokenStore: opaque, single-use refresh tokens, kept hashed in Redis.

A refresh token is 256 random bits; Redis keeps only its SHA-256. Tokens of one login form
a family. Using a token spends it and issues the next one of the family (rotation); a spent
token presented again means it was stolen or replayed, so the whole family is revoked
(OAuth 2.0 Security BCP, refresh token rotation). Rotation is one atomic Lua script.

A token begins with its family's ID (16 characters, not secret: the access tokens carry
it too), followed by 160 random bits: 43 characters in all. So the keys one rotation
touches (the presented token, its successor, the family's revoked marker) are all known
before the script runs, are all declared in KEYS, and on a sharded store (Redis Cluster)
all carry the hash tag `{rfr:<family>}`, the slot of the marker's own name.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from authcore.errors import CsrfRejected, ExpiredCredential, InvalidCredential, RevokedCredential
from authcore.pushlist import RevocationFeed
from authcore.redis_store import Redis, RedisStore
from authcore.revocation import REVOKED_FAMILY_PREFIX  # shared with the denylist check

TOKEN_PREFIX = "rt:"  # noqa: S105 - a Redis key prefix, not a secret
# A sorted set per user: family -> its absolute deadline (epoch seconds).
USER_FAMILIES_PREFIX = "uf:"

# KEYS[1] presented token, KEYS[2] its successor, KEYS[3] the family's revoked marker;
# ARGV[1] refresh ttl, ARGV[2] the family named by the presented token, ARGV[3] hash of
# the presented CSRF token ('' when none was presented), ARGV[4] now (epoch seconds),
# ARGV[5] ttl of a revoked-family marker.
# Answers {status, user, family, csrf, successor ttl}: 1 rotated, 0 unknown, 2 family
# revoked, 3 reuse, 4 CSRF mismatch (nothing spent), 5 family past its absolute
# deadline. `c` is the CSRF hash of a cookie login ('' otherwise): it passes down the
# family, and a cookie family is refreshed only with its CSRF token. `d` is the family's
# absolute deadline: it passes down too, and no successor outlives it.
_ROTATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0, '', '', '', 0} end
local rec = cjson.decode(raw)
if rec.f ~= ARGV[2] then return {0, '', '', '', 0} end
local csrf = rec.c or ''
if ARGV[3] ~= csrf then return {4, '', '', '', 0} end
local revoked = KEYS[3]
if redis.call('EXISTS', revoked) == 1 then return {2, rec.u, rec.f, csrf, 0} end
if rec.s == 1 then
  redis.call('SET', revoked, 1, 'EX', ARGV[5])
  return {3, rec.u, rec.f, csrf, 0}
end
rec.d = tonumber(rec.d) or (tonumber(ARGV[4]) + tonumber(ARGV[1]))  -- pre-deadline record
local left = rec.d - tonumber(ARGV[4])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return {5, rec.u, rec.f, csrf, 0}
end
local ttl = math.min(tonumber(ARGV[1]), math.ceil(left))
rec.s = 1
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
local successor = cjson.encode({u = rec.u, f = rec.f, s = 0, c = csrf, d = rec.d})
redis.call('SET', KEYS[2], successor, 'EX', ttl)
return {1, rec.u, rec.f, csrf, ttl}
"""


FAMILY_ID_CHARS = 16  # secrets.token_urlsafe(12)


def _new_token(family: str) -> str:
    return family + secrets.token_urlsafe(20)  # 16 + 27 = 43 characters


def _family_of(token: str) -> str:
    return token[:FAMILY_ID_CHARS]


def _key(token: str, sharded: bool = False) -> str:
    """The token's key: on a sharded store tagged to its family's revoked marker's slot."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    if sharded:
        return f"{TOKEN_PREFIX}{{{REVOKED_FAMILY_PREFIX}{_family_of(token)}}}{digest}"
    return TOKEN_PREFIX + digest


@dataclass(frozen=True, slots=True)
class Rotation:
    user: str
    family: str
    refresh_token: str
    csrf_hash: str | None = None  # set for a cookie login (mode jwt-cookie)
    expires_in: int = 0  # the successor's lifetime: REFRESH_TTL_S, less near the deadline


class RefreshTokenStore:
    """Families of single-use refresh tokens.

    Every family has an absolute deadline (REFRESH_FAMILY_ABSOLUTE_S from its login,
    OWASP's absolute timeout, as sessions have): rotation never issues a token that
    outlives it, so a stolen token cannot be kept alive for ever by rotating it. The
    user's family index (`uf:<user>`, family -> deadline) lives as long as the newest
    family can, so "log out everywhere" finds every family that can still rotate."""

    def __init__(
        self,
        store: RedisStore,
        ttl_s: int,
        family_absolute_s: int,
        marker_s: int,
        feed: RevocationFeed | None = None,
    ) -> None:
        self._store = store
        # JWT_REVOCATION=pushlist: revoked families are also pushed to every replica.
        self._feed = feed
        self._ttl_s = ttl_s
        self._family_absolute_s = family_absolute_s
        # A revoked-family marker outlives every token of the family: refresh tokens
        # (REFRESH_TTL_S at most) and the access tokens it issued (marker_s).
        self._marker_s = max(ttl_s, marker_s)
        self._rotate = store.client.register_script(_ROTATE)

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    async def start_family(self, user: str, csrf_hash: str | None = None) -> tuple[str, str]:
        """A new family and its first token: (family id, refresh token)."""
        family = secrets.token_urlsafe(12)
        token = _new_token(family)
        sharded = self._store.cluster
        now = time.time()
        deadline = now + self._family_absolute_s
        record = json.dumps({"u": user, "f": family, "s": 0, "c": csrf_hash or "", "d": deadline})
        index = USER_FAMILIES_PREFIX + user

        async def _start(r: Redis) -> None:
            # Sharded: the token and the user's index sit on different shards, so no MULTI;
            # either half alone is harmless (an indexed family without a token, or a token
            # the client never got because the login failed).
            async with r.pipeline(transaction=not sharded) as pipe:
                pipe.set(_key(token, sharded), record, ex=self._ttl_s)
                pipe.zadd(index, {family: deadline})
                pipe.zremrangebyscore(index, "-inf", now)  # families past their deadline
                # The newest family has the latest deadline: the index outlives them all.
                pipe.expire(index, self._family_absolute_s + 1)
                await pipe.execute()

        await self._store.call(_start, durable=True)
        return family, token

    async def rotate(self, token: str, csrf_hash: str = "") -> Rotation:
        """Spend `token` and return its successor; reuse revokes the family. `csrf_hash`
        must be the family's (empty for a family that was not started by a cookie login)."""
        named = _family_of(token)
        successor = _new_token(named)
        sharded = self._store.cluster
        keys = [_key(token, sharded), _key(successor, sharded), REVOKED_FAMILY_PREFIX + named]
        status, user, family, csrf, ttl = await self._store.call(
            lambda r: self._rotate(
                keys=keys,
                args=[self._ttl_s, named, csrf_hash, time.time(), self._marker_s],
                client=r,
            ),
            durable=True,
        )
        if status == 1:
            return Rotation(_text(user), _text(family), successor, _text(csrf) or None, int(ttl))
        if status == 0:
            raise InvalidCredential("unknown or expired refresh token")
        if status == 4:
            raise CsrfRejected("refresh needs the X-CSRF-Token issued at login")
        if status == 2:
            raise RevokedCredential("refresh token family has been revoked")
        if status == 5:
            raise ExpiredCredential("the login reached its absolute lifetime; log in again")
        if self._feed is not None:  # status 3: reuse revoked the family just now
            await self._feed.revoke_families([_text(family)])
        raise RevokedCredential("refresh token reused: its family is now revoked")

    async def revoke_family(self, family: str) -> None:
        await self._store.call(
            lambda r: r.set(REVOKED_FAMILY_PREFIX + family, 1, ex=self._marker_s), durable=True
        )
        if self._feed is not None:
            await self._feed.revoke_families([family])

    async def revoke_all(self, user: str) -> int:
        """Revoke every refresh family of `user` that can still rotate (log out
        everywhere)."""
        index = USER_FAMILIES_PREFIX + user

        async def _revoke_all(r: Redis) -> list[str]:
            found = await r.zrangebyscore(index, time.time(), "+inf")
            families = [f for f in found if isinstance(f, bytes | str)]
            # Sharded: the markers sit on their families' shards; each SET is idempotent.
            async with r.pipeline(transaction=not self._store.cluster) as pipe:
                for family in families:
                    pipe.set(REVOKED_FAMILY_PREFIX + _text(family), 1, ex=self._marker_s)
                pipe.delete(index)
                await pipe.execute()
            return [_text(f) for f in families]

        revoked = await self._store.call(_revoke_all, durable=True)
        if self._feed is not None:
            await self._feed.revoke_families(revoked)
        return len(revoked)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
