"""The pushed revocation set (JWT_REVOCATION=pushlist): a read asks Redis nothing.

Invariant first: a replica accepts a token only while it holds every revocation the auth
service appended to the stream up to at most PUSHLIST_MAX_SILENCE_S ago; otherwise it
answers 503 (fails closed).

- Writer (`RevocationFeed`, auth service): every revocation is one `XADD` to the stream
  `STREAM_KEY` with `MAXLEN ~ PUSHLIST_MAXLEN`. An entry carries its kind (`jti`: a
  logged-out token; `rb`: a user's revoked-before time, "log out everywhere"; `family`: a
  revoked refresh-token family, whose access tokens are revoked too) and `keep`, the
  epoch second after which it can revoke nothing (the token's own `exp` plus the leeway).
- Reader (`PushList`, every replica): holds the set in memory, keyed by jti, by user and
  by family, and drops an entry at its `keep`. One task tails the stream with `XREAD BLOCK`
  on a connection of its own, from the last ID it applied; after a reconnect it reads on
  from that ID, so an entry appended while it was away is applied, never skipped. At start
  it reads the whole stream.
- Heartbeat without a writer: an `XREAD BLOCK` that returns empty after its block time is
  Redis saying "alive, nothing new"; a connection error or a reply that does not come is
  "cannot reach". Each complete reply (fewer entries than `READ_COUNT`) is a heartbeat. A
  read is refused (503) when the last heartbeat is older than PUSHLIST_MAX_SILENCE_S, and
  before the first one (a replica started while Redis is down holds no set: not ready).
- Retention: entries are trimmed by count (`MAXLEN ~`, which keeps at least that many). An
  entry matters until `keep`, at most JWT_TTL_S + JWT_LEEWAY_S after it was written, so
  the stream must hold every revocation of the last access-token lifetime. If it did not
  (`XINFO STREAM`: entries were trimmed and the first one left is past the last ID this
  replica read, younger than a token lifetime), the replica cannot know what it missed
  and fails closed until every token such an entry could revoke has expired. A stream
  that went backwards (Redis restarted empty) is read again from its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlparse

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from authcore.config import Settings
from authcore.errors import StoreUnavailable
from authcore.redis_store import NodeBreakers, Redis, RedisStore, cluster_client, node_guarded

log = logging.getLogger("authcore.pushlist")

STREAM_KEY = "revocations"
KIND_JTI = "jti"
KIND_USER = "rb"
KIND_FAMILY = "family"
READ_COUNT = 10_000  # entries per XREAD: a reply this full may have more behind it
CLIENT_NAME_PREFIX = "authbench-pushlist"  # CLIENT LIST shows each replica's tail

ENTRIES = Gauge(
    "authbench_pushlist_entries", "Revocations a process holds in its pushed set (all kinds)."
)
APPLIED = Counter(
    "authbench_pushlist_applied_total", "Stream entries read and applied to the pushed set."
)
RECONNECTS = Counter(
    "authbench_pushlist_reconnects_total",
    "Times the stream connection failed and was opened again (then read on from the last ID).",
)
SILENCE = Gauge(
    "authbench_pushlist_silence_seconds",
    "Seconds since the stream last answered (heartbeat); -1 before the set is loaded.",
)


def _now() -> float:
    return time.time()


def _id(raw: str) -> tuple[int, int]:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RevocationFeed:
    """The auth service's side: append revocations to the stream (one XADD each)."""

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self._store = store
        self._leeway_s = settings.jwt_leeway_s
        self._token_ttl_s = settings.jwt_ttl_s
        self._maxlen = settings.pushlist_maxlen

    def _lifetime_keep(self) -> float:
        # Every access token issued until now has expired (leeway included) by then.
        return _now() + self._token_ttl_s + self._leeway_s + 1

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self._append([{"k": KIND_JTI, "v": jti, "keep": expires_at + self._leeway_s + 1}])

    async def revoke_tokens(self, tokens: Iterable[tuple[str, float]]) -> None:
        """Many (jti, exp) at once, in one round trip (bulk revocation, measurements)."""
        await self._append(
            [{"k": KIND_JTI, "v": jti, "keep": exp + self._leeway_s + 1} for jti, exp in tokens]
        )

    async def revoke_user(self, user: str) -> None:
        now = _now()
        await self._append([{"k": KIND_USER, "v": user, "at": now, "keep": self._lifetime_keep()}])

    async def revoke_families(self, families: Iterable[str]) -> None:
        keep = self._lifetime_keep()
        await self._append([{"k": KIND_FAMILY, "v": f, "keep": keep} for f in families])

    async def _append(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        fields: list[dict[Any, Any]] = [
            {k: f"{v:.3f}" if isinstance(v, float) else v for k, v in e.items()} for e in entries
        ]

        async def _xadd(r: Redis) -> None:
            async with r.pipeline(transaction=False) as pipe:
                for entry in fields:
                    pipe.xadd(STREAM_KEY, entry, maxlen=self._maxlen, approximate=True)
                await pipe.execute()

        await self._store.call(_xadd, durable=True)  # a revocation the client is told is done


class PushList:
    """A process's copy of the revocation set, kept in step with the stream."""

    def __init__(self, settings: Settings, name: str) -> None:
        self._settings = settings
        self._lifetime_s = settings.jwt_ttl_s + settings.jwt_leeway_s + 1
        self._max_silence_s = settings.pushlist_max_silence_s
        self._block_ms = settings.pushlist_block_ms
        self._client_name = f"{CLIENT_NAME_PREFIX}:{name}"[:100].replace(" ", "_")
        self._tokens: dict[str, float] = {}  # jti -> keep
        self._users: dict[str, tuple[float, float]] = {}  # user -> (revoked before, keep)
        self._families: dict[str, float] = {}  # family -> keep
        self._expiry: list[tuple[float, str, str]] = []  # (keep, kind, key): a min-heap
        self._high_water = 0  # most entries held since the tables were last compacted
        self._last_id = "0-0"
        self._heard_at: float | None = None  # monotonic time of the last heartbeat
        self._incomplete_until = 0.0  # epoch: trimmed entries we never read matter until
        self.loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._sentinel: Sentinel | None = None  # REDIS_SENTINELS set: finds the primary
        # REDIS_CLUSTER_NODES set: the tail's per-node breakers (not the store's gauge).
        self._node_breakers = NodeBreakers(settings.redis_breaker_cooldown_ms / 1000, gauge=False)
        SILENCE.set_function(self._silence)
        ENTRIES.set_function(self.__len__)

    def __len__(self) -> int:
        return len(self._tokens) + len(self._users) + len(self._families)

    @property
    def last_id(self) -> str:
        return self._last_id

    def _silence(self) -> float:
        return -1.0 if self._heard_at is None else time.monotonic() - self._heard_at

    # --- the read path: no I/O ------------------------------------------------------------
    def stale_reason(self) -> str | None:
        """Why the set may not be trusted now, or None."""
        if self._heard_at is None:
            return "revocation set not loaded yet (the stream has not been read)"
        silence = time.monotonic() - self._heard_at
        if silence > self._max_silence_s:
            return f"revocation stream silent for {silence:.1f} s (PUSHLIST_MAX_SILENCE_S)"
        if self._incomplete_until > _now():
            return "revocation stream was trimmed past entries this process never read"
        return None

    async def is_token_revoked(self, claims: dict[str, Any], family_claim: str) -> bool:
        """Whether a verified token is revoked; StoreUnavailable (503) when the set is stale."""
        if self._heard_at is None or time.monotonic() - self._heard_at > self._max_silence_s:
            raise StoreUnavailable(self.stale_reason())
        if self._incomplete_until and self._incomplete_until > _now():
            raise StoreUnavailable(self.stale_reason())
        if claims["jti"] in self._tokens:
            return True
        family = claims.get(family_claim)
        if isinstance(family, str) and family in self._families:
            return True
        revoked = self._users.get(claims["sub"])
        return revoked is not None and float(claims["iat"]) < revoked[0]

    async def readiness(self) -> str | None:
        return self.stale_reason()

    # --- applying entries -----------------------------------------------------------------
    def apply(self, entry_id: str, fields: dict[str, str]) -> None:
        self._last_id = entry_id
        APPLIED.inc()
        try:
            kind, key, keep = fields["k"], fields["v"], float(fields["keep"])
        except (KeyError, ValueError):
            log.warning("ignoring malformed revocation entry %s", entry_id)
            return
        if keep <= _now():
            return  # it can revoke nothing any more
        if kind == KIND_JTI:
            self._tokens[key] = max(keep, self._tokens.get(key, 0.0))
        elif kind == KIND_FAMILY:
            self._families[key] = max(keep, self._families.get(key, 0.0))
        elif kind == KIND_USER:
            try:
                at = float(fields["at"])
            except (KeyError, ValueError):
                log.warning("ignoring malformed revoked-before entry %s", entry_id)
                return
            before, kept = self._users.get(key, (0.0, 0.0))
            self._users[key] = (max(at, before), max(keep, kept))
        else:
            log.warning("ignoring revocation entry %s of unknown kind", entry_id)
            return
        heapq.heappush(self._expiry, (keep, kind, key))

    def expire(self, now: float | None = None) -> int:
        """Drop entries whose tokens have all expired; returns how many were dropped."""
        now = _now() if now is None else now
        self._high_water = max(self._high_water, len(self))
        dropped = self._expire(now)
        held = len(self)
        if dropped and held < self._high_water // 4:
            # A dict never shrinks its table on deletes: after a burst of revocations has
            # expired, copy the survivors so the memory goes back (amortised O(1)).
            self._tokens, self._families = dict(self._tokens), dict(self._families)
            self._users, self._expiry = dict(self._users), list(self._expiry)
            self._high_water = held
        return dropped

    def _expire(self, now: float) -> int:
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            keep, kind, key = heapq.heappop(heap)
            if kind == KIND_USER:
                held = self._users.get(key)
                if held is not None and held[1] <= keep:
                    del self._users[key]
                    dropped += 1
                continue
            table = self._tokens if kind == KIND_JTI else self._families
            if table.get(key, keep + 1) <= keep:  # not renewed by a later entry
                del table[key]
                dropped += 1
        return dropped

    # --- tailing the stream ----------------------------------------------------------------
    def start(self) -> None:
        """Start tailing in the background (the app's cleanup context stops it)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="pushlist-tail")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True  # the loops end even if redis-py swallows the cancellation
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                # never hang a shutdown on Redis: at most one blocked XREAD's time
                await asyncio.wait_for(task, self._block_ms / 1000 + 1.0)
        if self._sentinel is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._sentinel.aclose()
            self._sentinel = None

    def _client(self) -> Redis:
        settings = self._settings
        timeout = settings.redis_timeout_s
        bounds: dict[str, Any] = dict(
            # A blocked XREAD answers after block time; a reply later than that plus the
            # command timeout means Redis is not answering (paused, partitioned).
            socket_timeout=self._block_ms / 1000 + timeout,
            socket_connect_timeout=timeout,
            socket_keepalive=True,
            client_name=self._client_name,
            retry=Retry(NoBackoff(), 0),  # this loop reconnects, and checks the stream first
            max_connections=1,  # only this loop uses it: one connection
        )
        nodes = settings.cluster_nodes()
        if nodes:  # REDIS_CLUSTER_NODES: the stream is one key, so one shard answers
            # The store's own cluster client (one definition: routing, MOVED, no retry),
            # its nodes guarded by breakers of this tail's own (a shard that refused the
            # tail refuses its next try at once, until a probe after the cooldown).
            guarded = node_guarded(self._node_breakers, lambda _err: False)
            return cast(Redis, cluster_client(nodes, guarded, **bounds))
        sentinels = settings.sentinel_addresses()
        if sentinels:  # REDIS_SENTINELS: tail the current primary, as RedisStore does
            if self._sentinel is None:  # one for the process's life, closed by stop()
                self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                    sentinels,
                    sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
                )
            db = int(urlparse(settings.redis_url).path.strip("/") or 0)
            primary: Redis = self._sentinel.master_for(
                settings.redis_sentinel_master, db=db, **bounds
            )
            return primary
        client: Redis = aioredis.Redis.from_url(settings.redis_url, **bounds)
        return client

    async def run(self) -> None:
        """Tail the stream for ever, reconnecting with a short backoff."""
        delay = 0.05
        failing = False
        while not self._stopping:
            client = self._client()
            try:
                await self._check_stream(client)
                await self._tail(client)
            except (RedisError, OSError, StoreUnavailable) as err:  # the last: a breaker
                RECONNECTS.inc()
                if not failing:
                    log.warning("revocation stream unreachable (%s); retrying", type(err).__name__)
                failing = True
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            if self._heard_at is not None and time.monotonic() - self._heard_at < 1.0:
                delay = 0.05  # it was working a moment ago: reconnect at once
                if failing:
                    log.info("revocation stream reachable again")
                failing = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _check_stream(self, client: Redis) -> None:
        """On each (re)connect: is this the stream we read, and did we miss trimmed entries?"""
        try:
            info = await client.xinfo_stream(STREAM_KEY)
        except ResponseError:  # no such key: nothing written yet, or Redis restarted empty
            if self._last_id != "0-0":
                log.warning("revocation stream is gone (Redis restarted empty?); reading anew")
            self._last_id = "0-0"
            return
        values = {_text(k): v for k, v in info.items()}
        last_generated = _text(values.get("last-generated-id", "0-0"))
        if _id(last_generated) < _id(self._last_id):
            log.warning("revocation stream went backwards (Redis restarted?); reading anew")
            self._last_id = "0-0"
        # Trimming (MAXLEN ~) drops the oldest entries. If some were dropped and the first
        # one left is past our last ID, entries between the two may be lost to us; each
        # could revoke tokens for at most one token lifetime after it was written.
        added, length = int(values.get("entries-added", 0)), int(values.get("length", 0))
        first = _text(values.get("recorded-first-entry-id", "0-0"))
        if added > length and _id(first) > _id(self._last_id):
            until = _id(first)[0] / 1000 + self._lifetime_s
            if until > _now():
                self._incomplete_until = max(self._incomplete_until, until)
                log.error(
                    "revocation stream trimmed entries this process may never have read; "
                    "failing closed for %.0f s (raise PUSHLIST_MAXLEN)",
                    until - _now(),
                )

    async def _tail(self, client: Redis) -> None:
        block: int | None = None  # the first read after a (re)connect: catch up at once
        while not self._stopping:
            reply: Any = await client.xread(
                {STREAM_KEY: self._last_id}, count=READ_COUNT, block=block
            )
            count = 0
            for _stream, entries in reply or ():
                for raw_id, raw_fields in entries:
                    fields = {_text(k): _text(v) for k, v in raw_fields.items()}
                    self.apply(_text(raw_id), fields)
                    count += 1
            if count < READ_COUNT:  # a complete answer: the stream as it is now
                self._heard_at = time.monotonic()
                if not self.loaded.is_set():
                    self.loaded.set()
                    log.info("revocation set loaded: %d entries up to %s", len(self), self._last_id)
                block = self._block_ms
            self.expire()
            if count:
                await asyncio.sleep(0)  # let requests run between large batches
