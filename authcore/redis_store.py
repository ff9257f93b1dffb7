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

Failover (issue 16): with REDIS_SENTINELS set, the pool is redis-py's async
SentinelConnectionPool: every new connection asks the Sentinels for the current primary,
so after a failover the breaker's probe lands on the new one; bounds, breaker and slots
are the same as for one Redis. New connections alone would leave the idle pooled ones on
the old primary, each costing a timed-out call (a 503) once the new one serves: a primary
that died with its host, or hangs, answers nothing, and after a failover one auth replica
of two answered a login 503 that way. So the store also asks the Sentinels every
SENTINEL_POLL_S (`_follow_primary`); when they name a new primary, redis-py's pool drops
its idle connections at once. Replication is asynchronous, so a write acknowledged just
before the primary dies may be missing on the promoted replica; `call(..., durable=True)`
closes that gap when REDIS_WAIT_REPLICAS > 0: the write and a `WAIT n ms` run on one
connection (WAIT counts that connection's writes), and fewer replicas than asked within
the timeout answers 503 `redis_not_replicated`, so what the client sees acknowledged is
on a replica.

Sharding (issue 17): with REDIS_CLUSTER_NODES set, the client is redis-py's async
RedisCluster (one pool per node, each as large as the slots below, so an admitted call
never waits for a connection on any node); bounds and slots are the same. A Redis
Cluster runs a transaction, a script or an MGET only on keys of one slot, so the stores
give the keys that must sit together a hash tag and split what need not (`cluster`
tells them which client they have). The breaker is per node there (NodeBreakers): one
dead shard must fail only the calls whose keys live on it. One breaker for the store
opened on the first call to the dead shard and then refused every call, so every
request failed, and its probes, landing on live and dead shards alike, kept it flapping.
So each node's connections carry that node's breaker (`node_guarded`): a call bound for
an open node answers 503 at once, without redis-py's topology refresh, and calls to the
live nodes go on. (The shards themselves must run `cluster-require-full-coverage no`,
or the live ones answer CLUSTERDOWN too once the dead one is marked failed.) Two redis-py
defaults undid that under load on healthy shards: a client without its slot map sends
commands to its default node (MOVED from the others; `_routed` learns the map first), and
every fifth MOVED closed every connection in use (`reinitialize_steps=0`: a MOVED patches
its slot). Together: 91% of reads 503 at 4 x 32 in flight on three capped shards.

Read replicas (issue 17): with REDIS_READ_REPLICAS set, `read` sends a read-only operation
to the replicas in turn (round robin), each with a pool and a breaker of its own; a
replica that is down or whose breaker is open is skipped, and with none left the read goes
to the primary, so a replica adds capacity, never a failure. Writes (`call`) stay on the
primary. A replica answers with what it has: a write acknowledged by the primary reaches it
after the replication lag (a logout included), which `read`'s callers must accept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from authcore import metrics
from authcore.config import Settings
from authcore.errors import StoreBusy, StoreNotReplicated, StoreUnavailable

T = TypeVar("T")
Redis = aioredis.Redis

# How often a Sentinel store asks the Sentinels who the primary is (`_follow_primary`).
SENTINEL_POLL_S = 0.5
_POOL_EXHAUSTED = "No connection available."  # redis-py's BlockingConnectionPool timeout


def _report_open(is_open: bool) -> None:
    metrics.REDIS_BREAKER_OPEN.set(int(is_open))


class CircuitBreaker:
    """Closed -> (failure) -> open for `cooldown_s` -> one probe -> closed or open again.

    `on_change(is_open)` is told when it opens or closes (by default: the gauge)."""

    __slots__ = ("_cooldown_s", "_on_change", "_open_until", "_probing")

    def __init__(self, cooldown_s: float, on_change: Callable[[bool], None] = _report_open) -> None:
        self._cooldown_s = cooldown_s
        self._on_change = on_change
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until != 0.0

    def before_call(self) -> None:
        """Raise StoreUnavailable while open; let exactly one probe through after cooldown."""
        if not self.admits():
            metrics.REDIS_FAILURES.labels("breaker_open").inc()
            raise StoreUnavailable()

    def admits(self) -> bool:
        """Whether a call may go now: closed, or the one probe after the cooldown (which
        this then counts as under way)."""
        if self._open_until == 0.0:
            return True
        if self._probing or time.monotonic() < self._open_until:
            return False
        self._probing = True
        return True

    def on_success(self) -> None:
        if self._open_until:
            self._open_until = 0.0
            self._on_change(False)
        self._probing = False

    def on_abandoned(self) -> None:
        """A call was cancelled mid-flight: it proved nothing, but frees the probe slot
        (otherwise a cancelled probe would keep the breaker open for good)."""
        self._probing = False

    def on_failure(self) -> None:
        self._open_until = time.monotonic() + self._cooldown_s
        self._probing = False
        self._on_change(True)


class NeverOpens(CircuitBreaker):
    """The store-wide breaker of a cluster store: a failure opens only the failed node's
    breaker (NodeBreakers), never the whole store's."""

    __slots__ = ()

    def on_failure(self) -> None:
        self._probing = False


class NodeBreakers:
    """One CircuitBreaker per Redis Cluster node ("host:port"), made on first use; the
    gauge counts the nodes whose breaker is open."""

    def __init__(self, cooldown_s: float, gauge: bool = True) -> None:
        self._cooldown_s = cooldown_s
        self._gauge = gauge  # False: a side client's nodes (the pushlist tail), not the store's
        self._breakers: dict[str, CircuitBreaker] = {}
        self._open: set[str] = set()

    def of(self, node: str) -> CircuitBreaker:
        breaker = self._breakers.get(node)
        if breaker is None:

            def changed(is_open: bool) -> None:
                (self._open.add if is_open else self._open.discard)(node)
                if self._gauge:
                    metrics.REDIS_BREAKER_OPEN.set(len(self._open))

            breaker = self._breakers[node] = CircuitBreaker(self._cooldown_s, changed)
        return breaker

    def open_nodes(self) -> list[str]:
        """The nodes whose breaker is open now."""
        return sorted(self._open)


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


class ConnectionClosedUnderUs(RedisConnectionError):
    """This process closed a node connection while a command was using it (redis-py's
    cluster client may drop a node's connections when another call on it fails): the
    command did not go through, and the node proved nothing. Without it, uvloop's
    "unable to perform operation on <TCPTransport closed=True>" (RuntimeError) or a
    writer already set to None (AttributeError) escaped as a 500: measured under the
    capped-shard bench, 4 logins of one cell."""


# What proves a node down (a refused or broken connection, no answer in time), as
# opposed to an error it answered with (MOVED, WRONGTYPE: it is up).
_NODE_DOWN = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


class NodeTimeout(RedisError):
    """A cluster node did not answer within REDIS_TIMEOUT_MS. redis-py's cluster client
    answers its own TimeoutError by re-reading the topology and marking every connection
    of every node for reconnect (`_execute_command`, then `set_nodes`): on a node slow
    from overload, each timeout then cost every shard a reconnect (HELLO) and one a
    CLUSTER SLOTS and COMMAND, which on CPU-capped shards fed the overload that made the
    timeouts (a capped-shard bench cell: 355 HELLO, 17 CLUSTER SLOTS, 13 COMMAND, and a
    third of the reads/s of the repeat before it). The timed-out connection is dropped by
    redis-py (its reply may still come), and this error, which its cluster client does
    not take for a node failure, reaches RedisStore as a timeout: the node's breaker and
    the 503 are the same, the other nodes' connections are left alone."""


# What a store call may time out with: redis-py's, asyncio's, and a cluster node's.
_TIMEOUTS = (RedisTimeoutError, TimeoutError, NodeTimeout)


def node_guarded(
    breakers: NodeBreakers, own_stall: Callable[[BaseException], bool]
) -> type[Connection]:
    """A Connection class whose every command first asks its node's breaker (StoreUnavailable
    at once while it is open) and tells it how the node answered. Every way redis-py's
    cluster client talks to a node (a command, a pipeline, a transaction, the topology
    query) goes through a connection's send and read, so this is the one place that knows
    both the node and the outcome. A send made while connecting (the handshake) is part of
    the command that connects, so it is not asked twice."""

    def settle(breaker: CircuitBreaker, err: BaseException) -> None:
        if isinstance(err, ConnectionClosedUnderUs):
            breaker.on_abandoned()
        elif isinstance(err, _NODE_DOWN) and not own_stall(err):
            breaker.on_failure()  # counted in REDIS_FAILURES once, by the call it fails
        elif isinstance(err, RedisError):
            breaker.on_success()  # it answered, with an error of the command's own
        else:  # cancelled, our own stall, the breaker's own refusal: no verdict
            breaker.on_abandoned()

    class NodeGuardedConnection(Connection):
        _sending = False

        def _breaker(self) -> CircuitBreaker:
            return breakers.of(f"{self.host}:{self.port}")

        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            if self._sending:  # the handshake of a connect this send started
                return await super().send_packed_command(command, check_health)
            breaker = self._breaker()
            breaker.before_call()
            self._sending = True
            try:
                try:
                    await super().send_packed_command(command, check_health)
                except (RuntimeError, AttributeError) as err:
                    raise await self._closed_under_us(err) from err
            except BaseException as err:
                settle(breaker, err)
                raise
            finally:
                self._sending = False

        async def read_response(self, *args: Any, **kwargs: Any) -> Any:
            breaker = self._breaker()
            try:
                try:
                    response = await super().read_response(*args, **kwargs)
                except (RuntimeError, AttributeError) as err:
                    raise await self._closed_under_us(err) from err
            except BaseException as err:
                settle(breaker, err)
                if isinstance(err, (RedisTimeoutError, TimeoutError)):
                    raise NodeTimeout(f"{self.host}:{self.port}: {err}") from err
                raise
            breaker.on_success()
            return response

        async def _closed_under_us(self, err: Exception) -> ConnectionClosedUnderUs:
            await self.disconnect(nowait=True)  # a fresh connection next time
            return ConnectionClosedUnderUs(f"connection closed while in use: {err}")

    return NodeGuardedConnection


def cluster_client(
    nodes: list[tuple[str, int]], connection_class: type[Connection], **bounds: Any
) -> RedisCluster:
    """The one Redis Cluster client of authcore (RedisStore's, and the pushlist tail's):
    redis-py's async RedisCluster with every node's connections of `connection_class`
    (`node_guarded`: each node's breaker) and the settings the measurements called for.
    `bounds`: timeouts, pool size per node, client name; a `retry` in them is overridden."""
    sharded = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        # A slot no live node serves fails its own calls (503), not every call.
        require_full_coverage=False,
        # A MOVED patches that slot and follows the redirect; never a whole refresh. By
        # default every 5th MOVED closed every node's connections, those in use included,
        # and each command in flight on them failed: see `learn_slots` for the MOVEDs a
        # cold client makes, and what followed.
        reinitialize_steps=0,
        # No retry on a cluster: redis-py retries a failed pipeline after closing every
        # node's connections, those in use on the live shards too, and those calls then
        # fail (measured by the shard-kill scenario: 34 of 37 sessions on live shards
        # failed once after the kill). A failed node's idle connections are dropped by
        # redis-py at once and its breaker lets no call through until a fresh connection
        # probes it.
        **(bounds | {"retry": Retry(NoBackoff(), 0)}),
    )
    # redis-py takes no connection class for a cluster: set it on the shared connection
    # settings every node is built from (the startup nodes are built already).
    sharded.nodes_manager.connection_kwargs["connection_class"] = connection_class
    for node in sharded.nodes_manager.startup_nodes.values():
        node.connection_class = connection_class
    return sharded


