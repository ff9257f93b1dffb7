"""Property-based fuzzing of credential parsing, at unit level (no network, no Redis).

Whatever a client puts in Authorization, Cookie or a token, the parsers either answer
with a credential of exactly the documented shape or raise one of the 401 errors; they
never raise anything else (which would be a 500) and never accept a forgery.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import assume, given
from hypothesis import strategies as st

from authcore.config import Settings
from authcore.credentials import (
    JWT_PATTERN,
    MODE_JWT,
    MODE_JWT_COOKIE,
    MODE_SESSION,
    OPAQUE_TOKEN_PATTERN,
    SESSION_ID_PATTERN,
    bearer_token,
    csrf_matches,
    new_csrf_token,
    presented_credential,
)
from authcore.errors import CredentialError, ExpiredCredential, InvalidCredential
from authcore.tokens import KeyRing, TokenIssuer, TokenVerifier
from tests.security.conftest import UNIT_FUZZ

SETTINGS = Settings.from_env({})
SECURE = Settings.from_env({"COOKIE_SECURE": "1"})

# Header values a client can send: any latin-1 text without line breaks.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
)
b64_alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
b64ish = st.text(alphabet=b64_alphabet + "=+/.~", max_size=120)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


_REAL_TOKEN: dict[str, str] = {}  # one token for every example: a stable strategy


@pytest.fixture(scope="module")
def signer() -> tuple[TokenIssuer, TokenVerifier]:
    ring = KeyRing("EdDSA")
    verifier = TokenVerifier(SETTINGS)
    verifier.set_keys(ring.verification_keys())
    return TokenIssuer(ring, SETTINGS), verifier


def _parse(headers: dict[str, str], settings: Settings = SETTINGS) -> Any:
    request = make_mocked_request("GET", "/api/me", headers=headers)
    return presented_credential(request.headers, request.cookies, settings)


@UNIT_FUZZ
@given(value=header_text)
def test_any_authorization_header_is_a_bearer_token_or_a_401(value: str) -> None:
    try:
        token = bearer_token(value)
    except InvalidCredential:
        return
    assert token and value.lower().startswith("bearer ") and value.endswith(token)


@UNIT_FUZZ
@given(cookie=header_text, secure=st.booleans())
def test_any_cookie_header_yields_a_well_formed_credential_or_a_401(
    cookie: str, secure: bool
) -> None:
    settings = SECURE if secure else SETTINGS
    try:
        presented = _parse({"Cookie": cookie}, settings)
    except CredentialError as err:
        assert err.status == 401
        return
    if presented.mode == MODE_SESSION:
        assert SESSION_ID_PATTERN.fullmatch(presented.value)
    else:
        assert presented.mode == MODE_JWT_COOKIE
        assert JWT_PATTERN.fullmatch(presented.value)
        assert len(presented.value) <= settings.jwt_max_bytes


@UNIT_FUZZ
@given(
    name=st.sampled_from(["sid", "__Host-sid", "at", "__Host-at", "SID", "sid "]),
    value=st.one_of(b64ish, st.text(alphabet=b64_alphabet, min_size=43, max_size=43)),
    noise=st.sampled_from(["", "; other=1", "; sid=x", '; sid="quoted"', ";;", "; ="]),
)
def test_cookie_values_near_the_format_are_checked_exactly(
    name: str, value: str, noise: str
) -> None:
    try:
        presented = _parse({"Cookie": f"{name}={value}{noise}"})
    except CredentialError:
        return
    # Only exactly-shaped values get through, and only under the names in use.
    if presented.mode == MODE_SESSION:
        assert SESSION_ID_PATTERN.fullmatch(presented.value)
    else:
        assert JWT_PATTERN.fullmatch(presented.value)


@UNIT_FUZZ
@given(value=header_text)
def test_bearer_wins_and_is_never_reinterpreted_as_a_cookie(value: str) -> None:
    valid_sid = "A" * 43
    try:
        presented = _parse({"Authorization": value, "Cookie": f"sid={valid_sid}"})
    except InvalidCredential:
        return
    assert presented.mode == MODE_JWT


@UNIT_FUZZ
@given(token=st.one_of(header_text, b64ish))
def test_any_string_as_a_token_is_refused_with_a_401(
    signer: tuple[TokenIssuer, TokenVerifier], token: str
) -> None:
    _, verifier = signer
    with pytest.raises(CredentialError):
        verifier.verify(token)


@UNIT_FUZZ
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "crit", "jku", "jwk", "b64", "x5u", "cty"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                  st.lists(st.text(max_size=5), max_size=3)),
    ),
    payload=st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "jti", "fam", "csrf"]),
        st.one_of(st.none(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                  st.text(max_size=20), st.lists(st.text(max_size=5), max_size=3)),
    ),
    signature=st.binary(max_size=80),
)  # fmt: skip
def test_forged_tokens_with_any_header_and_claims_are_refused(
    signer: tuple[TokenIssuer, TokenVerifier],
    header: dict[str, Any],
    payload: dict[str, Any],
    signature: bytes,
) -> None:
    _, verifier = signer
    try:
        header_json = json.dumps(header).encode()
        payload_json = json.dumps(payload).encode()
    except ValueError:
        assume(False)
        return
    token = f"{_b64(header_json)}.{_b64(payload_json)}.{_b64(signature)}"
    with pytest.raises(CredentialError):
        verifier.verify(token)


@UNIT_FUZZ
@given(data=st.data())
def test_a_mutated_real_token_never_verifies_as_something_else(
    signer: tuple[TokenIssuer, TokenVerifier], data: st.DataObject
) -> None:
    issuer, verifier = signer
    token = _REAL_TOKEN.setdefault("token", issuer.issue("user1", "family").token)
    position = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    replacement = data.draw(st.sampled_from(b64_alphabet + ".="))
    mutated = token[:position] + replacement + token[position + 1 :]
    assume(mutated != token)
    try:
        claims = verifier.verify(mutated)
    except (InvalidCredential, ExpiredCredential):
        return
    # Accepted only if the change was in base64 padding bits: the same bytes underneath.
    assert [_unb64(s) for s in mutated.split(".")] == [_unb64(s) for s in token.split(".")]
    assert claims["sub"] == "user1"


@UNIT_FUZZ
@given(
    claims=st.fixed_dictionaries(
        {},
        optional={
            "iss": st.sampled_from(["authbench", "evil"]),
            "aud": st.sampled_from(["authbench-api", "other", ["authbench-api", "x"]]),
            "sub": st.one_of(st.just("user1"), st.integers()),
            "exp": st.integers(min_value=-10**6, max_value=10**6),
            "nbf": st.integers(min_value=-10**6, max_value=10**6),
            "iat": st.integers(min_value=-10**6, max_value=10**6),
            "jti": st.one_of(st.just("j" * 22), st.integers()),
        },
    ),
    typ=st.sampled_from(["at+jwt", "application/at+jwt", "JWT", "jwt", ""]),
)  # fmt: skip
def test_correctly_signed_tokens_pass_only_with_every_claim_valid(
    claims: dict[str, Any], typ: str
) -> None:
    ring = KeyRing("EdDSA")
    verifier = TokenVerifier(SETTINGS)
    verifier.set_keys(ring.verification_keys())
    now = int(time.time())
    absolute = {k: now + v if k in ("exp", "nbf", "iat") else v for k, v in claims.items()}
    key = ring.current
    token = jwt.encode(absolute, key.private_key, algorithm=key.algorithm,
                       headers={"kid": key.kid, "typ": typ})  # fmt: skip
    leeway = SETTINGS.jwt_leeway_s
    valid = (
        set(absolute) == {"iss", "aud", "sub", "exp", "nbf", "iat", "jti"}
        and absolute["iss"] == "authbench"
        and (absolute["aud"] == "authbench-api" or "authbench-api" in absolute["aud"])
        and isinstance(absolute["sub"], str)
        and isinstance(absolute["jti"], str)
        and absolute["exp"] > now + leeway + 1
        and absolute["nbf"] < now - leeway - 1
        and absolute["iat"] < now - leeway - 1
        and typ in ("at+jwt", "application/at+jwt")
    )
    borderline = any(abs(absolute.get(k, 10**9) - now) <= leeway + 2 for k in ("exp", "nbf", "iat"))
    assume(not borderline)
    try:
        verifier.verify(token)
    except CredentialError:
        assert not valid
        return
    assert valid


@UNIT_FUZZ
@given(
    presented=st.one_of(
        st.none(), header_text, st.text(alphabet=b64_alphabet, min_size=43, max_size=43)
    )
)
def test_only_the_issued_csrf_token_matches(presented: str | None) -> None:
    token, bound = new_csrf_token()
    assume(presented != token)
    assert not csrf_matches(presented, bound)
    assert csrf_matches(token, bound)
    assert OPAQUE_TOKEN_PATTERN.fullmatch(token)
