"""Edge validation's identity assertion (authcore.assertion) against hostile input.

First the verifier on its own (quick): every forgery or misuse is a 401 CredentialError,
and the one genuine assertion passes, so each refusal is the check's doing. Then a real
cluster with VALIDATE_AT=gateway: through the gateway, and straight at a replica, as an
attacker inside the network would.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from authcore.assertion import (
    ASSERTION_HEADER,
    AssertionSigner,
    AssertionVerifier,
    generate_keys,
)
from authcore.errors import ConfigError, CredentialError, ExpiredCredential
from tests.client import bearer, login, request, session_cookie
from tests.security.conftest import WatchedCluster, start_watched, stop_and_scan

DEPLOYMENT = "deploy-a"
METHOD, TARGET, RID = b"GET", b"/api/items/7?x=1", b"rid-0123456789abcdef"


@pytest.fixture(scope="module", params=["EdDSA", "HS256"])
def keys(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    alg = request.param
    return (alg, *generate_keys(alg))


def _pair(
    keys: tuple[str, str, str], deployment: str = DEPLOYMENT, ttl: int = 5
) -> tuple[AssertionSigner, AssertionVerifier]:
    alg, signing, verifying = keys
    return (
        AssertionSigner(alg, signing, deployment, ttl),
        AssertionVerifier(alg, verifying, DEPLOYMENT),
    )


def _refused(verifier: AssertionVerifier, token: bytes | None, **request: bytes) -> str:
    args = {"method": METHOD, "target": TARGET, "rid": RID, **request}
    with pytest.raises(CredentialError) as caught:
        verifier.verify(token, args["method"], args["target"], args["rid"])
    assert caught.value.status == 401
    return caught.value.detail


def test_the_genuine_assertion_passes(keys: tuple[str, str, str]) -> None:
    signer, verifier = _pair(keys)
    identity = verifier.verify(signer.mint("user3", "jwt", METHOD, TARGET, RID), *_line())
    assert (identity.user, identity.mode) == ("user3", "jwt")


def _line() -> tuple[bytes, bytes, bytes]:
    return METHOD, TARGET, RID


def test_forged_with_another_key_is_refused(keys: tuple[str, str, str]) -> None:
    alg = keys[0]
    _, verifier = _pair(keys)
    forger = AssertionSigner(alg, generate_keys(alg)[0], DEPLOYMENT, 5)
    detail = _refused(verifier, forger.mint("admin", "jwt", METHOD, TARGET, RID))
    assert "signature" in detail


def test_expired_is_refused() -> None:
    keys = ("EdDSA", *generate_keys("EdDSA"))
    signer, verifier = _pair(keys, ttl=1)
    token = signer.mint("user1", "session", METHOD, TARGET, RID)
    time.sleep(2.2)  # ttl 1 s + leeway 1 s
    with pytest.raises(ExpiredCredential):
        verifier.verify(token, *_line())


def test_another_deployments_assertion_is_refused(keys: tuple[str, str, str]) -> None:
    signer, verifier = _pair(keys, deployment="deploy-b")  # same key, other iss/aud
    detail = _refused(verifier, signer.mint("user1", "jwt", METHOD, TARGET, RID))
    assert "another deployment" in detail


@pytest.mark.parametrize(
    "other",
    [
        {"target": b"/api/items/8?x=1"},
        {"target": b"/api/items/7?x=2"},
        {"target": b"/api/me"},
        {"method": b"POST"},
        {"rid": b"rid-another-request-id"},
        {"rid": None},
    ],
)
def test_replayed_for_another_request_is_refused(
    keys: tuple[str, str, str], other: dict[str, bytes]
) -> None:
    signer, verifier = _pair(keys)
    _refused(verifier, signer.mint("user1", "jwt", METHOD, TARGET, RID), **other)


def _segments(token: bytes) -> list[bytes]:
    return token.split(b".")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def test_alg_none_and_alg_swaps_are_refused(keys: tuple[str, str, str]) -> None:
    signer, verifier = _pair(keys)
    header, payload, _sig = _segments(signer.mint("user1", "jwt", METHOD, TARGET, RID))
    for alg in ("none", "HS256", "EdDSA", "RS256"):
        forged_header = _b64(json.dumps({"alg": alg, "typ": "identity+jwt"}).encode())
        if forged_header == header:
            continue  # the genuine header: covered by the signature tests
        _refused(verifier, forged_header + b"." + payload + b".")
        _refused(verifier, forged_header + b"." + payload + b"." + _b64(b"x" * 64))


def test_tampered_claims_are_refused(keys: tuple[str, str, str]) -> None:
    signer, verifier = _pair(keys)
    header, payload, sig = _segments(signer.mint("user1", "jwt", METHOD, TARGET, RID))
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    claims["sub"] = "user0"
    _refused(verifier, header + b"." + _b64(json.dumps(claims).encode()) + b"." + sig)


@pytest.mark.parametrize(
    "token",
    [None, b"", b"a.b", b"a.b.c.d", b"..", b"x" * 5000, b"\xff.\xfe.\xfd", b"e30.e30.e30"],
)
def test_malformed_is_a_401_never_an_exception(
    keys: tuple[str, str, str], token: bytes | None
) -> None:
    _refused(_pair(keys)[1], token)


def test_an_access_token_is_not_an_assertion(keys: tuple[str, str, str]) -> None:
    alg, signing, _ = keys
    import jwt as pyjwt

    # A JWT with the right claims signed with the right key but another header (typ).
    claims = {"iss": f"{DEPLOYMENT}:gateway", "aud": f"{DEPLOYMENT}:resource", "sub": "u"}
    key: object = signing.encode()
    if alg == "EdDSA":
        from cryptography.hazmat.primitives.asymmetric import ed25519

        raw = base64.urlsafe_b64decode(signing + "=" * (-len(signing) % 4))
        key = ed25519.Ed25519PrivateKey.from_private_bytes(raw)
    token = pyjwt.encode(claims, key, algorithm=alg, headers={"typ": "at+jwt"})  # type: ignore[arg-type]
    _refused(_pair(keys)[1], token.encode())


def test_bad_keys_are_clear_config_errors() -> None:
    with pytest.raises(ConfigError, match="EDGE_ASSERTION_KEY"):
        AssertionSigner("EdDSA", "not-a-key", DEPLOYMENT, 5)
    with pytest.raises(ConfigError, match="32 bytes"):
        AssertionSigner("HS256", "short", DEPLOYMENT, 5)
    with pytest.raises(ConfigError, match="EDGE_ASSERTION_ALG"):
        AssertionVerifier("RS256", "x" * 43, DEPLOYMENT)


# --- a real cluster with VALIDATE_AT=gateway ----------------------------------------------
@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WatchedCluster, str]]:
    """One replica behind a validating gateway; the test knows the key pair, as an
    attacker who stole the gateway's key would (to show what the other checks still stop)."""
    signing, verifying = generate_keys("EdDSA")
    watched = start_watched(
        tmp_path_factory.mktemp("edge"),
        1,
        {
            "VALIDATE_AT": "gateway",
            "DEPLOYMENT_ID": DEPLOYMENT,
            "EDGE_ASSERTION_KEY": signing,
            "EDGE_ASSERTION_VERIFY_KEY": verifying,
            "JWT_REVOCATION": "denylist",
        },
    )
    watched.remember(signing)
    yield watched, signing
    stop_and_scan(watched)