async def learn_slots(client: Redis) -> None:
    """Make a cluster client learn its slot map before a command needs it (the first
    command, or the first after redis-py dropped the map on a failure).

    redis-py routes a command sent while it holds no slot map to its default node, not to
    its key's shard (`execute_command` picks the routing before it initializes), so on N
    shards (N-1)/N of a cold client's concurrent first commands hit the wrong shard and
    come back MOVED. With one shard the default node owns every slot and this never shows.
    Measured (issue 17): 4 processes x 32 reads on 3 capped shards, those MOVEDs set off
    redis-py's refresh-on-MOVED, which closed every connection in use; their commands
    failed, the nodes' breakers opened, the next refresh was then refused by those
    breakers, and a failed refresh closes every connection again: 91% of reads
    StoreUnavailable for as long as the load lasted, on a healthy cluster. `initialize` is
    a no-op once the map is there, and one refresh serves every waiter."""
    sharded = cast(RedisCluster, client)
    if sharded.get_default_node() is None:
        await sharded.initialize()


class _ReadReplica:
    """One read replica: its own pool and its own breaker (its failures are not the
    primary's, nor is its state the store's gauge)."""

    __slots__ = ("address", "breaker", "client")

    def __init__(self, address: str, client: Redis, breaker: CircuitBreaker) -> None:
        self.address = address
        self.client = client
        self.breaker = breaker


