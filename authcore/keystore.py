"""KeyStore: the JWT signing keys in Redis, encrypted, shared by every auth replica.

Why Redis rather than a mounted directory of key files: every auth replica already
reaches this Redis (sessions, refresh tokens, the denylist), so sharing the keys needs
no volume that several hosts can write, and a rotation is one atomic write that every
replica sees within JWT_KEYS_REFRESH_S, on a laptop, in compose and in Kubernetes alike.
A directory (a Kubernetes Secret, say) is read-only to the pods: rotating would be an
out-of-band job rewriting the Secret and waiting for the kubelet to sync it (up to a
minute), and `authbench rotate-keys` could not work across replicas.

At rest the keys are encrypted: the whole ring (private keys as PKCS#8 PEM, kids,
algorithm, times) is one JSON document sealed with AES-256-GCM under the key-encryption
key JWT_KEY_ENCRYPTION_KEY (a setting, from a secret), with a fresh 96-bit nonce per
write and the Redis key name as associated data. A dump of Redis (or a replica of it, or
an AOF file) hands out no signing key; a ring that was tampered with, or sealed under
another key, fails authentication and is refused, never used.

Layout: one Redis hash `jwk:ring` with `version` (plain, polled cheaply) and `ring` (the
sealed document). Writes are compare-and-set on the version (a Lua script over that one
key), so two replicas creating the first key at once, or rotating at once, cannot lose a
key: the loser re-reads and retries. The hash has no TTL on purpose: it is the one key
that must outlive everything (authbench soak knows it).

Rotation publishes before it signs: the new key enters the JWKS at once and starts
signing 2 x JWT_KEYS_REFRESH_S later, by when every auth replica has polled it. A
resource replica that meets the new kid fetches the JWKS from whichever auth replica it
reaches, and that one has it. The key it replaces keeps verifying for the access-token
lifetime plus the leeway after it stopped signing (KeyRing's retention).

Nothing here logs key material: only kids and versions.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from redis.exceptions import RedisError

from authcore.config import Settings
from authcore.errors import BadRequest, ConfigError, DependencyUnavailable
from authcore.redis_store import Redis, RedisStore
from authcore.tokens import KeyRing, SigningKey, TokenVerifier, generate_key

log = logging.getLogger("authcore.keystore")

KEYSTORE_PREFIX = "jwk:"
RING_KEY = KEYSTORE_PREFIX + "ring"
_FORMAT = 1
_NONCE_BYTES = 12
_KEK_BYTES = 32

# KEYS[1] the ring hash; ARGV[1] the version the writer read ('' when there was none),
# ARGV[2] the new version, ARGV[3] the sealed ring. 1 written, 0 someone wrote first.
_COMPARE_AND_SET = """
local seen = redis.call('HGET', KEYS[1], 'version') or ''
if seen ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[2], 'ring', ARGV[3])
return 1
"""


class KeyStoreError(RuntimeError):
    """The ring in Redis cannot be used (sealed under another key, tampered with, or of
    another algorithm); the message says which, never what the keys are."""


def parse_kek(text: str) -> bytes:
    """The 32-byte key-encryption key from its base64url text (JWT_KEY_ENCRYPTION_KEY)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise ConfigError("JWT_KEY_ENCRYPTION_KEY must be base64url (32 random bytes)") from err
    if len(raw) != _KEK_BYTES:
        raise ConfigError(
            f"JWT_KEY_ENCRYPTION_KEY must decode to {_KEK_BYTES} bytes, not {len(raw)}"
        )
    return raw


def new_kek() -> str:
    """A fresh key-encryption key as JWT_KEY_ENCRYPTION_KEY expects it."""
    return base64.urlsafe_b64encode(os.urandom(_KEK_BYTES)).decode().rstrip("=")


@dataclass(frozen=True)
class StoredKey:
    key: SigningKey
    signs_from: float  # wall time it starts signing
    retired_at: float | None  # wall time a newer key took over; None: not yet


def _seal(aead: AESGCM, keys: list[StoredKey]) -> str:
    doc = {
        "format": _FORMAT,
        "keys": [
            {
                "kid": k.key.kid,
                "alg": k.key.algorithm,
                "pem": k.key.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
                "signs_from": k.signs_from,
                "retired_at": k.retired_at,
            }
            for k in keys
        ],
    }
    nonce = os.urandom(_NONCE_BYTES)
    sealed = aead.encrypt(nonce, json.dumps(doc).encode(), RING_KEY.encode())
    return base64.b64encode(nonce + sealed).decode()


def _open(aead: AESGCM, text: bytes | str) -> list[StoredKey]:
    try:
        blob = base64.b64decode(text)
        plain = aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], RING_KEY.encode())
    except (InvalidTag, binascii.Error, ValueError) as err:
        raise KeyStoreError(
            f"{RING_KEY} does not open with JWT_KEY_ENCRYPTION_KEY (another key-encryption "
            "key, or tampered with)"
        ) from err
    doc = json.loads(plain)
    if doc.get("format") != _FORMAT:
        raise KeyStoreError(f"{RING_KEY} has format {doc.get('format')!r}, not {_FORMAT}")
    keys = []
    for entry in doc["keys"]:
        private: Any = serialization.load_pem_private_key(entry["pem"].encode(), password=None)
        signing = SigningKey(entry["kid"], entry["alg"], private, private.public_key())
        keys.append(StoredKey(signing, float(entry["signs_from"]), entry["retired_at"]))
    return keys


