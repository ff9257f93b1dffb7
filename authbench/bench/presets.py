"""Named studies: `authbench bench --preset NAME` sets the matrix and the protocol at once.

`scaling` is the central store's cost, measured on one machine in about 15 minutes:

- distance: each mode at a paced load (30 users x 15 reads/s = 450 reads/s offered, so
  latency is not hidden by coordinated omission), 1 replica, Redis direct, through the
  proxy at 0 ms (the control), and 1 and 5 ms away;
- capacity: each mode in closed loop (32 users as fast as answers come: the ceiling),
  1 and 4 replicas, Redis held to 0.02 core and uncapped. Measured here, a capped Redis
  spends ~10-25 µs of CPU per command, so 0.02 core serves roughly 800-2000 commands/s:
  below what this machine's replicas ask of it in closed loop (~2700 reads/s), while 0.05
  core (2000-5000/s) would hardly bind;
- 3 repeats, each in a freshly shuffled order; short cells (3 s warm-up, which covers the
  users' argon2id logins, then 4 s capture), which the µs histograms make enough at
  these rates. 72 cells on 18 cluster start-ups: about 14 minutes on this machine.

Flags given with a preset still win for what the preset does not fix (`--target`,
`--pin`, `--processes`, `--seed`, `--results-dir`, ...); `--redis-cpus` replaces the
capacity axis's quota (e.g. `--preset scaling --redis-cpus 0.02`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authbench.bench.axes import NO_PROXY, StoreLink
from authbench.bench.matrix import MODE_ORDER, Load, Matrix

SCALING_RTTS_MS = (1.0, 5.0)
SCALING_REDIS_CPUS = 0.02
SCALING_REPLICAS = (1, 4)  # with 2 as well the study takes 17 minutes here
SCALING_PACED = Load(30, 15.0)
SCALING_CLOSED = Load(32)


@dataclass(frozen=True)
class Preset:
    name: str
    matrix: Matrix
    protocol: dict[str, Any]  # Protocol fields the preset sets
    about: str


def scaling(
    repeats: int = 3,
    seed: int = 1,
    jwt_alg: str = "EdDSA",
    redis_cpus: tuple[float, ...] = (SCALING_REDIS_CPUS,),
) -> Preset:
    """The study; `redis_cpus` (from --redis-cpus) replaces the capacity axis's quota."""
    links = (NO_PROXY, StoreLink(True, 0.0), *(StoreLink(True, r) for r in SCALING_RTTS_MS))
    distance = Matrix(
        modes=MODE_ORDER,
        replicas=(1,),
        loads=(SCALING_PACED,),
        jwt_algs=(jwt_alg,),
        store_links=links,
    )
    capacity = Matrix(
        modes=MODE_ORDER,
        replicas=SCALING_REPLICAS,
        loads=(SCALING_CLOSED,),
        jwt_algs=(jwt_alg,),
        redis_cpus=(*redis_cpus, None),
    )
    study = Matrix(
        modes=MODE_ORDER,
        replicas=(1,),
        loads=(SCALING_PACED,),
        jwt_algs=(jwt_alg,),
        repeats=repeats,
        seed=seed,
        also=(distance, capacity),
    )
    return Preset(
        name="scaling",
        matrix=study,
        protocol={"warmup_s": 3.0, "capture_s": 4.0, "rest_s": 0.5, "accounts": 32},
        about="store distance (direct, proxy 0/1/5 ms; 30@15, x1) and store capacity "
        f"(Redis {'/'.join(f'{c:g}' for c in redis_cpus)} core vs uncapped; closed loop 32 "
        "users; x1,4), "
        f"{repeats} shuffled repeats",
    )


PRESETS = {"scaling": scaling}
