"""The compose form of `--gateway nginx` (issue 15 item 3): its configs are the local
template's output (one definition), valid for Debian's nginx, and mounted by VALIDATE_AT."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from authbench.targets.compose import NGINX_PROFILE, NGINX_SERVICE, ComposeError, ComposeTarget
from authbench.targets.nginx import compose_config, compose_config_path, nginx_binary
from authcore.config import VALIDATION_PLACES


@pytest.mark.parametrize("place", VALIDATION_PLACES)
def test_the_committed_config_is_the_templates_output(place: str) -> None:
    assert compose_config_path(place).read_text() == compose_config(place), (
        "deploy/nginx/ is stale: python -m authbench.targets.nginx compose-configs"
    )


def test_the_compose_config_names_the_services_and_edge_only_at_the_gateway() -> None:
    replica, gateway = compose_config("replica"), compose_config("gateway")
    for text in (replica, gateway):
        assert "server resource:8101 " in text and "server auth:8081 " in text
        assert "keepalive 64;" in text  # the replicas' pool, as locally
        assert "listen 0.0.0.0:8080 " in text
    assert "auth_request" in gateway and "auth_request" not in replica


@pytest.mark.parametrize("place", VALIDATION_PLACES)
def test_nginx_accepts_the_config(place: str, tmp_path: Path) -> None:
    try:
        binary = nginx_binary()
    except FileNotFoundError:
        pytest.skip("nginx is not installed")
    # The host has no `auth` or `resource` to resolve, and no /tmp of the container's own.
    text = (
        compose_config(place)
        .replace("server auth:8081", "server 127.0.0.1:1")
        .replace("server resource:8101", "server 127.0.0.1:2")
        .replace("/tmp/", f"{tmp_path}/")
    )
    (tmp_path / "nginx-temp").mkdir()  # what the container's start script makes
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    done = subprocess.run(
        [binary, "-t", "-c", str(conf), "-e", "stderr"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker compose CLI")
def test_compose_mounts_the_config_of_its_validate_at() -> None:
    for place in VALIDATION_PLACES:
        target = ComposeTarget(
            project_name="authbench-never-started",
            env={"GATEWAY_PORT": "1", "VALIDATE_AT": place},
        )
        try:
            out = target.compose("config", "--format", "json", profiles=(NGINX_PROFILE,))
        except ComposeError as err:  # the docker CLI without compose v2
            pytest.skip(f"docker compose config failed: {err}")
        service = json.loads(out.stdout)["services"][NGINX_SERVICE]
        (volume,) = service["volumes"]
        assert Path(volume["source"]) == compose_config_path(place)
        assert volume["read_only"] is True
