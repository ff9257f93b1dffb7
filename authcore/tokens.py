"""Access tokens (JWTs): the wristband. Signing keys, issuing, and verification.

The rules follow RFC 8725 (JWT best current practices) and RFC 9068 (JWT access tokens):
- every key has one algorithm; a token is verified only with the algorithm of the key its
  `kid` names, so `alg: none` and HS/RS key confusion cannot pass;
- the header must say `typ: at+jwt`, so no other kind of JWT is accepted as an access token;
- `iss`, `aud`, `sub`, `exp`, `nbf`, `iat` and `jti` are required and checked, with a small
  leeway for clock skew; dates must be numbers in range, `sub` and `jti` non-empty text;
  tokens longer than JWT_MAX_BYTES are refused before parsing;
- the verifier never fetches keys named by the token (`jku`, `x5u`, `jwk` are ignored):
  keys come only from the auth service's JWKS.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from authcore.config import Settings
from authcore.errors import BadRequest, ExpiredCredential, InvalidCredential

TOKEN_TYPE = "at+jwt"  # noqa: S105 - RFC 9068 media type
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "nbf", "iat", "jti")
FAMILY_CLAIM = "fam"  # refresh-token family this access token was issued in (for logout)
# SHA-256 (base64url) of the CSRF token bound to a cookie-carried access token.
CSRF_CLAIM = "csrf"
_ALGORITHMS = get_default_algorithms()
_MAX_KID_LENGTH = 64
_HEADER_CACHE_SIZE = 64  # header segments (one per key in practice); bounded against junk


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key: Any  # cryptography private key object, or bytes for HS256
    public_key: Any  # what verifies: the public key object, or the same bytes for HS256

    @property
    def public_jwk(self) -> dict[str, Any] | None:
        """The JWK of the public key; None for a symmetric key (never published)."""
        if self.algorithm == "HS256":
            return None
        jwk: dict[str, Any] = _ALGORITHMS[self.algorithm].to_jwk(self.public_key, as_dict=True)
        jwk.update(kid=self.kid, alg=self.algorithm, use="sig")
        return jwk


def generate_key(algorithm: str, hs256_secret: str = "") -> SigningKey:
    """A new signing key for `algorithm`, with a random `kid`."""
    if algorithm == "HS256":
        secret = hs256_secret.encode()
        # A kid derived from the secret: stable across processes that share it.
        kid = "hs-" + hashlib.sha256(b"authbench-kid" + secret).hexdigest()[:16]
        return SigningKey(kid, algorithm, secret, secret)
    private: Any
    if algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:  # pragma: no cover - Settings.validate refuses other names
        raise ValueError(f"unsupported algorithm {algorithm}")
    return SigningKey(secrets.token_hex(8), algorithm, private, private.public_key())


class KeyRing:
    """The auth service's signing keys: the current one signs, retired ones still verify.

    Rotation retires the current key and makes a new one. A retired key stays in the JWKS
    until every token it signed has expired (`retain_s`: the access-token lifetime plus
    the leeway), so tokens signed before a rotation keep working until their own expiry,
    however often operators rotate.
    """

    def __init__(self, algorithm: str, hs256_secret: str = "", retain_s: float = 0.0) -> None:
        self._algorithm = algorithm
        self._hs256_secret = hs256_secret
        self._retain_s = retain_s
        self.current = generate_key(algorithm, hs256_secret)
        # Newest first, with the wall time each was retired (wall, not monotonic: a shared
        # key store, authcore.keystore, hands the same times to every auth replica).
        self._retired: list[tuple[SigningKey, float]] = []
        self._upcoming: list[SigningKey] = []  # published, not signing yet (key store)

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def retain_s(self) -> float:
        return self._retain_s

    def install(
        self,
        current: SigningKey,
        retired: list[tuple[SigningKey, float]],
        upcoming: list[SigningKey] | None = None,
    ) -> None:
        """Take the keys a shared key store holds (authcore.keystore): `current` signs,
        `retired` (each with its wall-clock retire time) verify until `retain_s` after,
        `upcoming` are in the JWKS before they sign, so every verifier can know them."""
        self.current = current
        self._retired = sorted(retired, key=lambda kt: kt[1], reverse=True)
        self._upcoming = list(upcoming or [])

    @property
    def previous(self) -> SigningKey | None:
        self._prune()
        return self._retired[0][0] if self._retired else None

    def rotate(self) -> SigningKey:
        if self._algorithm == "HS256":
            raise BadRequest("HS256 keys are a shared secret: rotate JWT_HS256_SECRET instead")
        self._prune()
        self._retired.insert(0, (self.current, time.time()))
        self.current = generate_key(self._algorithm)
        return self.current

    def _prune(self) -> None:
        now = time.time()
        self._retired = [(k, t) for k, t in self._retired if now - t <= self._retain_s]

    def keys(self) -> list[SigningKey]:
        self._prune()
        return [self.current, *self._upcoming, *(k for k, _ in self._retired)]

    def verification_keys(self) -> dict[str, VerificationKey]:
        return {k.kid: VerificationKey(k.algorithm, k.public_key) for k in self.keys()}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [jwk for k in self.keys() if (jwk := k.public_jwk) is not None]}


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_in: int


class TokenIssuer:
    """Signs access tokens with the key ring's current key."""

    def __init__(self, keyring: KeyRing, settings: Settings) -> None:
        self._keyring = keyring
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._ttl_s = settings.jwt_ttl_s
        self._pad = "x" * settings.access_token_pad_bytes  # the bench's token-size axis

    def issue(self, user: str, family: str, csrf_hash: str | None = None) -> IssuedToken:
        key = self._keyring.current
        issued_at = time.time()
        now = int(issued_at)
        jti = secrets.token_urlsafe(16)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user,
            # Millisecond iat (RFC 7519 allows fractions): "log out everywhere" revokes
            # tokens issued before an instant, and a login right after it must survive.
            "iat": round(issued_at, 3),
            "nbf": now,
            "exp": now + self._ttl_s,
            "jti": jti,
            FAMILY_CLAIM: family,
        }
        if csrf_hash is not None:
            claims[CSRF_CLAIM] = csrf_hash
        if self._pad:
            claims["pad"] = self._pad
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": TOKEN_TYPE},
        )
        return IssuedToken(token, jti, self._ttl_s)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    algorithm: str
    key: Any  # parsed once (cryptography object or HS256 bytes), reused on every request