def _url_at(url: str, host: str, port: int) -> str:
    """`url` (its scheme, credentials and db) pointed at host:port."""
    parts = urlparse(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = (credentials + "@" if credentials else "") + f"{host}:{port}"
    return parts._replace(netloc=netloc).geturl()


class RedisStore:
    """A pooled redis.asyncio client (hiredis parser) behind a circuit breaker (one per
    node of a cluster)."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.redis_timeout_s
        size = settings.pool_size()
        bounds: dict[str, Any] = dict(
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
        self._sentinel: Sentinel | None = None
        self._primary_pool: SentinelConnectionPool | None = None
        self._follower: asyncio.Task[None] | None = None
        sentinels = settings.sentinel_addresses()
        nodes = settings.cluster_nodes()
        # Whether keys are sharded: multi-key operations must then stay within one slot.
        self.cluster = bool(nodes)
        self.client: Redis
        cooldown_s = settings.redis_breaker_cooldown_ms / 1000
        self.node_breakers: NodeBreakers | None = None
        if nodes:
            self.node_breakers = NodeBreakers(cooldown_s)
            sharded = cluster_client(
                nodes,
                node_guarded(self.node_breakers, self._own_stall),
                # Per node. The slots bound the calls, but a pipeline across shards that
                # fails fast on a dead node returns while its commands to the live nodes
                # still hold a connection each; twice the slots leaves room for those.
                max_connections=2 * size,
                **bounds,
            )
            # Callers use the commands both clients share (typed as the plain client's).
            self.client = cast(Redis, sharded)
        elif sentinels:
            # Asking the Sentinels is bounded like any call; a dead Sentinel is skipped.
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                sentinels,
                sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
            )
            db = int(urlparse(settings.redis_url).path.strip("/") or 0)
            # A plain (non-blocking) pool: the slots below never let it run out.
            self.client = self._sentinel.master_for(
                settings.redis_sentinel_master, max_connections=size, db=db, **bounds
            )
            self._primary_pool = cast(SentinelConnectionPool, self.client.connection_pool)
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=size,
                timeout=timeout,  # never waited on: `call` admits at most `size` at once
                **bounds,
            )
            # from_pool hands the pool to the client, so close() disconnects it too.
            self.client = aioredis.Redis.from_pool(pool)
        # REDIS_READ_REPLICAS: where `read` goes, in turn; bounded like the primary.
        self._replicas = [
            _ReadReplica(
                f"{host}:{port}",
                aioredis.Redis.from_pool(
                    aioredis.BlockingConnectionPool.from_url(
                        _url_at(settings.redis_url, host, port),
                        max_connections=size,
                        timeout=timeout,
                        **bounds,
                    )
                ),
                CircuitBreaker(cooldown_s, on_change=lambda _is_open: None),
            )
            for host, port in settings.read_replicas()
        ]
        self._next_replica = 0
        self._wait_replicas = settings.redis_wait_replicas
        self._wait_timeout_ms = settings.redis_wait_timeout_ms
        # A cluster's nodes have a breaker each (node_breakers); the store's never opens.
        self.breaker = NeverOpens(cooldown_s) if nodes else CircuitBreaker(cooldown_s)
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

    def _own_stall(self, err: BaseException) -> bool:
        """Whether `err` is a timeout this process's own frozen loop caused."""
        return isinstance(err, _TIMEOUTS) and self._stalls.stalled_within(self._timeout_s)

    async def call(self, operation: Callable[[Redis], Awaitable[T]], durable: bool = False) -> T:
        """Run `operation(client)`; Redis being down becomes StoreUnavailable (503), a
        connection that does not come free in time StoreBusy (503, breaker untouched).

        `durable`: a write the client will be told is done; with REDIS_WAIT_REPLICAS it
        returns only once that many replicas have it (else StoreNotReplicated, 503)."""
        if durable and self._wait_replicas > 0:
            operation = self._replicated(operation)
        if self._primary_pool is not None and self._follower is None:
            self._follower = asyncio.create_task(self._follow_primary(self._primary_pool))
        self.breaker.before_call()
        return await self._admitted(operation, self.client, self.breaker)

    @property
    def read_replicas(self) -> int:
        """How many read replicas `read` may use (REDIS_READ_REPLICAS)."""
        return len(self._replicas)

    async def read(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        """Run a read-only `operation` on the next read replica that admits a call (round
        robin); one that fails passes it on to the next, and with none left (or none
        configured) the primary runs it as `call` does. What it returns may lag the
        primary by the replication delay."""
        count = len(self._replicas)
        for _ in range(count):
            replica = self._replicas[self._next_replica]
            self._next_replica = (self._next_replica + 1) % count
            if not replica.breaker.admits():
                continue
            try:
                return await self._admitted(operation, replica.client, replica.breaker)
            except StoreUnavailable:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the caller was cancelled mid-call: no second try for it
                continue  # this replica is down: the next one, then the primary
        return await self.call(operation)

    async def _admitted(
        self, operation: Callable[[Redis], Awaitable[T]], client: Redis, breaker: CircuitBreaker
    ) -> T:
        """Take a slot (waiting at most the queue timeout), then run the operation."""
        self._stalls.start()
        slots = self._slots
        if slots.locked():  # the hot path skips the timer: a free slot is taken at once
            try:
                async with asyncio.timeout(self._queue_timeout_s):
                    await slots.acquire()
            except TimeoutError:
                breaker.on_abandoned()  # proved nothing, frees a probe slot it held
                metrics.REDIS_QUEUE_TIMEOUTS.inc()
                raise StoreBusy() from None
            except BaseException:
                breaker.on_abandoned()
                raise
        else:
            await slots.acquire()
        try:
            return await self._call(operation, client, breaker)
        finally:
            slots.release()

    async def _routed(self, client: Redis) -> None:
        """A cluster's slot map, learned before the command needs it (`learn_slots`)."""
        if client is self.client and self.cluster:
            await learn_slots(client)

    async def _call(
        self, operation: Callable[[Redis], Awaitable[T]], client: Redis, breaker: CircuitBreaker
    ) -> T:
        try:
            await self._routed(client)
            result = await operation(client)
        except RedisConnectionError as err:
            # Cannot happen with the slots (and a cluster's headroom); never "down".
            if str(err) == _POOL_EXHAUSTED or isinstance(err, MaxConnectionsError):
                breaker.on_abandoned()
                metrics.REDIS_QUEUE_TIMEOUTS.inc()
                raise StoreBusy() from err
            breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable() from err
        except _TIMEOUTS as err:  # TimeoutError: an OSError too
            if self._own_stall(err):
                breaker.on_abandoned()  # our own stall: back-pressure, no verdict
                metrics.REDIS_QUEUE_TIMEOUTS.inc()
                raise StoreBusy() from err
            breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable() from err
        except OSError as err:
            breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable() from err
        except (RedisError, RedisClusterException) as err:
            # e.g. LOADING while a restarted Redis reads its AOF, or a script error; on a
            # cluster, a slot no live node serves (SlotNotCoveredError, not a RedisError).
            breaker.on_failure()
            metrics.REDIS_FAILURES.labels(type(err).__name__).inc()
            raise StoreUnavailable(f"redis error: {type(err).__name__}") from err
        except BaseException:  # cancelled (client went away) or a bug: no verdict on Redis
            breaker.on_abandoned()
            raise
        breaker.on_success()
        return result

    def _replicated(
        self, operation: Callable[[Redis], Awaitable[T]]
    ) -> Callable[[Redis], Awaitable[T]]:
        """`operation`, then WAIT, both on one pooled connection: WAIT waits for the writes
        of the connection it is sent on, so it must follow the write on the same one."""
        wanted, timeout_ms = self._wait_replicas, self._wait_timeout_ms

        async def replicated(client: Redis) -> T:
            pool = client.connection_pool
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                pinned = Redis(connection_pool=cast(ConnectionPool, _PinnedPool(pool, connection)))
                result = await operation(pinned)
                # WAIT may block for its own timeout: the socket waits that much longer.
                bound = connection.socket_timeout
                connection.socket_timeout = (bound or 0) + timeout_ms / 1000
                try:
                    acked = await pinned.execute_command("WAIT", wanted, timeout_ms)  # type: ignore[no-untyped-call]
                finally:
                    connection.socket_timeout = bound
            finally:
                await pool.release(connection)
            if int(acked) < wanted:
                metrics.REDIS_FAILURES.labels("not_replicated").inc()
                raise StoreNotReplicated(
                    f"the write reached {acked} of {wanted} replicas within {timeout_ms} ms"
                )
            return result

        return replicated

    async def ping(self) -> str | None:
        """Readiness check: None when Redis answers, otherwise the reason. A cluster is
        up while any of its nodes answers: with one shard dead the process still serves
        every key on the others, and a readiness probe that failed would take it out of
        rotation for all of them (a plain PING goes to one node, maybe the dead one)."""
        try:
            await self.call(_ping_any_node if self.cluster else lambda r: r.ping())
        except StoreBusy:
            return None  # every connection is busy talking to Redis: it is up
        except StoreUnavailable as err:
            return err.detail
        return None

    @staticmethod
    async def _follow_primary(pool: SentinelConnectionPool) -> None:
        """Ask the Sentinels who the primary is, every SENTINEL_POLL_S, for as long as the
        store is open: a new answer makes the pool drop its idle connections to the old
        one (redis-py's `get_master_address`), before a call can take one."""
        while True:
            await asyncio.sleep(SENTINEL_POLL_S)
            try:
                await pool.get_master_address()  # type: ignore[no-untyped-call]
            except (RedisError, OSError):
                continue  # no Sentinel answered, or none names a primary: calls say so

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        await self.client.aclose()
        for replica in self._replicas:
            await replica.client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()


async def _ping_any_node(client: Redis) -> bool:
    """PING each primary of a cluster in turn until one answers; the last error if none."""
    sharded = cast(RedisCluster, client)
    primaries = sharded.get_primaries()
    if not primaries:  # no command yet: the first one learns the nodes and the slot map
        return bool(await sharded.ping())
    failure: BaseException = StoreUnavailable()
    for node in primaries:
        try:
            return bool(await sharded.ping(target_nodes=node))
        except (RedisError, StoreUnavailable) as err:  # its breaker open, or down
            failure = err
    raise failure


class _PinnedPool:
    """A pool that hands out one given connection (and never closes it): pipelines and
    scripts run by a `Redis` over it all go through that one connection."""

    def __init__(self, pool: ConnectionPool, connection: Any) -> None:
        self._pool = pool
        self._connection = connection
        self.connection_kwargs = pool.connection_kwargs

    async def get_connection(self, *_args: Any, **_kwargs: Any) -> Any:
        return self._connection

    async def release(self, _connection: Any) -> None:
        return None

    def get_encoder(self) -> Any:
        return self._pool.get_encoder()  # type: ignore[no-untyped-call]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)
