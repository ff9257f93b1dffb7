"""The Redis sampler over a store of several nodes: a Redis Cluster's load is the sum of
its shards', each shard's kept beside it (pure arithmetic on INFO dicts)."""

from __future__ import annotations

import pytest

from authbench.bench.samplers import RedisSampler, RedisSnapshot


def _info(commands: int, cpu_s: float, gets: int) -> dict[str, object]:
    return {
        "total_commands_processed": commands,
        "used_cpu_user": cpu_s,
        "used_cpu_sys": 0.0,
        "cmdstat_get": {"calls": gets},
        "cmdstat_info": {"calls": commands - gets},
    }


def _at(snapshot: RedisSnapshot | None, at: float) -> RedisSnapshot:
    assert snapshot is not None
    nodes = {name: _at(node, at) for name, node in snapshot.nodes.items()}
    return RedisSnapshot(at, snapshot.commands, snapshot.cpu_s, snapshot.per_command, nodes)


def test_a_cluster_window_sums_the_shards_and_keeps_each() -> None:
    start = RedisSampler.combine({
        "redis-shard-1": RedisSampler.snapshot(_info(10, 1.0, 0)),
        "redis-shard-2": RedisSampler.snapshot(_info(20, 2.0, 0)),
    })  # fmt: skip
    end = RedisSampler.combine({
        "redis-shard-1": RedisSampler.snapshot(_info(211, 1.5, 200)),
        "redis-shard-2": RedisSampler.snapshot(_info(421, 2.25, 400)),
    })  # fmt: skip
    window = RedisSampler.window(_at(start, 0.0), _at(end, 2.0))
    assert window is not None
    # 600 GETs in 2 s; each shard's one INFO of ours (the start snapshot's) taken out.
    assert window.commands == 600 and window.ops_per_s == pytest.approx(300.0)
    assert window.per_command == {"get": 600}
    assert window.cpu_pct == pytest.approx(37.5)  # 0.75 s of CPU over 2 s
    assert window.nodes["redis-shard-1"].ops_per_s == pytest.approx(100.0)
    assert window.nodes["redis-shard-2"].ops_per_s == pytest.approx(200.0)
    assert window.nodes["redis-shard-2"].cpu_pct == pytest.approx(12.5)


def test_a_shard_that_cannot_be_read_spoils_the_sample() -> None:
    assert RedisSampler.combine({"a": RedisSampler.snapshot(_info(1, 0, 0)), "b": None}) is None
    one = RedisSampler.combine({"redis": RedisSampler.snapshot(_info(1, 0.5, 0))})
    assert one is not None and one.nodes == {}  # a single Redis is not a store of nodes
