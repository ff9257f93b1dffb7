"""The validation-placement axis of the bench (`--validate-at`, issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from authbench.bench import axes
from authbench.bench.matrix import Load, Matrix
from authbench.bench.protocol import cell_row
from authbench.bench.summary import read_summary, write_summary


def test_parse_validate_at_keeps_order_and_refuses_other_places() -> None:
    assert axes.parse_validate_at("replica,gateway") == ("replica", "gateway")
    assert axes.parse_validate_at(" gateway , gateway ") == ("gateway",)
    for bad in ("", "edge", "replica,edge", ","):
        with pytest.raises(ValueError, match="--validate-at"):
            axes.parse_validate_at(bad)


def test_each_placement_is_its_own_deployment_and_cell() -> None:
    matrix = Matrix(
        ("session", "jwt"), (2,), (Load(10, 5.0),), ("EdDSA",),
        validate_at=("replica", "gateway"),
    )  # fmt: skip
    cells = matrix.configs()
    assert len(cells) == 4
    edge = [c for c in cells if c.validate_at == "gateway"]
    assert {c.mode for c in edge} == {"session", "jwt"}
    for cell in edge:
        assert cell.deployment["VALIDATE_AT"] == "gateway"
        assert cell.cell_id.endswith("-at-gateway")
    for cell in cells:
        if cell.validate_at == "replica":
            assert "VALIDATE_AT" not in cell.deployment  # today's cells stay as they were
            assert "-at-" not in cell.cell_id
    # A placement is a different cluster: modes share one, placements never do.
    groups: dict[object, set[str]] = {}
    for cell in cells:
        groups.setdefault(cell.group, set()).add(cell.validate_at)
    assert sorted(map(sorted, groups.values())) == [["gateway"], ["replica"]]
    assert matrix.as_dict()["validate_at"] == ["replica", "gateway"]


def test_summary_csv_names_each_cells_placement(tmp_path: Path) -> None:
    cells = Matrix(
        ("session",), (1,), (Load(4),), ("EdDSA",), validate_at=("replica", "gateway")
    ).configs()
    rows = [cell_row(cell) for cell in cells]
    write_summary(tmp_path / "summary.csv", rows)
    back = {row.cell_id: row.validate_at for row in read_summary(tmp_path / "summary.csv")}
    assert back == {cell.cell_id: cell.validate_at for cell in cells}
    assert sorted(back.values()) == ["gateway", "replica"]
