"""The gateway's identity assertion ("phantom token"): edge validation's internal credential.

With VALIDATE_AT=gateway the gateway checks the client's credential once (session in
Redis, JWT signature, denylist) and forwards, in ASSERTION_HEADER, a compact JWS that says
who the request is for. Replicas verify it instead of the credential, and refuse (401) any
/api request without a valid one. The API is three calls:

    signer = AssertionSigner.from_settings(settings)        # the gateway (holds the key)
    token = signer.mint(user, mode, method, target, rid)     # bytes, per request
    verifier = AssertionVerifier.from_settings(settings)     # a replica
    identity = verifier.verify(token, method, target, rid)   # or a 401 CredentialError

plus `generate_keys(alg)` for a deployment's key pair (LocalCluster, compose).

What an assertion binds, and why:
- `iss` = "<DEPLOYMENT_ID>:gateway", `aud` = "<DEPLOYMENT_ID>:resource": an assertion
  minted by another deployment (a staging gateway whose key leaked) is refused;
- `exp` = `iat` + EDGE_ASSERTION_TTL_S (seconds) with ASSERTION_LEEWAY_S for skew;
- `req` = SHA-256 of "METHOD TARGET" and `rid` = the request's X-Request-Id: an assertion
  taken off the internal network is good for that one request line only (not another path,
  method or query) and only with its own request ID. A byte-identical replay of the same
  request within the TTL is not refused (that would take a replay cache, shared state on
  every replica, which is what edge validation removes); the TTL bounds it.

The signature, EDGE_ASSERTION_ALG:
- EdDSA (default): the gateway holds the Ed25519 private key, replicas only the public
  one, so a compromised replica cannot mint assertions for other replicas (the issue's
  "a key only the gateway holds"). Verifying costs one Ed25519 verification, about what a
  JWT check costs.
- HS256: one secret shared by the gateway and the replicas; verifying is one HMAC (a few
  µs), but every replica could mint assertions. Offered so the bench can show the price.
Only the exact header this module writes is accepted (the bytes are compared), so `alg`
confusion or `none` cannot get in (RFC 8725 section 3.1); `typ` is `identity+jwt`, so no
access token or other JWT passes as an assertion (RFC 8725 section 3.11).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from authcore.config import Settings
from authcore.errors import ConfigError, ExpiredCredential, InvalidCredential, MissingCredential

ASSERTION_HEADER = "X-Authbench-Identity"
ASSERTION_ALGORITHMS = ("EdDSA", "HS256")
ASSERTION_TYPE = "identity+jwt"
ASSERTION_LEEWAY_S = 1  # gateway and replicas share a deployment: skew is small
MAX_ASSERTION_BYTES = 2048
_SEGMENT = re.compile(rb"[A-Za-z0-9_-]+")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(segment: bytes) -> bytes:
    if _SEGMENT.fullmatch(segment) is None:
        raise InvalidCredential("malformed identity assertion")
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as err:
        raise InvalidCredential("malformed identity assertion") from err


def request_hash(method: bytes, target: bytes) -> str:
    """What `req` holds: SHA-256 (base64url, 128 bits) of the request line's method and
    target, exactly as the gateway forwards them."""
    return _b64(hashlib.sha256(method + b" " + target).digest()[:16]).decode()


def _header(alg: str) -> bytes:
    return _b64(_dumps({"alg": alg, "typ": ASSERTION_TYPE}).encode())


def generate_keys(alg: str = "EdDSA") -> tuple[str, str]:
    """A fresh (signing key, verification key) pair as setting values: for EdDSA the
    base64url raw private and public keys, for HS256 one random secret twice."""
    if alg == "HS256":
        secret = secrets.token_urlsafe(48)
        return secret, secret
    _check_alg(alg)
    private = ed25519.Ed25519PrivateKey.generate()
    return (
        _b64(private.private_bytes_raw()).decode(),
        _b64(private.public_key().public_bytes_raw()).decode(),
    )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who an assertion speaks for: the user and the credential type the gateway checked."""

    user: str
    mode: str