def _assert_401_json(answer_status: int, body: bytes) -> None:
    assert answer_status == 401, body
    assert set(json.loads(body)) == {"error", "detail"}


@pytest.mark.slow
def test_edge_validation_serves_sessions_and_jwts_and_honours_logout(
    edge: tuple[WatchedCluster, str],
) -> None:
    watched, _ = edge
    url = watched.url
    session = session_cookie(login(url, 1, "session"))
    token = bearer(login(url, 2, "jwt"))
    watched.remember(session, token["Authorization"])
    me = request(url, "GET", "/api/me", headers={"Cookie": session})
    assert me.status == 200 and me.json()["user"] == "user1" and me.json()["auth"] == "session"
    me = request(url, "GET", "/api/items/5", headers=token)
    assert me.status == 200 and me.json()["owner"] == "user2" and me.json()["auth"] == "jwt"
    # Logout: the gateway's check sees the session gone and the jti denylisted.
    assert request(url, "POST", "/auth/logout", headers={"Cookie": session}).status == 204
    assert request(url, "POST", "/auth/logout", headers=token).status == 204
    for headers in ({"Cookie": session}, token):
        answer = request(url, "GET", "/api/me", headers=headers)
        _assert_401_json(answer.status, answer.body)
        assert "www-authenticate" in answer.headers


