"""The token-size axis: ACCESS_TOKEN_PAD_BYTES pads real access tokens, which still verify."""

from __future__ import annotations

import pytest

from authcore.config import Settings
from authcore.errors import ConfigError
from authcore.tokens import KeyRing, TokenIssuer, TokenVerifier


def _token(pad: int) -> tuple[str, TokenVerifier]:
    settings = Settings.from_env({"ACCESS_TOKEN_PAD_BYTES": str(pad)})
    ring = KeyRing("EdDSA")
    verifier = TokenVerifier(settings)
    verifier.set_keys(ring.verification_keys())
    return TokenIssuer(ring, settings).issue("user1", "family").token, verifier


def test_padding_grows_the_token_by_about_four_thirds_and_it_still_verifies() -> None:
    plain, _ = _token(0)
    padded, verifier = _token(1500)
    assert 1500 * 4 / 3 <= len(padded) - len(plain) <= 1500 * 4 / 3 + 16
    claims = verifier.verify(padded)
    assert claims["sub"] == "user1" and claims["pad"] == "x" * 1500


@pytest.mark.parametrize("pad", ["-1", "3000"])
def test_a_negative_pad_or_one_beyond_jwt_max_bytes_is_refused_at_start(pad: str) -> None:
    with pytest.raises(ConfigError, match="ACCESS_TOKEN_PAD_BYTES"):
        Settings.from_env({"ACCESS_TOKEN_PAD_BYTES": pad})
    # With a larger JWT_MAX_BYTES the same pad is fine (the bench raises both together).
    if int(pad) > 0:
        Settings.from_env({"ACCESS_TOKEN_PAD_BYTES": pad, "JWT_MAX_BYTES": "8192"})