class UnknownKeyId(InvalidCredential):
    """The token names a `kid` this verifier does not know (yet): maybe a rotation."""


class TokenVerifier:
    """Verifies access tokens against a set of keys that is replaced, never mutated."""

    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        self._max_bytes = settings.jwt_max_bytes
        self._keys: dict[str, VerificationKey] = {}
        self._header_keys: dict[str, VerificationKey] = {}  # header segment -> its key
        self._jwt = jwt.PyJWT()
        self._options: Any = {"require": list(REQUIRED_CLAIMS)}

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def set_keys(self, keys: dict[str, VerificationKey]) -> None:
        self._keys = dict(keys)
        self._header_keys = {}

    def load_jwks(self, jwks: dict[str, Any]) -> None:
        """Parse a JWK Set once into key objects; refuses keys without kid or alg."""
        keys: dict[str, VerificationKey] = {}
        for data in jwks.get("keys", []):
            kid, alg = data.get("kid"), data.get("alg")
            if not isinstance(kid, str) or alg not in _ALGORITHMS or alg == "HS256":
                continue  # RFC 8725 3.1: a key is used only with its declared algorithm
            keys[kid] = VerificationKey(alg, jwt.PyJWK(data, algorithm=alg).key)
        self._keys = keys
        self._header_keys = {}

    def _key_for(self, token: str) -> VerificationKey:
        """The key a token's header selects, after checking the header's kid and typ."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as err:
            raise InvalidCredential("malformed token") from err
        kid = header.get("kid")
        if not isinstance(kid, str) or len(kid) > _MAX_KID_LENGTH:
            raise InvalidCredential("token has no valid kid")
        key = self._keys.get(kid)
        if key is None:
            raise UnknownKeyId("token signed by an unknown key")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in (TOKEN_TYPE, "application/at+jwt"):
            raise InvalidCredential("not an access token (typ must be at+jwt)")
        return key

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or an InvalidCredential/ExpiredCredential saying why not."""
        if len(token) > self._max_bytes:
            raise InvalidCredential("token too large")
        # Every token a key signs has the same header segment, so the key it selects is
        # looked up, not re-parsed: get_unverified_header decodes the whole token and cost
        # a third of PyJWT's own decode (benchmarks/README.md). _key_for's checks depend on
        # the header alone, and the cache is emptied whenever the keys change.
        header_segment = token.partition(".")[0]
        key = self._header_keys.get(header_segment)
        if key is None:
            key = self._key_for(token)
            if len(self._header_keys) < _HEADER_CACHE_SIZE:
                self._header_keys[header_segment] = key
        try:
            claims: dict[str, Any] = self._jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],  # only the key's own algorithm, never the token's
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.ExpiredSignatureError as err:
            raise ExpiredCredential("token has expired") from err
        except jwt.PyJWTError as err:
            raise InvalidCredential(_reason(err)) from err
        _check_claim_types(claims)
        return claims


