"""The raw library costs the replicas are compared with, measured on this core.

`python benchmarks/raw_costs.py jwt ALG TOKEN KEYFILE` : PyJWT's decode alone (the same
  audience/issuer/leeway/required claims as the replica), µs of CPU per call;
`python benchmarks/raw_costs.py redis URL [plain|store]` : one redis.asyncio GET (hiredis
  parser, a pooled client, 16 concurrent callers on uvloop, as wrk -c16 makes a replica), µs of CPU
  per GET.
Prints one JSON object. Run it under `taskset -c N` to pin it like the replica.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

REQUIRED = ["iss", "aud", "sub", "exp", "nbf", "iat", "jti"]


def jwt_cost(alg: str, token: str, key_file: str, seconds: float = 1.0) -> dict[str, Any]:
    import jwt

    with open(key_file) as f:
        material = json.load(f)
    key: Any = (
        material["secret"].encode() if alg == "HS256" else jwt.PyJWK(material, algorithm=alg).key
    )
    decoder = jwt.PyJWT()
    options: Any = {"require": REQUIRED}

    def once() -> None:
        decoder.decode(
            token, key, algorithms=[alg], audience="authbench-api", issuer="authbench",
            leeway=5, options=options,
        )  # fmt: skip

    for _ in range(200):
        once()
    n = 0
    start_cpu = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            once()
        n += 100
    cpu = time.process_time() - start_cpu
    return {"what": f"PyJWT decode {alg}", "calls": n, "us_per_call": cpu / n * 1e6}


def redis_cost(
    url: str, client_kind: str = "plain", seconds: float = 1.0, concurrency: int = 16
) -> dict[str, Any]:
    """`plain`: redis.asyncio's defaults (a pool of 16). `store`: the client exactly as
    the services configure it (authcore.redis_store: bounded pool wait, socket timeouts,
    one retry), calling `client.get` directly, without the store's breaker around it."""
    import os

    import redis.asyncio as aioredis
    import uvloop

    async def main() -> dict[str, Any]:
        if client_kind == "store":
            from authcore.config import Settings
            from authcore.redis_store import RedisStore

            os.environ["REDIS_URL"] = url
            store = RedisStore(Settings.from_env())
            client = store.client
            pool = client.connection_pool
        else:
            pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=16)
            client = aioredis.Redis(connection_pool=pool)
        await client.set("bench:raw", "x" * 80)
        done = 0
        stop = False

        async def worker() -> None:
            nonlocal done
            while not stop:
                await client.get("bench:raw")
                done += 1

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(0.3)  # warm the pool
        done, start_cpu, start = 0, time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        calls, cpu, wall = done, time.process_time() - start_cpu, time.perf_counter() - start
        stop = True
        await asyncio.gather(*tasks)
        await client.aclose()
        await pool.disconnect()
        return {
            "what": f"redis.asyncio GET ({client_kind} client)", "calls": calls,
            "us_per_call": cpu / calls * 1e6,
            "wall_us_per_call": wall / calls * 1e6,
            "parser": type(client.connection_pool.connection_class()._parser).__name__,
        }  # fmt: skip

    uvloop.install()
    return asyncio.run(main())


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "jwt":
        print(json.dumps(jwt_cost(sys.argv[2], sys.argv[3], sys.argv[4])))
    elif kind == "redis":
        print(json.dumps(redis_cost(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "plain")))
    else:
        raise SystemExit(__doc__)
