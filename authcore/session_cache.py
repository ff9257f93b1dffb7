"""CachedSessionStore: sessions with a per-replica near cache that Redis keeps honest
(mode session+cache, `SESSION_CACHE=1`).

The invariant first: an entry is served only if every change Redis made to its key since
the entry was read would have reached this replica and removed it. Redis's server-
assisted client-side caching gives that: one dedicated connection per replica runs
`CLIENT TRACKING on REDIRECT <its own id> BCAST PREFIX s:` and `SUBSCRIBE
__redis__:invalidate`, so every write to any session key (logout's DEL, a renewal's
EXPIRE, an expiry, FLUSHALL) is pushed to every replica. Then:

- a hit sends nothing to Redis; a miss is one round trip (`GET` + `PTTL`, pipelined) and
  is cached only if no invalidation of its key, and no drop of the channel, happened
  between sending it and reading its answer (an invalidation that overtakes the answer
  clears the key's pending marker; a drop bumps the epoch);
- while the channel is down (killed, Redis gone, or no PONG to a heartbeat within
  HEARTBEAT_S), the cache is empty and every read is the plain SessionStore lookup
  (GETEX, renewing as before); nothing read before the channel is back is ever cached;
- an entry is never served past the idle deadline Redis had when it was read (its PTTL,
  counted from before the request was sent), nor past the session's absolute deadline;
- the idle TTL is renewed (EXPIRE, off the request path) only when at least
  SESSION_CACHE_RENEW_S have passed since the last renewal (by any replica: the remaining
  TTL says so), so a session ends between SESSION_IDLE_S - SESSION_CACHE_RENEW_S and
  SESSION_IDLE_S (plus one round trip) after its last use;
- at most SESSION_CACHE_SIZE entries, least recently used evicted first.

Why BCAST on one connection, not redis-py's own caching: redis.asyncio has no client-side
cache (`cache_config` is the sync client's), and its RESP3 parser drops invalidation
pushes unless a handler is set on a private parser. Default (non-BCAST) tracking would
have to be switched on for each pooled connection that reads, again after each of its
reconnects; one that came back without it would miss invalidations silently. With BCAST
the whole guarantee rests on one connection whose loss this module sees. Its price:
every replica is told of every session write (logins, logouts, renewals), not only of
the keys it holds; a renewal invalidates the session on every replica, which then
re-reads it once (`GET` + `PTTL`, which change nothing and so push nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from authcore.config import Settings
from authcore.errors import AuthbenchError, ExpiredCredential, InvalidCredential
from authcore.redis_store import Redis, RedisStore
from authcore.sessions import SESSION_PREFIX, Session, SessionStore, parse_record, session_key

log = logging.getLogger(__name__)

INVALIDATION_CHANNEL = "__redis__:invalidate"  # where RESP2 tracking sends invalidations
# The channel is silent while no session changes: after this long without a message the
# listener PINGs, and a PONG must come within as long again, or the channel counts as
# dropped. So a connection that died without a FIN (a partition) is noticed within 2 s.
HEARTBEAT_S = 1.0

LOOKUPS = Counter(
    "authbench_session_cache_lookups_total",
    "Session validations by the near cache's answer: hit (no Redis), miss (GET+PTTL), "
    "bypass (invalidation channel down: the plain GETEX lookup).",
    ["outcome"],
)
INVALIDATIONS = Counter(
    "authbench_session_cache_invalidations_total",
    "Session keys Redis said changed (each may or may not have been cached here).",
)
CHANNEL_DROPS = Counter(
    "authbench_session_cache_channel_drops_total",
    "Times the invalidation channel was lost and the cache flushed.",
)
CHANNEL_UP = Gauge(
    "authbench_session_cache_channel_up", "1 while the invalidation channel is live."
)
ENTRIES = Gauge("authbench_session_cache_entries", "Sessions held in the near cache.")


@dataclass(slots=True)
class _Entry:
    session: Session
    deadline: float  # time.monotonic() by which Redis's idle TTL surely still ran


class CachedSessionStore(SessionStore):
    """SessionStore whose `validate` answers from a near cache when it may."""

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        super().__init__(store, settings)
        self._max_entries = settings.session_cache_size
        self._renew_s = settings.session_cache_renew_s
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # key -> marker of the miss in flight; an invalidation of the key removes it, so
        # an answer that an invalidation overtook is not cached.
        self._pending: dict[str, object] = {}
        self._live = False
        self._epoch = 0  # bumped whenever the channel comes up or goes down
        self._renewing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.listener = InvalidationListener(settings, self)
        CHANNEL_UP.set(0)

    # --- what the listener reports ------------------------------------------------------
    @property
    def live(self) -> bool:
        return self._live

    @property
    def size(self) -> int:
        """Entries held now (no __len__: an empty cache must not be falsy)."""
        return len(self._entries)

    def channel_up(self) -> None:
        self._flush()
        self._live = True
        CHANNEL_UP.set(1)

    def channel_down(self) -> None:
        if self._live:
            CHANNEL_DROPS.inc()
        self._live = False
        self._flush()
        CHANNEL_UP.set(0)

    def invalidate(self, keys: list[str] | None) -> None:
        """Redis says these keys changed (None: everything, after FLUSHALL/FLUSHDB)."""
        if keys is None:
            self._flush()
            return
        INVALIDATIONS.inc(len(keys))
        for key in keys:
            self._entries.pop(key, None)
            self._pending.pop(key, None)
        ENTRIES.set(len(self._entries))

    def _flush(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._pending.clear()
        ENTRIES.set(0)

    # --- the read path --------------------------------------------------------------------
    async def validate(self, session_id: str) -> Session:
        key = session_key(session_id)
        entry = self._entries.get(key)
        if entry is not None:
            now = time.monotonic()
            if now < entry.deadline and time.time() < entry.session.absolute_deadline:
                self._entries.move_to_end(key)
                if entry.deadline - now <= self._idle_s - self._renew_s:
                    self._renew(key, entry)
                LOOKUPS.labels("hit").inc()
                return entry.session
            del self._entries[key]  # past a deadline: Redis decides (and cleans up)
        if not self._live:
            LOOKUPS.labels("bypass").inc()
            return await super().validate(session_id)
        LOOKUPS.labels("miss").inc()
        return await self._fetch(key)

    async def _fetch(self, key: str) -> Session:
        epoch = self._epoch
        marker = object()
        self._pending[key] = marker
        sent = time.monotonic()

        async def _get(r: Redis) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                return await pipe.execute()

        try:
            raw, pttl_ms = await self._store.call(_get)
        finally:
            ours = self._pending.get(key) is marker
            if ours:
                del self._pending[key]
        if raw is None or pttl_ms < 0:  # gone, or (never written so) without a TTL
            raise InvalidCredential("unknown or expired session")
        session = parse_record(raw)
        if time.time() >= session.absolute_deadline:
            await self._store.call(lambda r: r.delete(key))
            raise ExpiredCredential("session reached its absolute lifetime")
        entry = _Entry(session, sent + pttl_ms / 1000)
        if ours and self._live and self._epoch == epoch:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
            ENTRIES.set(len(self._entries))
        if pttl_ms / 1000 <= self._idle_s - self._renew_s:
            self._renew(key, entry)
        return session

    def _renew(self, key: str, entry: _Entry) -> None:
        """Slide the idle TTL, off the request path, once at a time per key."""
        if key in self._renewing:
            return
        self._renewing.add(key)
        task = asyncio.create_task(self._expire(key, entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(self, key: str, entry: _Entry) -> None:
        sent = time.monotonic()
        try:
            if await self._store.call(lambda r: r.expire(key, self._idle_s)):
                # Until the invalidation this EXPIRE causes arrives, the entry is right to
                # count from here (it is dropped and re-read when it does).
                entry.deadline = max(entry.deadline, sent + self._idle_s)
        except AuthbenchError:
            pass  # Redis down or busy: the next use tries again; the deadline still holds
        finally:
            self._renewing.discard(key)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class InvalidationListener:
    """The dedicated connection that receives invalidations, reconnecting forever.

    Connect, `CLIENT ID`, `CLIENT TRACKING on REDIRECT <id> BCAST PREFIX s:`, `SUBSCRIBE
    __redis__:invalidate`; only when the subscription is confirmed is the cache told the
    channel is up (invalidations between TRACKING and SUBSCRIBE are discarded by Redis,
    but nothing read before "up" is cached). Any error, EOF or missed PONG: the cache is
    told it is down, and the next attempt follows after REDIS_BREAKER_COOLDOWN_MS.
    """

    def __init__(self, settings: Settings, cache: CachedSessionStore) -> None:
        self._cache = cache
        self._retry_s = settings.redis_breaker_cooldown_ms / 1000
        timeout = settings.redis_timeout_s
        self._pool = aioredis.ConnectionPool.from_url(
            settings.redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),  # this loop does the retrying, at its own pace
            protocol=2,  # pub/sub replies as replies (redis-py 8 speaks RESP3 by default)
        )
        self.client_id: int | None = None  # of the current connection, for tests and ops

    async def run(self) -> None:
        while True:
            connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await self._listen(connection)
            except (RedisError, OSError, ValueError) as err:
                if self._cache.live:
                    log.warning("session cache: invalidation channel lost (%s); flushed", err)
            except Exception:  # a bug: say so, stay down (direct lookups), try again
                log.exception("session cache: invalidation listener failed")
            finally:
                self.client_id = None
                self._cache.channel_down()
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            await asyncio.sleep(self._retry_s)

    async def _listen(self, connection: aioredis.Connection) -> None:
        await connection.connect()  # type: ignore[no-untyped-call]
        await connection.send_command("CLIENT", "ID")
        client_id = int(await connection.read_response())
        await connection.send_command(
            "CLIENT", "TRACKING", "on", "REDIRECT", client_id, "BCAST", "PREFIX", SESSION_PREFIX
        )
        await connection.read_response()
        await connection.send_command("SUBSCRIBE", INVALIDATION_CHANNEL)
        reply = await connection.read_response()
        if not reply or reply[0] != b"subscribe":
            raise ValueError(f"unexpected answer to SUBSCRIBE: {reply!r}")
        self.client_id = client_id
        self._cache.channel_up()
        log.info("session cache: invalidation channel up (client id %d)", client_id)
        ping_sent: float | None = None
        while True:
            wait = HEARTBEAT_S if ping_sent is None else ping_sent + HEARTBEAT_S - time.monotonic()
            message = await connection.read_response(timeout=max(wait, 0.001))
            if message is None:  # silence for the whole wait
                if ping_sent is not None:
                    raise ValueError(f"no PONG within {HEARTBEAT_S} s")
                await connection.send_command("PING")
                ping_sent = time.monotonic()
                continue
            kind = message[0]
            if kind == b"message":
                keys = message[2]
                self._cache.invalidate(None if keys is None else [k.decode() for k in keys])
            elif kind == b"pong":
                ping_sent = None
