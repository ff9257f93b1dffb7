"""`authbench bench --gateway nginx` (issue 15 item 3): what reaches the deployment, and
the gateway as an axis (`--gateway ours,nginx`: both side by side in one run, each cell's
summary row naming the gateway that served it)."""

from __future__ import annotations

import pytest

from authbench.bench.protocol import cell_row
from authbench.cli import build_parser
from authbench.commands.bench import build_config
from authbench.targets import DeploymentSpec, open_deployment
from authbench.targets.compose import ComposeTarget
from authbench.targets.local import LocalCluster


def test_the_flag_reaches_the_local_cluster() -> None:
    config = build_config(build_parser().parse_args(["bench", "--gateway", "nginx"]))
    assert config.matrix.gateways == ("nginx",)
    assert {c.gateway for c in config.matrix.configs()} == {"nginx"}
    cell = config.matrix.configs()[0]
    cluster = open_deployment("local", DeploymentSpec(replicas=1, gateway=cell.gateway))
    assert isinstance(cluster, LocalCluster) and cluster.gateway_impl == "nginx"
    default = build_config(build_parser().parse_args(["bench"]))
    assert default.matrix.gateways == ("ours",)


def test_compose_takes_it_and_other_targets_refuse_it_up_front() -> None:
    config = build_config(
        build_parser().parse_args(["bench", "--gateway", "nginx", "--target", "compose"])
    )
    assert config.matrix.gateways == ("nginx",)
    target = open_deployment("compose", DeploymentSpec(replicas=1, gateway="nginx"))
    assert isinstance(target, ComposeTarget) and target.gateway == "nginx"
    with pytest.raises(ValueError, match="--gateway nginx: only with --target local or compose"):
        build_config(
            build_parser().parse_args(
                ["bench", "--gateway", "nginx", "--target", "external", "--gateway-url", "x"]
            )
        )
    with pytest.raises(ValueError, match="built for --target local and compose"):
        open_deployment("swarm", DeploymentSpec(replicas=1, gateway="nginx"))


def test_both_gateways_run_side_by_side_each_on_its_own_deployment() -> None:
    args = ["bench", "--gateway", "ours,nginx", "--modes", "session,jwt", "--replicas", "2"]
    matrix = build_config(build_parser().parse_args(args)).matrix
    cells = matrix.configs()
    assert sorted({(c.mode, c.gateway) for c in cells}) == [
        ("jwt", "nginx"), ("jwt", "ours"), ("session", "nginx"), ("session", "ours"),
    ]  # fmt: skip
    # one deployment per gateway: a group never mixes them
    for group in matrix.schedule():
        assert len({c.gateway for c in group}) == 1
    by_gateway = {c.gateway: c for c in cells if c.mode == "session"}
    assert by_gateway["nginx"].cell_id.endswith("-nginx")
    assert not by_gateway["ours"].cell_id.endswith("-ours")  # the default adds no suffix
    assert cell_row(by_gateway["nginx"]).gateway == "nginx"
    assert cell_row(by_gateway["ours"]).gateway == "ours"
    assert matrix.as_dict()["gateways"] == ["ours", "nginx"]


def test_an_unknown_gateway_is_refused() -> None:
    with pytest.raises(ValueError, match="--gateway: comma-separated ours and/or nginx"):
        build_config(build_parser().parse_args(["bench", "--gateway", "envoy"]))
