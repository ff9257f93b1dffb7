"""Store topologies the harness starts besides one redis-server (`--store`).

- `sentinel.py`: `SentinelSet`, a primary, one replica and three Sentinels;
- `cluster.py`: `ShardedCluster`, N Redis Cluster primaries;
- `replicas.py`: `ReplicaSet`, one primary and N read replicas;
- `node.py`: one process of any of them, and waiting for its PING.
"""
