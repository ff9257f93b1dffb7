"""KeyStore against a real redis-server: shared, encrypted at rest, race-safe, quiet.

Two KeyStores on one Redis stand for two auth replicas (each with its own KeyRing and
verifier, as two processes have); the end-to-end tests with real auth processes are in
tests/e2e/test_auth_replicas.py.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis
from cryptography.hazmat.primitives import serialization

from authcore.config import Settings
from authcore.errors import ConfigError
from authcore.keystore import RING_KEY, KeyStore, KeyStoreError, new_kek, parse_kek
from authcore.redis_store import RedisStore
from authcore.tokens import KeyRing, TokenIssuer, TokenVerifier


class Replica:
    """What one auth process holds: its store client, key ring, verifier, issuer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = RedisStore(settings)
        self.ring = KeyRing(settings.jwt_algorithm, retain_s=settings.jwt_ttl_s + 5)
        self.verifier = TokenVerifier(settings)
        self.verifier.set_keys(self.ring.verification_keys())
        self.keys = KeyStore(self.store, settings, self.ring, self.verifier)
        self.issuer = TokenIssuer(self.ring, settings)


@pytest.fixture
async def make_replica(redis_port: int) -> AsyncIterator[object]:
    redis.Redis(port=redis_port).delete(RING_KEY)
    kek = new_kek()
    made: list[Replica] = []

    def _make(**env: str) -> Replica:
        settings = Settings.from_env(
            {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "JWT_KEY_ENCRYPTION_KEY": kek,
             "JWT_KEYS_REFRESH_S": "0.2", **env}
        )  # fmt: skip
        made.append(Replica(settings))
        return made[-1]

    yield _make
    for replica in made:
        await replica.store.close()


async def test_replicas_share_one_key_and_a_restart_keeps_it(make_replica: object) -> None:
    make = make_replica
    first, second = make(), make()  # type: ignore[operator]
    await asyncio.gather(first.keys.load_or_create(), second.keys.load_or_create())
    assert first.ring.current.kid == second.ring.current.kid  # one won the race
    token = first.issuer.issue("user1", "fam").token
    assert second.verifier.verify(token)["sub"] == "user1"
    restarted = make()  # type: ignore[operator]
    await restarted.keys.load_or_create()
    assert restarted.verifier.verify(token)["sub"] == "user1"


async def test_the_ring_is_encrypted_at_rest_and_refused_under_another_key(
    make_replica: object, redis_port: int
) -> None:
    replica = make_replica()  # type: ignore[operator]
    await replica.keys.load_or_create()
    stored = redis.Redis(port=redis_port).hgetall(RING_KEY)
    assert set(stored) == {b"version", b"ring"}
    pem = replica.ring.current.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    raw = replica.ring.current.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    blob = base64.b64decode(stored[b"ring"])
    for secret in (pem, raw, base64.urlsafe_b64encode(raw).rstrip(b"=")):
        assert secret not in stored[b"ring"] and secret not in blob
    assert b"PRIVATE" not in blob and replica.ring.current.kid.encode() not in blob

    stranger = Replica(
        Settings.from_env(
            {**{"REDIS_URL": replica.settings.redis_url}, "JWT_KEY_ENCRYPTION_KEY": new_kek()}
        )
    )
    with pytest.raises(KeyStoreError, match="does not open"):
        await stranger.keys.load_or_create()
    await stranger.store.close()

    tampered = bytearray(blob)
    tampered[-1] ^= 1
    redis.Redis(port=redis_port).hset(RING_KEY, mapping={
        "version": "99", "ring": base64.b64encode(bytes(tampered))})  # fmt: skip
    with pytest.raises(KeyStoreError, match="does not open"):
        await make_replica().keys.load_or_create()  # type: ignore[operator]


async def test_rotation_on_one_replica_reaches_the_other_before_it_signs(
    make_replica: object,
) -> None:
    a, b = (make_replica(JWT_KEYS_REFRESH_S="0.5") for _ in range(2))  # type: ignore[operator]
    await a.keys.load_or_create()
    await b.keys.load_or_create()
    old = a.ring.current.kid
    old_token = a.issuer.issue("user2", "fam").token
    polling = asyncio.create_task(b.keys.run())
    try:
        new = await a.keys.rotate()
        # Published at once on the rotating replica, not signing yet.
        assert new.key.kid in a.verifier.kids and a.ring.current.kid == old
        while new.key.kid not in {k["kid"] for k in b.ring.jwks()["keys"]}:
            assert time.time() < new.signs_from + 5, "b never saw the rotation"
            await asyncio.sleep(0.02)
        # b publishes it before anyone signs with it (one poll, within the 1 s lead).
        assert time.time() < new.signs_from
        assert b.ring.current.kid == old
        await asyncio.sleep(max(0.0, new.signs_from - time.time()) + 0.7)
        await a.keys.refresh()
        assert a.ring.current.kid == b.ring.current.kid == new.key.kid
        fresh = b.issuer.issue("user2", "fam").token
        assert a.verifier.verify(fresh)["sub"] == "user2"
        assert b.verifier.verify(old_token)["sub"] == "user2"  # retired, still verifies
    finally:
        polling.cancel()


async def test_concurrent_rotations_lose_no_key(make_replica: object) -> None:
    a, b = make_replica(), make_replica()  # type: ignore[operator]
    await a.keys.load_or_create()
    await b.keys.load_or_create()
    made = await asyncio.gather(*(r.keys.rotate() for r in (a, b, a, b)))
    await a.keys.refresh()
    kids = {k.kid for k in a.ring.keys()}
    assert {m.key.kid for m in made} <= kids and len(kids) == 5


async def test_keys_are_never_logged(
    make_replica: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    replica = make_replica()  # type: ignore[operator]
    await replica.keys.load_or_create()
    await replica.keys.rotate()
    text = caplog.text
    assert "signing key" in text or "ring" in text  # it does log, by kid
    for key in replica.ring.keys():
        raw = key.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )  # fmt: skip
        for form in (raw.hex(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
            assert form not in text
    assert "PRIVATE KEY" not in text
    assert replica.settings.jwt_key_encryption_key not in text


def test_the_key_encryption_key_must_be_32_bytes() -> None:
    assert len(parse_kek(new_kek())) == 32
    for bad in ("short", "!!!!", base64.urlsafe_b64encode(b"x" * 16).decode()):
        with pytest.raises(ConfigError, match="JWT_KEY_ENCRYPTION_KEY"):
            Settings.from_env({"JWT_KEY_ENCRYPTION_KEY": bad})
