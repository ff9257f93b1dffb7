"""The commands' choices and defaults are the services' own lists, not copies of them."""

from __future__ import annotations

import pytest

from authbench.cli import build_parser
from authbench.targets.base import REDIS_PERSISTENCE
from authcore.config import ALGORITHMS, REVOCATION_MODES, Settings


def test_up_offers_every_algorithm_and_revocation_mode_the_services_accept() -> None:
    parser = build_parser()
    for alg in ALGORITHMS:
        assert parser.parse_args(["up", "--jwt-alg", alg]).jwt_alg == alg
    for revocation in REVOCATION_MODES:
        args = parser.parse_args(["up", "--jwt-revocation", revocation])
        assert args.jwt_revocation == revocation
    for persistence in REDIS_PERSISTENCE:
        args = parser.parse_args(["up", "--redis-persistence", persistence])
        assert args.redis_persistence == persistence
    defaults = parser.parse_args(["up"])
    assert (defaults.jwt_alg, defaults.jwt_revocation) == (
        Settings().jwt_algorithm,
        Settings().jwt_revocation,
    )


def test_up_refuses_what_the_services_would_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--jwt-alg", "none"])
    assert "invalid choice: 'none'" in capsys.readouterr().err


def test_rotate_keys_defaults_to_the_services_auth_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_URL", raising=False)
    assert build_parser().parse_args(["rotate-keys"]).auth_url == Settings().auth_url