# NumericDate (RFC 7519 section 2) bounds: from the epoch to 2**35 s (the year 3058).
# PyJWT accepts "123" as a date (it calls int()) and any magnitude; a value out of this
# range or of another type is refused here, before it reaches float() or a Redis TTL.
_MAX_NUMERIC_DATE = 2**35
_MAX_SUB_LENGTH = 256
_MAX_ID_LENGTH = 128


def _check_claim_types(claims: dict[str, Any]) -> None:
    """One check per claim the services use after verification: each must have the type
    and shape they assume, as text that encodes (a lone surrogate in a signed `sub` would
    otherwise fail inside the Redis client, a 500)."""
    for name in ("exp", "nbf", "iat"):
        value = claims[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value < _MAX_NUMERIC_DATE  # also refuses NaN
        ):
            raise InvalidCredential(f"{name} must be a number of seconds since the epoch")
    _check_text_claim(claims, "sub", _MAX_SUB_LENGTH, required=True)
    _check_text_claim(claims, "jti", _MAX_ID_LENGTH, required=True)
    _check_text_claim(claims, FAMILY_CLAIM, _MAX_ID_LENGTH, required=False)
    _check_text_claim(claims, CSRF_CLAIM, _MAX_ID_LENGTH, required=False)


def _check_text_claim(claims: dict[str, Any], name: str, max_length: int, required: bool) -> None:
    value = claims.get(name)
    if value is None and not required:
        return
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise InvalidCredential(f"{name} must be a string of 1 to {max_length} characters")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as err:
            raise InvalidCredential(f"{name} is not valid text") from err


def _reason(err: jwt.PyJWTError) -> str:
    """A short, fixed reason per failure class: nothing from the token is echoed back."""
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.InvalidSignatureError, "signature verification failed"),
        (jwt.ImmatureSignatureError, "token not valid yet"),
        (jwt.InvalidAudienceError, "wrong audience"),
        (jwt.InvalidIssuerError, "wrong issuer"),
        (jwt.MissingRequiredClaimError, "a required claim is missing"),
        (jwt.InvalidIssuedAtError, "invalid iat"),
        (jwt.InvalidAlgorithmError, "algorithm not allowed"),
        (jwt.DecodeError, "malformed token"),
    ]
    for kind, reason in reasons:
        if isinstance(err, kind):
            return reason
    return "invalid token"
