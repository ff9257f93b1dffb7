"""Constant users for AUTHBENCH_SHAPE_STAGE_S seconds (the same as `-u N -t T`, as a shape)."""

from __future__ import annotations

from loadtests.shapes import Stage, StagedShape, constant_stages, env_float, env_int


class ConstantUsers(StagedShape):
    def stages(self) -> list[Stage]:
        return constant_stages(
            env_int("AUTHBENCH_SHAPE_USERS", 20), env_float("AUTHBENCH_SHAPE_STAGE_S", 30.0)
        )
