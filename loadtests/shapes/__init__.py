"""Load shapes: `LoadTestShape` subclasses driven by a table of stages.

Locust runs the first shape class it finds in its locustfiles, so each concrete shape has
a module of its own; add it next to the scenario file:

    locust -f loadtests/locustfile.py,loadtests/shapes/step_ramp.py --headless ...

The stage table comes from the environment, so the bench (and a user) can size a shape
without editing code:

| env | default | meaning |
| --- | --- | --- |
| AUTHBENCH_SHAPE_USERS | 20 | users (constant) or the first step (ramp) |
| AUTHBENCH_SHAPE_STEP_USERS | 20 | users added per step (ramp) |
| AUTHBENCH_SHAPE_STEPS | 5 | number of steps (ramp) |
| AUTHBENCH_SHAPE_STAGE_S | 30 | seconds per stage |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from locust import LoadTestShape


@dataclass(frozen=True)
class Stage:
    until_s: float  # the stage lasts until this many seconds after start
    users: int
    spawn_rate: float


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class StagedShape(LoadTestShape):
    """Walk a table of stages; stop after the last one."""

    abstract = True

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        for stage in self.stages():
            if elapsed < stage.until_s:
                return stage.users, stage.spawn_rate
        return None


def constant_stages(users: int, duration_s: float) -> list[Stage]:
    return [Stage(duration_s, users, float(users))]


def step_stages(first: int, step: int, steps: int, stage_s: float) -> list[Stage]:
    """first, first+step, ... users, each held for stage_s: where latency bends is saturation."""
    return [
        Stage(stage_s * (i + 1), first + step * i, float(max(step, first))) for i in range(steps)
    ]