@pytest.mark.slow
def test_a_client_sent_assertion_never_passes_the_gateway(
    edge: tuple[WatchedCluster, str],
) -> None:
    watched, signing = edge
    url = watched.url
    minted = AssertionSigner("EdDSA", signing, DEPLOYMENT, 5)
    rid = b"rid-client-chosen-0001"
    forged = minted.mint("user0", "jwt", b"GET", b"/api/me", rid).decode()
    # Without a credential: the gateway's own check refuses, whatever the header says.
    answer = request(
        url, "GET", "/api/me", headers={ASSERTION_HEADER: forged, "X-Request-Id": rid.decode()}
    )
    _assert_401_json(answer.status, answer.body)
    # With user3's credential and user0's (validly signed!) assertion: the gateway drops
    # the client's header and asserts user3.
    token = bearer(login(url, 3, "jwt"))
    watched.remember(token["Authorization"])
    answer = request(
        url,
        "GET",
        "/api/me",
        headers={**token, ASSERTION_HEADER: forged, "X-Request-Id": rid.decode()},
    )
    assert answer.status == 200 and answer.json()["user"] == "user3"


@pytest.mark.slow
def test_a_replica_refuses_whatever_did_not_come_from_this_gateway(
    edge: tuple[WatchedCluster, str],
) -> None:
    watched, signing = edge
    replica = watched.cluster.replica_urls()[0]
    session = session_cookie(login(watched.url, 4, "session"))
    watched.remember(session)
    rid = "rid-straight-to-replica"
    genuine = AssertionSigner("EdDSA", signing, DEPLOYMENT, 5)
    forger = AssertionSigner("EdDSA", generate_keys("EdDSA")[0], DEPLOYMENT, 5)
    other = AssertionSigner("EdDSA", signing, "deploy-b", 5)
    expired = AssertionSigner("EdDSA", signing, DEPLOYMENT, 1)
    old = expired.mint("user4", "session", b"GET", b"/api/me", rid.encode()).decode()
    time.sleep(2.2)
    attempts = {
        "missing (a valid session cookie is not enough)": {"Cookie": session},
        "forged": {ASSERTION_HEADER: forger.mint("user4", "session", b"GET", b"/api/me",
                                                 rid.encode()).decode()},
        "another deployment": {ASSERTION_HEADER: other.mint("user4", "session", b"GET",
                                                            b"/api/me", rid.encode()).decode()},
        "expired": {ASSERTION_HEADER: old},
        "replayed for another path": {ASSERTION_HEADER: genuine.mint(
            "user4", "session", b"GET", b"/api/items/1", rid.encode()).decode()},
        "garbage": {ASSERTION_HEADER: "a.b.c"},
    }  # fmt: skip
    for name, headers in attempts.items():
        answer = request(replica, "GET", "/api/me", headers={"X-Request-Id": rid, **headers})
        assert answer.status == 401, (name, answer.status, answer.body)
        _assert_401_json(answer.status, answer.body)
    # Control: the genuine assertion for this very request passes, so each 401 above was
    # the check refusing, not a replica refusing everything.
    good = genuine.mint("user4", "session", b"GET", b"/api/me", rid.encode()).decode()
    answer = request(
        replica, "GET", "/api/me", headers={"X-Request-Id": rid, ASSERTION_HEADER: good}
    )
    assert answer.status == 200 and answer.json()["user"] == "user4"
    # Two assertion headers are never resolved by picking one.
    conn_headers = [("X-Request-Id", rid), (ASSERTION_HEADER, good), (ASSERTION_HEADER, good)]
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(replica.rsplit(":", 1)[1]), timeout=5)
    conn.putrequest("GET", "/api/me")
    for name, value in conn_headers:
        conn.putheader(name, value)
    conn.endheaders()
    resp = conn.getresponse()
    _assert_401_json(resp.status, resp.read())
    conn.close()


@pytest.mark.slow
def test_edge_validation_resolves_opaque_tokens_by_introspection_too(
    edge: tuple[WatchedCluster, str],
) -> None:
    """The gateway checks with the replicas' own wiring (authcore.checking): an opaque
    token is introspected there, and its logout is honoured at once."""
    watched, _ = edge
    url = watched.url
    token = bearer(login(url, 3, "opaque"))
    watched.remember(token["Authorization"])
    me = request(url, "GET", "/api/me", headers=token)
    assert me.status == 200 and me.json()["user"] == "user3" and me.json()["auth"] == "opaque"
    assert request(url, "POST", "/auth/logout", headers=token).status == 204
    answer = request(url, "GET", "/api/me", headers=token)
    _assert_401_json(answer.status, answer.body)
