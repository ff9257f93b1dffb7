"""SessionStore: the guest list. Server-side sessions in shared Redis.

A session ID is 256 random bits from `secrets` (43 base64url characters). Redis keys hold
only the SHA-256 of the ID, so a dump of Redis hands out no usable session. The record
carries the user and the absolute deadline; the key's TTL is the sliding idle timeout.

Validation is exactly one Redis round trip: GETEX reads the record and renews the idle
TTL in the same command. The absolute deadline is checked on the record that came back.

With SESSION_RENEW_INTERVAL_S > 0 (issue 17, read replicas) a validation is a plain read
instead, `GET` + `PTTL` pipelined, which a read replica may serve (RedisStore.read); the
idle TTL is renewed on the primary only when the remaining TTL says the last renewal is
at least that interval old, by a script that checks the TTL again on the primary, so a
session is renewed at most once per interval however many processes read it at once. A
session then ends between SESSION_IDLE_S - SESSION_RENEW_INTERVAL_S and SESSION_IDLE_S
after its last use. A logout deletes on the primary; a replica still serves the record
until the DEL has replicated (the replication lag joins the revocation window). A miss on a
replica is asked again of the primary, so a session is valid from its login's response on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from authcore.config import Settings
from authcore.errors import ExpiredCredential, InvalidCredential, StoreBusy, StoreUnavailable
from authcore.redis_store import Redis, RedisStore

SESSION_ID_BYTES = 32  # 256 bits (OWASP asks for at least 64 bits of entropy)
SESSION_PREFIX = "s:"
USER_SESSIONS_PREFIX = "us:"


# Renew a session's idle TTL only if it still exists with a TTL at or below ARGV[1] ms
# (the last renewal is at least one interval old): concurrent renewals of one session
# within an interval all but one return 0, and a deleted session is never brought back.
RENEW_SCRIPT = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl <= tonumber(ARGV[1]) then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def _key(session_id: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


session_key = _key  # public for the near cache (authcore.session_cache), which keys alike


def parse_record(raw: bytes | str) -> Session:
    """The Session a stored record holds."""
    record = json.loads(raw)
    return Session(record["u"], record["c"], record["a"])


async def _prune_index(r: Redis, user_key: str, members: list[bytes | str]) -> None:
    """Drop from a user's index the sessions that no longer exist (idle or absolute
    expiry, logout): pruned on every login, the index holds the user's live sessions,
    not every session of the last SESSION_ABSOLUTE_S.

    Why not a sorted set scored by expiry: the expiry that ends most sessions is the
    idle one, which slides on every read, and scoring it would add a write to the one
    round trip of validation. Scoring by the absolute deadline instead would keep idle-
    expired members for up to SESSION_ABSOLUTE_S (8 h against the 30 min idle timeout by
    default). Checking existence is exact and race-free without a transaction: a session
    key is the hash of 256 random bits, so a key that is gone never comes back, and a
    member is added in the same MULTI that creates its key. Plain commands, no Lua that
    touches undeclared keys, so it also holds on a sharded store."""
    if not members:
        return
    async with r.pipeline(transaction=False) as pipe:
        for member in members:
            pipe.exists(member)
        alive = await pipe.execute()
    dead = [m for m, n in zip(members, alive, strict=True) if not n]
    if dead:
        await r.srem(user_key, *dead)


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    created_at: float
    absolute_deadline: float


class SessionStore:
    """Create, validate (one round trip) and delete sessions."""

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self._store = store
        self._idle_s = settings.session_idle_s
        self._absolute_s = settings.session_absolute_s
        # SESSION_RENEW_INTERVAL_S: 0 = GETEX on every read; else renew when the TTL left
        # is at most this many ms (the last renewal is at least one interval old).
        self._renew_interval_s = settings.session_renew_interval_s
        self._renew_below_ms = int((self._idle_s - self._renew_interval_s) * 1000)

    @property
    def idle_s(self) -> int:
        return self._idle_s

    async def create(self, user: str) -> str:
        """A fresh ID for every login (no fixation: a client-supplied ID is never reused)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        now = time.time()
        record = json.dumps({"u": user, "c": now, "a": now + self._absolute_s})
        key = _key(session_id)
        user_key = USER_SESSIONS_PREFIX + user

        async def _create(r: Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(key, record, ex=self._idle_s)
                pipe.sadd(user_key, key)
                pipe.expire(user_key, self._absolute_s)
                pipe.smembers(user_key)
                members = (await pipe.execute())[3]
            await _prune_index(r, user_key, [m for m in members if m not in (key, key.encode())])

        async def _create_sharded(r: Redis) -> None:
            # Sessions are spread over the shards by their own key, the index lives with
            # its user: no one MULTI holds both. The key first, so the index never names
            # a key that does not exist yet (a concurrent prune would drop it); should the
            # index write fail, the session goes too, so none escapes "log out everywhere".
            await r.set(key, record, ex=self._idle_s)
            try:
                # One key, one node, in order; no MULTI (redis-py 8.1's async cluster
                # transactions fail on reply callbacks, and nothing here needs one).
                async with r.pipeline(transaction=False) as pipe:
                    pipe.sadd(user_key, key)
                    pipe.expire(user_key, self._absolute_s)
                    pipe.smembers(user_key)
                    members = (await pipe.execute())[2]
            except BaseException:
                with contextlib.suppress(RedisError, OSError):
                    await r.delete(key)
                raise
            await _prune_index(r, user_key, [m for m in members if m not in (key, key.encode())])

        await self._store.call(_create_sharded if self._store.cluster else _create, durable=True)
        return session_id

    async def validate(self, session_id: str) -> Session:
        """The session for `session_id` (already format-checked), renewing its idle TTL."""
        key = _key(session_id)
        if self._renew_interval_s > 0:
            return await self._read_then_renew(key)
        # The command itself rather than redis-py's getex(): same GETEX on the wire, minus
        # a deprecation-checking wrapper coroutine (~2 µs of a ~40 µs round trip).
        raw = await self._store.call(
            lambda r: r.execute_command("GETEX", key, "EX", self._idle_s)  # type: ignore[no-untyped-call]
        )
        if raw is None:
            raise InvalidCredential("unknown or expired session")
        return await self._checked(key, raw)

    async def _checked(self, key: str, raw: bytes | str) -> Session:
        """The session a record holds, unless past its absolute deadline (then deleted)."""
        session = parse_record(raw)
        if time.time() >= session.absolute_deadline:
            await self._store.call(lambda r: r.delete(key))
            raise ExpiredCredential("session reached its absolute lifetime")
        return session

    async def _read_then_renew(self, key: str) -> Session:
        """SESSION_RENEW_INTERVAL_S > 0: GET + PTTL where a read may go (a replica), then,
        once per interval, the renewal on the primary."""

        async def _get(r: Redis) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                return await pipe.execute()

        raw, pttl_ms = await self._store.read(_get)
        if (raw is None or pttl_ms < 0) and self._store.read_replicas:
            # A replica may not have a session created a moment ago (a login, then its
            # first request): the primary decides a miss. Never the other way round: a
            # replica that still has a logged-out session serves it until the DEL arrives.
            raw, pttl_ms = await self._store.call(_get)
        if raw is None or pttl_ms < 0:  # gone, or (never written so) without a TTL
            raise InvalidCredential("unknown or expired session")
        session = await self._checked(key, raw)
        if pttl_ms <= self._renew_below_ms:
            below, idle_ms = self._renew_below_ms, self._idle_s * 1000
            try:
                await self._store.call(lambda r: r.eval(RENEW_SCRIPT, 1, key, below, idle_ms))
            except (StoreUnavailable, StoreBusy):
                pass  # the primary is down or busy: the session stands, the next read renews
        return session

    async def delete(self, session_id: str, user: str) -> None:
        key = _key(session_id)

        async def _delete(r: Redis) -> None:
            # Sharded: the two keys sit on different shards; both writes are idempotent.
            async with r.pipeline(transaction=not self._store.cluster) as pipe:
                pipe.delete(key)
                pipe.srem(USER_SESSIONS_PREFIX + user, key)
                await pipe.execute()

        await self._store.call(_delete, durable=True)

    async def discard(self, session_id: str) -> None:
        """End a session a client presents at login, whoever it belongs to: after a login
        only the new ID is valid (OWASP: renew the session ID on privilege change)."""
        key = _key(session_id)
        await self._store.call(lambda r: r.delete(key))

    async def delete_all(self, user: str) -> int:
        """Log out everywhere: end every session of `user`; returns how many ended."""
        user_key = USER_SESSIONS_PREFIX + user

        async def _delete_all(r: Redis) -> int:
            keys = await r.smembers(user_key)
            if self._store.cluster:  # the sessions sit on every shard: one DEL each
                async with r.pipeline(transaction=False) as pipe:
                    for k in keys:
                        pipe.delete(k)
                    pipe.delete(user_key)
                    results = await pipe.execute()
                return sum(int(n) for n in results[:-1])
            async with r.pipeline(transaction=True) as pipe:
                if keys:
                    pipe.delete(*keys)
                pipe.delete(user_key)
                results = await pipe.execute()
            return int(results[0]) if keys else 0

        return await self._store.call(_delete_all, durable=True)
