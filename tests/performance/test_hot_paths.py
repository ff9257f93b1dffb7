"""Issue 7: the hot paths stay lean without changing what they accept or refuse."""

from __future__ import annotations

import pytest
import redis

from authbench.targets.local import LocalCluster
from authcore.config import Settings
from authcore.errors import InvalidCredential
from authcore.tokens import KeyRing, TokenIssuer, TokenVerifier, UnknownKeyId
from tests.client import login, request, session_cookie
from tests.conftest import ClusterFactory


def _calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name[8:]: int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info"}


def test_a_session_request_costs_exactly_one_redis_round_trip(
    make_cluster: ClusterFactory,
) -> None:
    cluster: LocalCluster = make_cluster(replicas=1, env={"SESSION_IDLE_S": "600"})
    cookie = {"Cookie": session_cookie(login(cluster.gateway_url, 1, "session"))}
    client = redis.Redis(port=cluster.ports.redis)
    try:
        (key,) = client.keys("s:*")
        client.expire(key, 30)  # so the renewal is visible
        before = _calls(client)
        for _ in range(25):
            assert request(cluster.gateway_url, "GET", "/api/me", headers=cookie).status == 200
        after = _calls(client)
        delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        # One GETEX per request: the read and the idle-timeout renewal in one command.
        assert delta == {"getex": 25}
        assert client.ttl(key) > 590
    finally:
        client.close()


def test_the_session_cookie_fast_path_accepts_and_refuses_like_the_general_one(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(replicas=1)
    sid = session_cookie(login(cluster.gateway_url, 2, "session"))
    for cookie, status in [
        (sid, 200),  # the fast path: the header is exactly one session cookie
        (f"theme=dark; {sid}", 200),  # the general path: cookie parsing
        (f"{sid}; theme=dark", 200),
        (sid[:-1], 401),  # one character short: not a session ID, never reaches Redis
        (sid[:-1] + "!", 401),
        ("sid=" + "A" * 43, 401),  # well-formed but unknown
    ]:
        answer = request(cluster.gateway_url, "GET", "/api/me", headers={"Cookie": cookie})
        assert answer.status == status, (cookie, answer.body)
        if status == 200:
            assert answer.json()["user"] == "user2"


@pytest.fixture
def eddsa() -> tuple[Settings, KeyRing]:
    return Settings.from_env(), KeyRing("EdDSA")


def test_the_header_key_cache_forgets_keys_that_are_gone(
    eddsa: tuple[Settings, KeyRing],
) -> None:
    settings, ring = eddsa
    verifier = TokenVerifier(settings)
    verifier.set_keys(ring.verification_keys())
    token = TokenIssuer(ring, settings).issue("user1", "family").token
    assert verifier.verify(token)["sub"] == "user1"
    assert verifier.verify(token)["sub"] == "user1"  # second time: from the cache
    verifier.set_keys({})  # the key was retired: the cached lookup must not survive
    with pytest.raises(UnknownKeyId):
        verifier.verify(token)
    verifier.load_jwks(ring.jwks())
    assert verifier.verify(token)["sub"] == "user1"


def test_a_cached_header_does_not_vouch_for_the_rest_of_the_token(
    eddsa: tuple[Settings, KeyRing],
) -> None:
    settings, ring = eddsa
    verifier = TokenVerifier(settings)
    verifier.set_keys(ring.verification_keys())
    issuer = TokenIssuer(ring, settings)
    good = issuer.issue("user1", "family").token
    verifier.verify(good)  # caches this header segment
    header, payload, signature = good.split(".")
    other = issuer.issue("user2", "family").token.split(".")
    for forged in (
        f"{header}.{other[1]}.{signature}",  # someone else's claims, this signature
        f"{header}.{payload}.{signature[:-4]}AAAA",  # a broken signature
        f"{header}.{payload}!.{signature}",  # not base64url
        f"{header}.{payload}",  # not three segments
    ):
        with pytest.raises(InvalidCredential):
            verifier.verify(forged)
