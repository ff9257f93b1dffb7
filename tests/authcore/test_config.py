"""Settings: parsing, validation with clear messages, and the README table kept honest."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from authbench.process import PROJECT_ROOT
from authcore.config import Settings, documented_settings
from authcore.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({})
    assert (s.jwt_algorithm, s.jwt_ttl_s, s.jwt_revocation, s.seed_users) == (
        "EdDSA", 300, "none", 1000,
    )  # fmt: skip
    assert s.redis_url.endswith(":6390/0")  # never the user's own 6379


def test_environment_values_are_parsed_by_type() -> None:
    s = Settings.from_env(
        {"JWT_TTL_S": "60", "COOKIE_SECURE": "yes", "UPSTREAM_TIMEOUT_S": "1.5", "JWT_ALG": "ES256"}
    )
    assert (s.jwt_ttl_s, s.cookie_secure, s.upstream_timeout_s, s.jwt_algorithm) == (
        60, True, 1.5, "ES256",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_TTL_S": "five"}, "JWT_TTL_S='five' is not a valid int"),
        ({"JWT_ALG": "none"}, "JWT_ALG='none': expected one of"),
        ({"JWT_ALG": "HS256", "JWT_HS256_SECRET": "short"}, "at least 32 bytes"),
        ({"JWT_REVOCATION": "blocklist"}, "JWT_REVOCATION"),
        ({"ARGON2_MEMORY_KIB": "1024"}, "OWASP"),
        ({"SESSION_IDLE_S": "100", "SESSION_ABSOLUTE_S": "50"}, "SESSION_ABSOLUTE_S"),
        ({"COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
        ({"JWT_TTL_S": "0"}, "JWT_TTL_S must be positive"),  # jwt-short's TTL (issue 14)
        ({"JWT_TTL_S": "-30"}, "JWT_TTL_S must be positive"),
        ({"PUSHLIST_MAX_SILENCE_S": "0"}, "PUSHLIST_MAX_SILENCE_S"),
    ],
)
def test_invalid_settings_are_refused_with_the_variable_named(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("service", "env", "named"),
    [
        ("auth_service", {"JWT_TTL_S": "0"}, "JWT_TTL_S must be positive"),
        (
            "resource_service",
            {"SESSION_CACHE_SIZE": "-1"},
            "SESSION_CACHE_SIZE=-1: must be positive",
        ),
        ("gateway", {"JWT_TTL_S": "0"}, "JWT_TTL_S must be positive"),
    ],
)
def test_a_service_with_a_bad_setting_exits_with_one_line_naming_it(
    service: str, env: dict[str, str], named: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", service],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PORT": "1", **env},
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip() == f"{service}: bad setting: {named}", done.stderr[-2000:]


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("<!-- section:config -->", 1)[1].split("<!-- /section:config -->")[0]
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([A-Z0-9_]+)` \| (?:`([^`]*)`|\(empty\)) \|", section, re.M)
    }
    for name, default, _doc in documented_settings():
        assert name in rows, f"README's configuration table lacks {name}"
        assert (rows[name] or "") == default, f"README shows a stale default for {name}"
