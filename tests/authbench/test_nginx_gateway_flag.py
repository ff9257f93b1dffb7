"""`authbench bench --gateway nginx` (issue 15 item 3): what reaches the deployment."""

from __future__ import annotations

import pytest

from authbench.cli import build_parser
from authbench.commands.bench import build_config
from authbench.targets import DeploymentSpec, open_deployment
from authbench.targets.local import LocalCluster


def test_the_flag_reaches_the_local_cluster() -> None:
    config = build_config(build_parser().parse_args(["bench", "--gateway", "nginx"]))
    assert config.gateway == "nginx"
    cluster = open_deployment("local", DeploymentSpec(replicas=1, gateway=config.gateway))
    assert isinstance(cluster, LocalCluster) and cluster.gateway_impl == "nginx"
    default = build_config(build_parser().parse_args(["bench"]))
    assert default.gateway == "ours"


def test_other_targets_refuse_it_up_front() -> None:
    with pytest.raises(ValueError, match="--gateway nginx: only with --target local"):
        build_config(
            build_parser().parse_args(["bench", "--gateway", "nginx", "--target", "compose"])
        )
    with pytest.raises(ValueError, match="--target local only"):
        open_deployment("compose", DeploymentSpec(replicas=1, gateway="nginx"))


def test_an_unknown_gateway_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--gateway", "envoy"])
