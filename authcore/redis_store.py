"""The one Redis client factory, with bounded calls and a circuit breaker.

Every Redis call in the services goes through `RedisStore.call`, which gives three
guarantees the chaos scenarios measure:
- bounded: connect and command timeouts (REDIS_TIMEOUT_MS), no retries that multiply them;
- fail fast: after a failure the breaker opens and calls raise `StoreUnavailable` at once
  (503), instead of queueing behind a dead or paused server;
- self-healing: after the cooldown one probe call is let through; its success closes the
  breaker, so service resumes within about a cooldown of Redis returning.

Waiting for a pooled connection is back-pressure, not a Redis failure: a flood of
requests (say, random session IDs) must not make the service declare a healthy Redis
down. So calls are admitted by a semaphore as large as the pool: the pool itself never
waits, and a call that finds every connection busy queues for at most UPSTREAM_TIMEOUT_S,
then answers 503 `redis_busy` (StoreBusy) without touching the breaker; so does a call
that timed out while this process's own event loop was frozen (LoopStallMeter: the reply
was there, the loop was not running to read it). Before this, the pool's own "No
connection available" error opened the breaker, and ~58% of a legitimate user's requests
got 503 under 300 concurrent junk requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from authcore import metrics
from authcore.config import Settings
from authcore.errors import StoreBusy, StoreUnavailable

T = TypeVar("T")
Redis = aioredis.Redis

_POOL_EXHAUSTED = "No connection available."  # redis-py's BlockingConnectionPool timeout


class CircuitBreaker:
    """Closed -> (failure) -> open for `cooldown_s` -> one probe -> closed or open again."""

    __slots__ = ("_cooldown_s", "_open_until", "_probing")

    def __init__(self, cooldown_s: float) -> None:
        self._cooldown_s = cooldown_s
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until != 0.0

    def before_call(self) -> None:
        """Raise StoreUnavailable while open; let exactly one probe through after cooldown."""
        if self._open_until == 0.0:
            return
        if self._probing or time.monotonic() < self._open_until:
            metrics.REDIS_FAILURES.labels("breaker_open").inc()
            raise StoreUnavailable()
        self._probing = True

    def on_success(self) -> None:
        if self._open_until:
            self._open_until = 0.0
            metrics.REDIS_BREAKER_OPEN.set(0)
        self._probing = False

    def on_abandoned(self) -> None:
        """A call was cancelled mid-flight: it proved nothing, but frees the probe slot
        (otherwise a cancelled probe would keep the breaker open for good)."""
        self._probing = False

    def on_failure(self) -> None:
        self._open_until = time.monotonic() + self._cooldown_s
        self._probing = False
        metrics.REDIS_BREAKER_OPEN.set(1)


class LoopStallMeter:
    """Notices when this process's event loop itself was frozen (CPU starvation: argon2
    threads, a flood of requests), so a Redis timeout it caused is not blamed on Redis.

    A tick every PERIOD_S records how late it ran. A stall delays every timer alike: the
    tick due first runs first when the loop wakes, so by the time a Redis call's timeout
    fires, the stall that caused it is already on record."""

    PERIOD_S = 0.05

    def __init__(self, threshold_s: float) -> None:
        self._threshold_s = threshold_s
        self._last_stall_end = -1e9
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._due = self._loop.time() + self.PERIOD_S
            self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        if now - self._due >= self._threshold_s:
            self._last_stall_end = now
        self._due = now + self.PERIOD_S
        self._loop.call_at(self._due, self._tick)

    def stalled_within(self, window_s: float) -> bool:
        """Whether the loop froze for at least the threshold in the last `window_s`."""
        return self._loop is not None and self._loop.time() - self._last_stall_end <= window_s


class RedisStore:
    """A pooled redis.asyncio client (hiredis parser) behind a circuit breaker."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.redis_timeout_s
        size = settings.pool_size()
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=size,
            timeout=timeout,  # never waited on: `call` admits at most `size` calls at once
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            socket_keepalive=True,
            # Timeouts are never retried: a retry would double the time a client waits for
            # a 503 from a hung Redis. A connection error (refused, reset, EOF) is retried
            # once, at once, on a fresh connection: it costs microseconds on a dead Redis,
            # and after Redis returns it hides the pooled connections that died with the
            # old process (without it, each opened the breaker once; measured by chaos).
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        # from_pool hands the pool to the client, so close() disconnects it too.
        self.client: Redis = aioredis.Redis.from_pool(pool)
        self.breaker = CircuitBreaker(settings.redis_breaker_cooldown_ms / 1000)
        # One slot per pooled connection: each `call` holds at most one connection at a
        # time (a command, a pipeline or a script), so admitted calls never wait on it.
        self._slots = asyncio.Semaphore(size)
        # How long a call may queue for a connection before 503 redis_busy: as long as
        # the gateway waits for an answer (UPSTREAM_TIMEOUT_S), after which nobody does.
        # A queue that slow means an overloaded process, never a Redis failure.
        self._queue_timeout_s = settings.upstream_timeout_s
        # A call that timed out while the loop itself froze for 40% of the timeout lost
        # its time here, not in Redis.
        self._timeout_s = timeout
        self._stalls = LoopStallMeter(0.4 * timeout)

    async def call(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        """Run `operation(client)`; Redis being down becomes StoreUnavailable (503), a
        connection that does not come free in time StoreBusy (503, breaker untouched)."""
        self.breaker.before_call()
        self._stalls.start()
        slots = self._slots
        if slots.locked():  # the hot path skips the timer: a free slot is taken at once
            try:
                async with asyncio.timeout(self._queue_timeout_s):
                    await slots.acquire()
            except TimeoutError:
                self.breaker.on_abandoned()  # proved nothing, frees a probe slot it held
                metrics.REDIS_QUEUE_TIMEOUTS.inc()
                raise StoreBusy() from None
            except BaseException:
                self.breaker.on_abandoned()
                raise
        else:
            await slots.acquire()
        try:
            return await self._call(operation)
        finally:
            slots.release()

    async def _call(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            result = await operation(self.client)
        except RedisConnectionError as err:
            if str(err) == _POOL_EXHAUSTED:  # cannot happen with the slots; never "down"
                self.breaker.on_abandoned()
                metrics.REDIS_QUEUE_TIMEOUTS.inc()
                raise StoreBusy() from err
            self.breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable() from err
        except (RedisTimeoutError, TimeoutError) as err:  # TimeoutError: an OSError too
            if self._stalls.stalled_within(self._timeout_s):
                self.breaker.on_abandoned()  # our own stall: back-pressure, no verdict
                metrics.REDIS_QUEUE_TIMEOUTS.inc()
                raise StoreBusy() from err
            self.breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable() from err
        except OSError as err:
            self.breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable() from err
        except RedisError as err:
            # e.g. LOADING while a restarted Redis reads its AOF, or a script error.
            self.breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable(f"redis error: {type(err).__name__}") from err
        except BaseException:  # cancelled (client went away) or a bug: no verdict on Redis
            self.breaker.on_abandoned()
            raise
        self.breaker.on_success()
        return result

    async def ping(self) -> str | None:
        """Readiness check: None when Redis answers, otherwise the reason."""
        try:
            await self.call(lambda r: r.ping())
        except StoreBusy:
            return None  # every connection is busy talking to Redis: it is up
        except StoreUnavailable as err:
            return err.detail
        return None

    async def close(self) -> None:
        await self.client.aclose()
