"""KeyRing retention: retired keys verify exactly as long as their tokens can live."""

from __future__ import annotations

import time

import pytest

from authcore.config import Settings
from authcore.errors import BadRequest
from authcore.tokens import KeyRing, TokenIssuer, TokenVerifier, UnknownKeyId


def test_retired_keys_stay_until_their_last_token_expired_then_go() -> None:
    settings = Settings.from_env({})
    ring = KeyRing("EdDSA", retain_s=0.5)
    issuer = TokenIssuer(ring, settings)
    first = issuer.issue("user1", "family").token
    for _ in range(3):
        ring.rotate()
    verifier = TokenVerifier(settings)
    verifier.set_keys(ring.verification_keys())
    assert len(ring.jwks()["keys"]) == 4
    assert verifier.verify(first)["sub"] == "user1"
    time.sleep(0.6)
    assert [k.kid for k in ring.keys()] == [ring.current.kid]
    assert ring.previous is None
    verifier.set_keys(ring.verification_keys())
    with pytest.raises(UnknownKeyId):
        verifier.verify(first)


def test_hs256_keys_are_rotated_by_changing_the_shared_secret() -> None:
    ring = KeyRing("HS256", "s" * 48)
    assert ring.jwks() == {"keys": []}  # a symmetric key is never published
    with pytest.raises(BadRequest):
        ring.rotate()
