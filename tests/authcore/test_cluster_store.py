"""RedisStore on a real three-shard Redis Cluster with one shard SIGKILLed: a breaker
per node, so only the calls whose keys live on the dead shard fail, even while
pipelines across every shard fail beside them (with redis-py's cluster retry on, each
such failure closed the live shards' connections in use: the live reads then failed
too, and opened their nodes' breakers).

Real processes only (authbench.stores.cluster.ShardedCluster), no services: the calls
are those the services make, a single command per key and pipelines across shards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest
import redis
import uvloop
from redis.asyncio.cluster import RedisCluster

from authbench.process import free_port_block
from authbench.stores.cluster import ShardedCluster
from authcore.config import Settings
from authcore.errors import StoreUnavailable
from authcore.redis_store import (
    ConnectionClosedUnderUs,
    NodeBreakers,
    Redis,
    RedisStore,
    node_guarded,
)

pytestmark = pytest.mark.slow


async def _get_each(r: Redis, keys: list[str]) -> list[object]:
    async with r.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        return list(await pipe.execute())


def test_a_dead_shard_fails_only_its_own_keys_under_concurrent_calls(tmp_path: Path) -> None:
    base = free_port_block(6)
    shards = ShardedCluster(
        ports=(base, base + 1, base + 2), bus_ports=(base + 3, base + 4, base + 5),
        workdir=tmp_path,
    )  # fmt: skip
    keys = [f"s:{i}" for i in range(90)]
    with shards:
        where = shards.shard_of(keys)
        live = [k for k, s in zip(keys, where, strict=True) if s != 2]
        settings = Settings.from_env({"REDIS_CLUSTER_NODES": shards.nodes_setting})

        async def scenario() -> tuple[int, int, int]:
            store = RedisStore(settings)
            try:
                for key in keys:
                    await store.call(lambda r, k=key: r.set(k, 1))
                shards.kill(2)
                live_failed = dead_ok = 0

                async def reader(key: str) -> None:
                    nonlocal live_failed
                    for _ in range(20):
                        try:
                            await store.call(lambda r: r.get(key))
                        except StoreUnavailable:
                            live_failed += 1
                        await asyncio.sleep(0)

                async def spanning() -> None:  # every shard in one pipeline: fails
                    nonlocal dead_ok
                    for _ in range(20):
                        try:
                            await store.call(lambda r: _get_each(r, keys[:12]))
                            dead_ok += 1
                        except StoreUnavailable:
                            pass
                        await asyncio.sleep(0)

                await asyncio.gather(*(reader(k) for k in live), *(spanning() for _ in range(8)))
                assert store.node_breakers is not None
                opened = len(store.node_breakers.open_nodes())
                return live_failed, dead_ok, opened
            finally:
                await store.close()

        live_failed, dead_ok, opened = asyncio.run(scenario())
    assert live_failed == 0
    assert dead_ok == 0
    assert opened == 1


def test_readiness_holds_while_any_shard_answers(tmp_path: Path) -> None:
    """The node a plain PING goes to (redis-py's default node) SIGKILLed: the store still
    reports ready, since the other shards serve their keys; with every shard dead, not."""
    base = free_port_block(4)
    shards = ShardedCluster(
        ports=(base, base + 1), bus_ports=(base + 2, base + 3), workdir=tmp_path
    )  # fmt: skip
    with shards:
        settings = Settings.from_env({"REDIS_CLUSTER_NODES": shards.nodes_setting})

        async def scenario() -> tuple[list[str | None], str | None]:
            store = RedisStore(settings)
            try:
                assert await store.ping() is None
                default = cast(RedisCluster, store.client).get_default_node().port
                shards.kill(shards.ports.index(default))
                after_one = [await store.ping() for _ in range(5)]
                shards.kill(1 - shards.ports.index(default))
                return after_one, await store.ping()
            finally:
                await store.close()

        after_one, after_all = asyncio.run(scenario())
    assert after_one == [None] * 5
    assert after_all is not None  # the reason, e.g. "the session store (Redis) is unreachable"


def test_a_connection_closed_under_a_command_is_a_503_not_a_500(redis_port: int) -> None:
    """uvloop refuses a write on a transport this process already closed with a
    RuntimeError (seen in a capped-shard bench as 500s on login); the node's connection
    turns it into a redis ConnectionError (so: 503) and gives the node no verdict."""
    breakers = NodeBreakers(1.0)
    connection_class = node_guarded(breakers, lambda _err: False)

    async def scenario() -> None:
        connection = connection_class(host="127.0.0.1", port=redis_port)
        await connection.send_command("PING")
        assert await connection.read_response() in (b"PONG", "PONG")
        assert connection._writer is not None
        connection._writer.transport.abort()  # closed under it, still "connected"
        await asyncio.sleep(0)
        with pytest.raises(ConnectionClosedUnderUs):
            await connection.send_command("PING")
        assert breakers.open_nodes() == []
        await connection.send_command("PING")  # a fresh connection
        assert await connection.read_response() in (b"PONG", "PONG")
        await connection.disconnect()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def _moved_count(port: int) -> int:
    """How many MOVED redirects the shard on `port` answered (INFO errorstats)."""
    with redis.Redis(port=port, socket_timeout=5.0) as client:
        stats = client.info("errorstats")
    return int(cast(dict[str, int], stats.get("errorstat_MOVED", {})).get("count", 0))


def test_a_cold_store_sends_its_first_concurrent_calls_to_their_keys_shards(
    tmp_path: Path,
) -> None:
    """A fresh process hit by many requests at once (a service just started, a bench
    driver): redis-py routed every command sent before it held the slot map to its
    default node, so two thirds of them came back MOVED on three shards, and every fifth
    MOVED made it close every connection in use. Under 4 x 32 reads on capped shards that
    became 91% StoreUnavailable (results/replica-capacity-20261201T211329Z). Now the map is
    learned first: no shard answers MOVED, every call succeeds, no breaker opens."""
    base = free_port_block(6)
    shards = ShardedCluster(
        ports=(base, base + 1, base + 2), bus_ports=(base + 3, base + 4, base + 5),
        workdir=tmp_path,
    )  # fmt: skip
    keys = [f"session:{i}" for i in range(96)]
    with shards:
        assert sorted(set(shards.shard_of(keys))) == [0, 1, 2]
        settings = Settings.from_env({"REDIS_CLUSTER_NODES": shards.nodes_setting})

        async def write() -> None:
            store = RedisStore(settings)
            try:
                for key in keys:
                    await store.call(lambda r, k=key: r.set(k, k))
            finally:
                await store.close()

        asyncio.run(write())
        for port in shards.ports:
            with redis.Redis(port=port) as client:
                client.config_resetstat()

        async def cold_reads() -> tuple[list[object], list[str]]:
            store = RedisStore(settings)  # a new process's store: no slot map yet
            try:
                got = await asyncio.gather(
                    *(store.call(lambda r, k=key: r.getex(k, px=60_000)) for key in keys),
                    return_exceptions=True,
                )
                assert store.node_breakers is not None
                return list(got), store.node_breakers.open_nodes()
            finally:
                await store.close()

        got, opened = asyncio.run(cold_reads())
        moved = {port: _moved_count(port) for port in shards.ports}
    assert [g.decode() if isinstance(g, bytes) else g for g in got] == keys
    assert moved == {port: 0 for port in shards.ports}
    assert opened == []


def test_a_moved_redirect_does_not_fail_the_calls_in_flight_on_other_shards(
    tmp_path: Path,
) -> None:
    """Slots move to another shard (resharding) while calls are in flight on a third:
    each MOVED follows the redirect and patches that slot. redis-py's default refreshed
    the whole map on every fifth MOVED by closing every node's connections, those in use
    too, so the calls in flight on the untouched shard failed (503) with nothing wrong
    there."""
    base = free_port_block(6)
    shards = ShardedCluster(
        ports=(base, base + 1, base + 2), bus_ports=(base + 3, base + 4, base + 5),
        workdir=tmp_path,
    )  # fmt: skip
    candidates = [f"k:{i}" for i in range(300)]
    with shards:
        where = shards.shard_of(candidates)
        # In flight on shard 0: blocking pops that answer (nil) after their block time.
        waiting = [k for k, s in zip(candidates, where, strict=True) if s == 0][:8]
        # Keys of six slots of shard 1, which move to shard 2 behind the client's back.
        with redis.Redis(port=shards.ports[1]) as one:
            slots: dict[int, str] = {}
            for key in (k for k, s in zip(candidates, where, strict=True) if s == 1):
                slots.setdefault(int(one.cluster("KEYSLOT", key)), key)
        moving = list(slots.values())[:6]
        assert len(moving) == 6
        settings = Settings.from_env(
            {"REDIS_CLUSTER_NODES": shards.nodes_setting, "REDIS_TIMEOUT_MS": "3000"}
        )

        async def scenario() -> tuple[list[object], list[object], list[str]]:
            store = RedisStore(settings)
            try:
                await store.call(lambda r: r.get(moving[0]))  # the map: slots on shard 1
                with redis.Redis(port=shards.ports[2]) as two:
                    target = two.cluster("MYID")
                for port in (shards.ports[2], shards.ports[1], shards.ports[0]):
                    with redis.Redis(port=port) as node:
                        for slot in list(slots)[:6]:
                            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target)
                pops = [
                    asyncio.create_task(store.call(lambda r, k=key: r.blpop([k], timeout=1)))
                    for key in waiting
                ]
                await asyncio.sleep(0.2)  # the pops are on the wire
                redirected: list[object] = []
                for key in moving:  # one MOVED each: the map names the old owner
                    try:
                        redirected.append(await store.call(lambda r, k=key: r.get(k)))
                    except StoreUnavailable as err:
                        redirected.append(err)
                popped = await asyncio.gather(*pops, return_exceptions=True)
                assert store.node_breakers is not None
                return redirected, list(popped), store.node_breakers.open_nodes()
            finally:
                await store.close()

        redirected, popped, opened = asyncio.run(scenario())
        moved = _moved_count(shards.ports[1])
    assert moved == 6  # the scenario happened: six redirects
    assert redirected == [None] * 6
    assert popped == [None] * len(waiting)
    assert opened == []


def _connections(port: int) -> tuple[set[int], int]:
    """(the ids of the clients connected to the shard on `port`, less this look's own; how
    many CLUSTER SLOTS it has answered)."""
    with redis.Redis(port=port, socket_timeout=5.0) as client:
        own = int(client.client_id())
        ids = {int(c["id"]) for c in client.client_list()} - {own}
        commands = cast(dict[str, dict[str, int]], client.info("commandstats"))
    return ids, int(commands.get("cmdstat_cluster|slots", {}).get("calls", 0))


def test_a_timeout_on_one_shard_leaves_the_other_shards_connections_alone(
    tmp_path: Path,
) -> None:
    """A shard too slow to answer (overloaded, here CLIENT PAUSE) fails its own call with a
    503, and nothing else: redis-py's cluster client took its TimeoutError for a node
    failure, re-read the topology and reconnected every connection of every shard, which
    on CPU-capped shards fed the overload (a capped-shard bench cell). Now the other shards
    keep every connection they had (a pool may still add one) and answer no CLUSTER SLOTS
    after it."""
    base = free_port_block(6)
    shards = ShardedCluster(
        ports=(base, base + 1, base + 2), bus_ports=(base + 3, base + 4, base + 5),
        workdir=tmp_path,
    )  # fmt: skip
    keys = [f"session:{i}" for i in range(30)]
    with shards:
        placed = shards.shard_of(keys)
        settings = Settings.from_env(
            {"REDIS_CLUSTER_NODES": shards.nodes_setting, "REDIS_TIMEOUT_MS": "100"}
        )
        slow = placed[0]
        slow_key = keys[0]
        others = [k for k, s in zip(keys, placed, strict=True) if s != slow]

        Look = dict[int, tuple[set[int], int]]

        async def scenario() -> tuple[Look, Look]:
            store = RedisStore(settings)
            try:
                for key in keys:  # every shard's pool holds live connections
                    await store.call(lambda r, k=key: r.set(k, k))
                for _ in range(3):  # the pools grow to what these rounds need
                    await asyncio.gather(*(store.call(lambda r, k=key: r.get(k)) for key in others))
                before = {p: _connections(p) for i, p in enumerate(shards.ports) if i != slow}
                with redis.Redis(port=shards.ports[slow]) as client:
                    client.execute_command("CLIENT", "PAUSE", "400", "ALL")
                with pytest.raises(StoreUnavailable):
                    await store.call(lambda r: r.get(slow_key))
                # The other shards go on as before, on the connections they had.
                for _ in range(3):
                    got = await asyncio.gather(
                        *(store.call(lambda r, k=key: r.get(k)) for key in others)
                    )
                    assert [g.decode() if isinstance(g, bytes) else g for g in got] == others
                after = {p: _connections(p) for i, p in enumerate(shards.ports) if i != slow}
                return before, after
            finally:
                await store.close()

        before, after = asyncio.run(scenario())
    for port, (ids, slots) in after.items():
        # Before, every connection of these shards was closed and made again.
        assert before[port][0] and before[port][0] <= ids, f"shard {port} lost connections"
        assert slots == before[port][1], f"shard {port} was asked CLUSTER SLOTS again"
