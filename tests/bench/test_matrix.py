"""The matrix: which cells, grouped by deployment, shuffled reproducibly between repeats."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from authbench.bench.matrix import Load, Matrix
from authbench.process import PROJECT_ROOT


def test_load_levels_parse_closed_loop_and_constant_arrival() -> None:
    assert Load.parse("24") == Load(24, 0.0)
    paced = Load.parse("20@15")
    assert (paced.users, paced.pacing_s, paced.offered_rps) == (20, pytest.approx(1 / 15), 300)
    for bad in ("0", "x", "5@-1"):
        with pytest.raises(ValueError):
            Load.parse(bad)


def test_default_matrix_has_nine_cells_in_six_cluster_groups() -> None:
    matrix = Matrix(("session", "jwt", "jwt+denylist"), (1, 2, 4), (Load(20, 15),), ("EdDSA",))
    schedule = matrix.schedule()
    assert matrix.cell_count == 9 == sum(len(group) for group in schedule)
    assert len(schedule) == 6  # session and jwt share a deployment; the denylist does not
    for group in schedule:
        assert len({cell.group for cell in group}) == 1


def test_order_is_reproducible_from_the_seed_and_shuffled_between_repeats() -> None:
    matrix = Matrix(("session", "jwt", "jwt+denylist"), (1, 2, 3, 4), (Load(5),), ("EdDSA",), 3, 7)
    ids = [[c.cell_id for c in group] for group in matrix.schedule()]
    assert ids == [[c.cell_id for c in group] for group in matrix.schedule()]
    per_repeat = [
        [c.group for group in matrix.schedule() for c in group if c.repeat == r] for r in range(3)
    ]
    assert sorted(per_repeat[0]) == sorted(per_repeat[1]) == sorted(per_repeat[2])
    assert len({tuple(order) for order in per_repeat}) > 1
    other = Matrix(("session", "jwt", "jwt+denylist"), (1, 2, 3, 4), (Load(5),), ("EdDSA",), 3, 8)
    assert ids != [[c.cell_id for c in group] for group in other.schedule()]


def test_jwt_algorithm_axis_applies_to_jwt_modes_only() -> None:
    matrix = Matrix(("session", "jwt"), (1,), (Load(5),), ("EdDSA", "RS256"))
    cells = matrix.configs()
    assert sorted((c.mode, c.jwt_alg) for c in cells) == [
        ("jwt", "EdDSA"),
        ("jwt", "RS256"),
        ("session", "EdDSA"),
    ]


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "loadtests").rglob("*.py")))
def test_locustfiles_import_nothing_asyncio(path: Path) -> None:
    """gevent patches the world in Locust: the services' asyncio libraries stay out."""
    banned = ("aiohttp", "redis", "auth_service", "resource_service", "gateway", "uvloop")
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in banned, f"{path.name} imports {name}"


def test_doubtful_cells_are_flagged_not_silently_reported() -> None:
    from dataclasses import replace

    from authbench.bench.matrix import Cell
    from authbench.bench.protocol import Protocol, cell_row, doubts

    cell = Cell("session", 2, Load(20, 15), "EdDSA")  # 300 reads/s offered
    healthy = replace(
        cell_row(cell), cpu_loadgen_pct=40.0, read_rps=295.0, requests=3000, failures=3
    )
    assert doubts(healthy, cell, Protocol()) == []
    saturated = replace(healthy, cpu_loadgen_pct=97.0)
    assert doubts(saturated, cell, Protocol()) == ["generator-saturated"]
    assert doubts(saturated, cell, Protocol(processes=2)) == []  # 97% of two cores is fine
    behind = replace(healthy, read_rps=200.0, failures=100)
    assert doubts(behind, cell, Protocol()) == ["behind-offered-rate", "failures>1%"]
    closed_loop = Cell("jwt", 1, Load(20), "EdDSA")
    assert doubts(replace(healthy, read_rps=10.0), closed_loop, Protocol()) == []
    idle = replace(healthy, requests=0, failures=0)
    assert doubts(idle, cell, Protocol()) == ["no-requests"]


def test_modes_all_is_every_bench_mode_and_the_default_stays_the_three_designs() -> None:
    from authbench import modes
    from authbench.bench.matrix import BENCH_CHOICES, MODE_ORDER, validate_modes

    assert validate_modes(["all"]) == BENCH_CHOICES
    assert set(MODE_ORDER) < set(BENCH_CHOICES)  # hybrids and opaque: by name or `all`
    # The default bench (about 5 minutes) compares the seed's three designs.
    assert MODE_ORDER == tuple(m.key for m in (modes.SESSION, modes.JWT, modes.JWT_DENYLIST))


def test_store_topologies_are_an_axis_each_on_its_own_deployment() -> None:
    matrix = Matrix(
        ("session", "jwt"), (2,), (Load(32),), ("EdDSA",), 2, stores=("cluster:1", "cluster:3")
    )
    cells = [cell for group in matrix.schedule() for cell in group]
    assert len(cells) == 8  # 2 modes x 2 stores x 2 repeats
    assert {c.cell_id for c in cells if c.repeat == 0} == {
        "r1-session-x2-u32-EdDSA-cluster1", "r1-session-x2-u32-EdDSA-cluster3",
        "r1-jwt-x2-u32-EdDSA-cluster1", "r1-jwt-x2-u32-EdDSA-cluster3",
    }  # fmt: skip
    for group in matrix.schedule():  # never two topologies on one deployment
        assert len({cell.topology for cell in group}) == 1
    assert Matrix(("jwt",), (1,), (Load(5),), ("EdDSA",)).configs()[0].cell_id.endswith("EdDSA")


def test_the_store_flag_takes_topologies_side_by_side_and_refuses_bad_ones() -> None:
    from authbench.bench.runner import BenchConfig, deployment_for
    from authbench.cli import build_parser
    from authbench.commands.bench import build_config
    from authbench.targets.local import LocalCluster

    def config(*argv: str) -> BenchConfig:
        return build_config(build_parser().parse_args(["bench", "--modes", "session", *argv]))

    assert config().matrix.stores == ("single",)
    both = config("--store", "cluster:1,cluster:3")
    assert both.matrix.stores == ("cluster:1", "cluster:3")
    for group in both.matrix.schedule():
        deployment = deployment_for(both, group[0])
        assert isinstance(deployment, LocalCluster)
        assert str(deployment.store) == group[0].topology
    for bad in ("cluster:0", "cluster:3,shards", ""):
        with pytest.raises(ValueError, match="--store"):
            config("--store", bad)
