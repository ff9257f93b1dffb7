"""Compose runs N auth replicas that share their signing keys (issue 16, item 2).

Engine-free: what `docker compose config` resolves (the CLI alone, no daemon, no build).
The replicas themselves are tested with real processes in tests/e2e/test_auth_replicas.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from authbench.targets.base import REDACTED
from authbench.targets.compose import ComposeTarget
from authcore.config import Settings
from authcore.keystore import new_kek

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode,
    reason="needs the docker compose CLI",
)


def test_auth_scales_behind_the_gateway_with_one_key_encryption_key() -> None:
    kek = new_kek()
    target = ComposeTarget(env={"AUTH_REPLICAS": "3", "JWT_KEY_ENCRYPTION_KEY": kek})
    services = target.config["services"]
    assert services["auth"]["deploy"]["replicas"] == 3
    gateway = services["gateway"]["environment"]
    assert gateway["AUTH_URL"] == "dns://auth:8081"  # every replica, re-resolved
    assert Settings.from_env({**gateway, "PORT": "8080"}).auth_service_url == "http://auth:8081"
    assert services["resource"]["environment"]["AUTH_URL"] == "http://auth:8081"
    for name in ("auth", "resource", "gateway"):
        assert services[name]["environment"]["JWT_KEY_ENCRYPTION_KEY"] == kek
    # The key never reaches a manifest through the settings the harness records.
    assert target.settings["JWT_KEY_ENCRYPTION_KEY"] == REDACTED  # set, and no more
    assert kek not in str(dict(target.settings))


def test_by_default_one_auth_replica_and_no_key() -> None:
    target = ComposeTarget(env={"AUTH_REPLICAS": "", "JWT_KEY_ENCRYPTION_KEY": ""})
    services = target.config["services"]
    assert services["auth"]["deploy"]["replicas"] == 1
    assert services["auth"]["environment"]["JWT_KEY_ENCRYPTION_KEY"] == ""
