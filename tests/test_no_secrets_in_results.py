"""No committed result file carries a secret: a run's manifest records the settings it ran
with, and a cluster generates secrets of its own (HS256 secret, introspection secret,
key-encryption key, assertion key), which must never be written down with them."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authbench.process import PROJECT_ROOT
from authbench.targets.base import REDACTED, SECRET_SETTINGS, redact

# Every setting whose name says it holds a secret (the public verification key aside): the
# one list, which deployments also redact their reported settings by.
SECRETS = SECRET_SETTINGS


def committed_json() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "results"], cwd=PROJECT_ROOT, capture_output=True,
            text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [PROJECT_ROOT / line for line in out.splitlines() if line.endswith(".json")]


def secret_values(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRETS and isinstance(value, str) and value and value != REDACTED:
                yield f"{path}/{key}"
            yield from secret_values(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from secret_values(value, f"{path}/{i}")


def test_the_secret_settings_are_known() -> None:
    assert {"JWT_HS256_SECRET", "AUTH_ADMIN_TOKEN"} <= SECRETS  # the guard guards something


def test_no_committed_result_holds_a_secret_setting_with_a_value() -> None:
    leaks = []
    for path in committed_json():
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        leaks += [f"{path.relative_to(PROJECT_ROOT)}{where}" for where in secret_values(document)]
    assert not leaks, f"secrets written into results: {leaks}"


def test_the_check_finds_a_secret() -> None:
    planted = {"deployments": [{"settings": {"JWT_HS256_SECRET": "s3cr3t", "LOG_LEVEL": "x"}}]}
    assert list(secret_values(planted)) == ["/deployments/0/settings/JWT_HS256_SECRET"]


def test_a_deployment_reports_a_secret_only_as_set_or_not() -> None:
    reported = redact({"INTROSPECT_SECRET": "s" * 40, "JWT_HS256_SECRET": "", "LOG_LEVEL": "x"})
    assert reported == {"INTROSPECT_SECRET": REDACTED, "JWT_HS256_SECRET": "", "LOG_LEVEL": "x"}
    assert not list(secret_values({"settings": reported}))