class KeyStore:
    """Keeps an auth replica's KeyRing (and its own verifier) in step with the shared ring."""

    def __init__(
        self, store: RedisStore, settings: Settings, keyring: KeyRing, verifier: TokenVerifier
    ) -> None:
        if not settings.jwt_key_encryption_key:
            raise ConfigError("the key store needs JWT_KEY_ENCRYPTION_KEY")
        self._store = store
        self._aead = AESGCM(parse_kek(settings.jwt_key_encryption_key))
        self._keyring = keyring
        self._verifier = verifier
        self._refresh_s = settings.jwt_keys_refresh_s
        self._cas = store.client.register_script(_COMPARE_AND_SET)
        self._version = ""
        self._keys: list[StoredKey] = []
        self._installed: tuple[str, ...] = ()

    @property
    def publish_lead_s(self) -> float:
        """How long a new key is published before it signs."""
        return 2 * self._refresh_s

    @property
    def version(self) -> str:
        return self._version

    # --- reading ------------------------------------------------------------------------
    async def _read(self, r: Redis, field: str) -> Any:
        return await r.hget(RING_KEY, field)

    async def refresh(self) -> bool:
        """Poll the store: load the ring when its version changed, and install the keys
        that apply now (a published key whose time to sign has come). Whether the
        installed set changed."""
        version = await self._store.call(lambda r: self._read(r, "version"))
        if version is not None and _text(version) != self._version:
            fields = await self._store.call(lambda r: r.hmget(RING_KEY, ["version", "ring"]))
            if fields[0] is not None and fields[1] is not None:
                self._keys = self._check(_open(self._aead, fields[1]))
                self._version = _text(fields[0])
                log.info("signing keys: ring version %s loaded", self._version)
        return self._install()

    def _check(self, keys: list[StoredKey]) -> list[StoredKey]:
        algorithm = self._keyring.algorithm
        wrong = {k.key.algorithm for k in keys} - {algorithm}
        if wrong or not keys:
            raise KeyStoreError(
                f"{RING_KEY} holds {sorted(wrong) or 'no'} keys but JWT_ALG is {algorithm}; "
                f"delete {RING_KEY} to start a new ring (outstanding tokens then fail)"
            )
        return keys

    def _install(self) -> bool:
        if not self._keys:
            return False  # nothing loaded yet: the ring holds its own key, unused
        now = time.time()
        signing = [k for k in self._keys if k.signs_from <= now]
        if not signing:  # only possible with clocks far apart; the oldest key signs
            signing = [min(self._keys, key=lambda k: k.signs_from)]
        current = max(signing, key=lambda k: k.signs_from)
        upcoming = [k.key for k in self._keys if k.signs_from > current.signs_from]
        retired = [
            (k.key, k.retired_at if k.retired_at is not None else now)
            for k in self._keys
            if k is not current and k.signs_from <= current.signs_from
        ]
        self._keyring.install(current.key, retired, upcoming)
        installed = tuple(k.kid for k in self._keyring.keys())
        changed = installed != self._installed
        if changed:
            self._verifier.set_keys(self._keyring.verification_keys())
            self._installed = installed
            log.info("signing key %s; verifying %s", current.key.kid, ", ".join(installed))
        return changed

    # --- writing ------------------------------------------------------------------------
    async def _write(self, seen: str, keys: list[StoredKey]) -> bool:
        new_version = str(int(seen or "0") + 1)
        sealed = _seal(self._aead, keys)
        written = await self._store.call(
            lambda r: self._cas(keys=[RING_KEY], args=[seen, new_version, sealed], client=r)
        )
        return bool(written)

    async def load_or_create(self, timeout_s: float = 60.0) -> None:
        """Start-up: load the shared ring, or create it with a first key when there is
        none (one replica wins the race; the others load its key). Retries while Redis is
        unreachable, up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        delay = 0.1
        while True:
            try:
                await self.refresh()
                if self._keys:
                    return
                first = StoredKey(generate_key(self._keyring.algorithm), time.time(), None)
                if await self._write("", [first]):
                    log.info("signing keys: new ring with key %s", first.key.kid)
                continue  # load what was written (ours, or the replica's that won)
            except (DependencyUnavailable, RedisError) as err:  # Redis down at start
                if time.monotonic() > deadline:
                    raise KeyStoreError(f"signing keys not loaded: {type(err).__name__}") from err
                log.info("key store not reachable yet (%s); retrying", type(err).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def rotate(self) -> StoredKey:
        """Add a new key that signs after `publish_lead_s`; the key signing now retires
        then. Retired keys past their retention leave the ring. Safe against concurrent
        rotations (compare-and-set, retried)."""
        if self._keyring.algorithm == "HS256":
            raise BadRequest("HS256 keys are a shared secret: rotate JWT_HS256_SECRET instead")
        for _ in range(20):
            await self.refresh()
            seen = self._version
            now = time.time()
            signs_from = now + self.publish_lead_s
            new = StoredKey(generate_key(self._keyring.algorithm), signs_from, None)
            keep = []
            for k in self._keys:
                retired_at = signs_from if k.retired_at is None else k.retired_at
                if now - retired_at <= self._keyring.retain_s + self.publish_lead_s:
                    keep.append(StoredKey(k.key, k.signs_from, retired_at))
            if await self._write(seen, [*keep, new]):
                await self.refresh()
                log.info("rotation: key %s signs from ring version %s on", new.key.kid, seen)
                return new
        raise KeyStoreError("rotation kept losing the race to other writers")

    async def run(self) -> None:
        """Poll every JWT_KEYS_REFRESH_S until cancelled; a failed poll is retried."""
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except KeyStoreError as err:
                log.error("key store: %s", err)
            except (DependencyUnavailable, RedisError) as err:  # keep the keys held
                log.warning("key store poll failed (%s); keeping the keys", type(err).__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
