"""RefreshTokenStore: opaque, single-use refresh tokens, kept hashed in Redis.

A refresh token is 256 random bits; Redis keeps only its SHA-256. Tokens of one login form
a family. Using a token spends it and issues the next one of the family (rotation); a spent
token presented again means it was stolen or replayed, so the whole family is revoked
(OAuth 2.0 Security BCP, refresh token rotation). Rotation is one atomic Lua script.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from authcore.errors import CsrfRejected, InvalidCredential, RevokedCredential
from authcore.redis_store import Redis, RedisStore
from authcore.revocation import REVOKED_FAMILY_PREFIX  # shared with the denylist check

TOKEN_PREFIX = "rt:"  # noqa: S105 - a Redis key prefix, not a secret
USER_FAMILIES_PREFIX = "uf:"

# KEYS[1] presented token, KEYS[2] its successor; ARGV[1] ttl, ARGV[2] revoked-family
# prefix, ARGV[3] hash of the presented CSRF token ('' when none was presented).
# Answers {status, user, family, csrf}: 1 rotated, 0 unknown, 2 family revoked, 3 reuse,
# 4 CSRF mismatch (nothing spent). `c` is the CSRF hash of a cookie login ('' otherwise):
# it passes down the family, and a cookie family is refreshed only with its CSRF token.
_ROTATE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return {0, '', '', ''} end
local rec = cjson.decode(raw)
local csrf = rec.c or ''
if ARGV[3] ~= csrf then return {4, '', '', ''} end
local revoked = ARGV[2] .. rec.f
if redis.call('EXISTS', revoked) == 1 then return {2, rec.u, rec.f, csrf} end
if rec.s == 1 then
  redis.call('SET', revoked, 1, 'EX', ARGV[1])
  return {3, rec.u, rec.f, csrf}
end
rec.s = 1
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
local successor = cjson.encode({u = rec.u, f = rec.f, s = 0, c = csrf})
redis.call('SET', KEYS[2], successor, 'EX', ARGV[1])
return {1, rec.u, rec.f, csrf}
"""


def _key(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Rotation:
    user: str
    family: str
    refresh_token: str
    csrf_hash: str | None = None  # set for a cookie login (mode jwt-cookie)


class RefreshTokenStore:
    def __init__(self, store: RedisStore, ttl_s: int) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._rotate = store.client.register_script(_ROTATE)

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    async def start_family(self, user: str, csrf_hash: str | None = None) -> tuple[str, str]:
        """A new family and its first token: (family id, refresh token)."""
        family = secrets.token_urlsafe(12)
        token = secrets.token_urlsafe(32)
        record = json.dumps({"u": user, "f": family, "s": 0, "c": csrf_hash or ""})

        async def _start(r: Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(_key(token), record, ex=self._ttl_s)
                pipe.sadd(USER_FAMILIES_PREFIX + user, family)
                pipe.expire(USER_FAMILIES_PREFIX + user, self._ttl_s)
                await pipe.execute()

        await self._store.call(_start)
        return family, token

    async def rotate(self, token: str, csrf_hash: str = "") -> Rotation:
        """Spend `token` and return its successor; reuse revokes the family. `csrf_hash`
        must be the family's (empty for a family that was not started by a cookie login)."""
        successor = secrets.token_urlsafe(32)
        status, user, family, csrf = await self._store.call(
            lambda r: self._rotate(
                keys=[_key(token), _key(successor)],
                args=[self._ttl_s, REVOKED_FAMILY_PREFIX, csrf_hash],
                client=r,
            )
        )
        if status == 1:
            return Rotation(_text(user), _text(family), successor, _text(csrf) or None)
        if status == 0:
            raise InvalidCredential("unknown or expired refresh token")
        if status == 4:
            raise CsrfRejected("refresh needs the X-CSRF-Token issued at login")
        if status == 2:
            raise RevokedCredential("refresh token family has been revoked")
        raise RevokedCredential("refresh token reused: its family is now revoked")

    async def revoke_family(self, family: str) -> None:
        await self._store.call(lambda r: r.set(REVOKED_FAMILY_PREFIX + family, 1, ex=self._ttl_s))

    async def revoke_all(self, user: str) -> int:
        """Revoke every refresh family of `user` (log out everywhere)."""

        async def _revoke_all(r: Redis) -> int:
            families = await r.smembers(USER_FAMILIES_PREFIX + user)
            async with r.pipeline(transaction=True) as pipe:
                for family in families:
                    pipe.set(REVOKED_FAMILY_PREFIX + _text(family), 1, ex=self._ttl_s)
                pipe.delete(USER_FAMILIES_PREFIX + user)
                await pipe.execute()
            return len(families)

        return await self._store.call(_revoke_all)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