class AssertionSigner:
    """The gateway's side: mints one assertion per forwarded request."""

    def __init__(self, alg: str, key: str, deployment: str, ttl_s: int) -> None:
        _check_alg(alg)
        self._alg = alg
        self._ttl = ttl_s
        self._iss = f"{deployment}:gateway"
        self._aud = f"{deployment}:resource"
        self._header = _header(alg) + b"."
        if alg == "HS256":
            self._secret = _secret(key, "EDGE_ASSERTION_KEY")
            self._private = None
        else:
            self._secret = b""
            self._private = ed25519.Ed25519PrivateKey.from_private_bytes(
                _raw_key(key, "EDGE_ASSERTION_KEY")
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> AssertionSigner:
        if not settings.edge_assertion_key:
            raise ConfigError("VALIDATE_AT=gateway: the gateway needs EDGE_ASSERTION_KEY")
        return cls(
            settings.edge_assertion_alg,
            settings.edge_assertion_key,
            settings.deployment_id,
            settings.edge_assertion_ttl_s,
        )

    def mint(self, user: str, mode: str, method: bytes, target: bytes, rid: bytes) -> bytes:
        """The assertion for one request line (`target` as forwarded) and request ID."""
        now = int(time.time())
        claims = {
            "iss": self._iss,
            "aud": self._aud,
            "sub": user,
            "mode": mode,
            "iat": now,
            "exp": now + self._ttl,
            "rid": rid.decode("ascii"),
            "req": request_hash(method, target),
        }
        signing_input = self._header + _b64(_dumps(claims).encode())
        if self._private is not None:
            signature = self._private.sign(signing_input)
        else:
            signature = hmac.digest(self._secret, signing_input, "sha256")
        return signing_input + b"." + _b64(signature)


class AssertionVerifier:
    """A replica's side: the one check an /api request needs under VALIDATE_AT=gateway."""

    def __init__(self, alg: str, key: str, deployment: str) -> None:
        _check_alg(alg)
        self._iss = f"{deployment}:gateway"
        self._aud = f"{deployment}:resource"
        self._header = _header(alg)
        if alg == "HS256":
            self._secret = _secret(key, "EDGE_ASSERTION_VERIFY_KEY")
            self._public = None
        else:
            self._secret = b""
            self._public = ed25519.Ed25519PublicKey.from_public_bytes(
                _raw_key(key, "EDGE_ASSERTION_VERIFY_KEY")
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> AssertionVerifier:
        if not settings.edge_assertion_verify_key:
            raise ConfigError("VALIDATE_AT=gateway: replicas need EDGE_ASSERTION_VERIFY_KEY")
        return cls(
            settings.edge_assertion_alg, settings.edge_assertion_verify_key, settings.deployment_id
        )

    def verify(
        self, token: bytes | None, method: bytes, target: bytes, rid: bytes | None
    ) -> Identity:
        """The identity `token` asserts for this request, or a 401 CredentialError."""
        if not token:
            raise MissingCredential("no identity assertion from the gateway")
        if len(token) > MAX_ASSERTION_BYTES or token.count(b".") != 2:
            raise InvalidCredential("malformed identity assertion")
        header, payload, signature = token.split(b".")
        if not hmac.compare_digest(header, self._header):
            raise InvalidCredential("identity assertion: unexpected header")
        signing_input = header + b"." + payload
        raw_signature = _unb64(signature)
        if self._public is not None:
            try:
                self._public.verify(raw_signature, signing_input)
            except InvalidSignature:
                raise InvalidCredential("identity assertion: bad signature") from None
        elif not hmac.compare_digest(
            raw_signature, hmac.digest(self._secret, signing_input, "sha256")
        ):
            raise InvalidCredential("identity assertion: bad signature")
        try:
            claims = json.loads(_unb64(payload))
        except ValueError as err:  # the signature held, so this is our own bug or a key leak
            raise InvalidCredential("malformed identity assertion") from err
        if not isinstance(claims, dict):
            raise InvalidCredential("malformed identity assertion")
        if claims.get("iss") != self._iss or claims.get("aud") != self._aud:
            raise InvalidCredential("identity assertion of another deployment")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int) or not isinstance(iat, int) or not _is_time(exp, iat):
            raise InvalidCredential("identity assertion without valid exp/iat")
        now = time.time()
        if now > exp + ASSERTION_LEEWAY_S:
            raise ExpiredCredential("identity assertion expired")
        if iat > now + ASSERTION_LEEWAY_S:
            raise InvalidCredential("identity assertion issued in the future")
        if claims.get("req") != request_hash(method, target):
            raise InvalidCredential("identity assertion for another request")
        if rid is None or claims.get("rid") != rid.decode("latin-1"):
            raise InvalidCredential("identity assertion for another request id")
        user, mode = claims.get("sub"), claims.get("mode")
        if not isinstance(user, str) or not user or not isinstance(mode, str) or not mode:
            raise InvalidCredential("identity assertion without a subject")
        return Identity(user, mode)


def _is_time(*values: int) -> bool:
    return all(not isinstance(v, bool) and 0 < v < 1 << 40 for v in values)


def _check_alg(alg: str) -> None:
    if alg not in ASSERTION_ALGORITHMS:
        raise ConfigError(
            f"EDGE_ASSERTION_ALG={alg!r}: expected one of {', '.join(ASSERTION_ALGORITHMS)}"
        )


def _secret(key: str, name: str) -> bytes:
    secret = key.encode()
    if len(secret) < 32:  # RFC 7518 3.2: at least the hash's size
        raise ConfigError(f"{name} must be at least 32 bytes for EDGE_ASSERTION_ALG=HS256")
    return secret


def _raw_key(key: str, name: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    except (binascii.Error, ValueError) as err:
        raise ConfigError(f"{name} is not base64url") from err
    if len(raw) != 32:
        raise ConfigError(f"{name} must be a base64url raw 32-byte Ed25519 key")
    return raw
