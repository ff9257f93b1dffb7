"""Store topologies the harness starts besides one redis-server (`--store`).

- `sentinel.py`: `SentinelSet`, a primary, one replica and three Sentinels.
"""
