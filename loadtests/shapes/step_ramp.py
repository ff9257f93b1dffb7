"""A step ramp: more users every stage, to find where latency bends (saturation)."""

from __future__ import annotations

from loadtests.shapes import Stage, StagedShape, env_float, env_int, step_stages


class StepRamp(StagedShape):
    def stages(self) -> list[Stage]:
        return step_stages(
            env_int("AUTHBENCH_SHAPE_USERS", 20),
            env_int("AUTHBENCH_SHAPE_STEP_USERS", 20),
            env_int("AUTHBENCH_SHAPE_STEPS", 5),
            env_float("AUTHBENCH_SHAPE_STAGE_S", 30.0),
        )
