"""The three hybrid modes of issue 14 through the gateway in compose, not only locally:
session+cache, jwt+pushlist and jwt-short's short-lived tokens, on the compose file's own
services (its settings block passes SESSION_CACHE, JWT_REVOCATION and JWT_TTL_S).

One stack for the module, in the docker tests' own project (tests/docker/conftest.py: its
lock, images and port), brought up here and taken down after, as test_compose_stack_ha
does: sessions cached on every replica, revocations pushed from the stream, and access
tokens that live TOKEN_TTL_S. jwt-short's deployment has JWT_REVOCATION=none; what this
test checks of it (the compose auth service issues tokens of the TTL it is given, they
refresh through the gateway and are refused once expired) does not depend on that, so one
stack serves all three and CI pays for one `up`. Traffic goes only to 127.0.0.1 and into
the containers started here.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest

from authbench import modes
from authbench.targets.compose import ComposeTarget
from tests.client import Answer, bearer, login, request, session_cookie

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN_TTL_S = 4
LEEWAY_S = 5  # JWT_LEEWAY_S's default: exp is enforced this long after it passes
REPLICAS = 2


@pytest.fixture(scope="module")
def hybrid_stack(compose_stack: ComposeTarget) -> Iterator[ComposeTarget]:
    target = ComposeTarget(
        project_name=compose_stack.project_name,
        env={
            **compose_stack.env,
            "AUTH_SEED_USERS": "4",  # users 1-3
            "SESSION_CACHE": "1",
            "JWT_REVOCATION": "pushlist",
            "JWT_TTL_S": str(TOKEN_TTL_S),
            "HEALTHCHECK_INTERVAL": "1s",  # the stack is up a few seconds sooner (CI time)
        },
    )
    try:
        started = time.monotonic()
        target.up(replicas=REPLICAS, build=False, timeout_s=180)
        print(f"hybrid stack up in {time.monotonic() - started:.1f} s")
        yield target
    finally:
        target.down()


def reads(url: str, headers: dict[str, str], n: int = 3 * REPLICAS) -> list[Answer]:
    return [request(url, "GET", "/api/me", headers=headers) for _ in range(n)]


def commands(target: ComposeTarget, *names: str) -> int:
    """Calls so far of these Redis commands (INFO commandstats of the compose redis)."""
    info = target.redis_info()
    total = 0
    for name in names:
        stat = info.get(f"cmdstat_{name}", "")
        fields = dict(part.split("=", 1) for part in stat.split(",") if "=" in part)
        total += int(fields.get("calls", 0))
    return total


def claims(token: str) -> dict[str, float]:
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    decoded: dict[str, float] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def test_the_stack_serves_all_three_hybrids(hybrid_stack: ComposeTarget) -> None:
    settings = hybrid_stack.settings
    assert modes.SESSION_CACHE.served_by(settings)
    assert modes.JWT_PUSHLIST.served_by(settings)
    assert settings[modes.TTL_SETTING] == str(TOKEN_TTL_S)


def test_hybrids_through_the_compose_gateway(hybrid_stack: ComposeTarget) -> None:
    url = hybrid_stack.gateway_url
    # jwt-short first: its token's clock runs while the other two are checked.
    short = login(url, 3, "jwt")
    assert short.status == 200, short.body
    issued = time.time()
    body = short.json()
    assert body["expires_in"] == TOKEN_TTL_S
    token_claims = claims(body["access_token"])
    # compose's auth service issues the TTL it was given (iat has a fraction, exp none)
    assert token_claims["exp"] - int(token_claims["iat"]) == TOKEN_TTL_S

    # session+cache: reads on every replica, a warm cache asks Redis nothing, logout is
    # pushed to every replica.
    cookie = {"Cookie": session_cookie(login(url, 1, "session"))}
    warm = reads(url, cookie)
    assert [a.status for a in warm] == [200] * len(warm)
    assert len({a.json()["replica"] for a in warm}) == REPLICAS  # both replicas hold it
    before = commands(hybrid_stack, "get", "getex", "pttl")
    cached = reads(url, cookie, 20)
    assert [a.status for a in cached] == [200] * 20
    assert commands(hybrid_stack, "get", "getex", "pttl") - before == 0  # no lookup: hits
    assert request(url, "POST", "/auth/logout", headers=cookie).status == 204
    gone = reads(url, cookie)
    assert [a.status for a in gone] == [401] * len(gone), [a.body for a in gone]

    # jwt+pushlist: reads ask Redis nothing per read; a logout reaches every replica.
    token = bearer(login(url, 2, "jwt"))
    assert [a.status for a in reads(url, token)] == [200] * (3 * REPLICAS)
    before = commands(hybrid_stack, "exists", "get")
    assert [a.status for a in reads(url, token, 20)] == [200] * 20
    assert commands(hybrid_stack, "exists", "get") - before == 0  # no denylist lookup
    assert request(url, "POST", "/auth/logout", headers=token).status == 204
    deadline = time.monotonic() + 2.0  # pushed through the stream: well under a second
    statuses = [a.status for a in reads(url, token)]
    while statuses != [401] * len(statuses) and time.monotonic() < deadline:
        time.sleep(0.05)
        statuses = [a.status for a in reads(url, token)]
    assert statuses == [401] * len(statuses)

    # jwt-short: refreshed through the gateway before it expires, refused once it has.
    refreshed = request(url, "POST", "/auth/refresh", body={"refresh_token": body["refresh_token"]})
    assert refreshed.status == 200, refreshed.body
    assert refreshed.json()["expires_in"] == TOKEN_TTL_S
    assert [a.status for a in reads(url, bearer(refreshed))] == [200] * (3 * REPLICAS)
    time.sleep(max(0.0, issued + TOKEN_TTL_S + LEEWAY_S + 1.0 - time.time()))
    expired = reads(url, bearer(short))
    assert [a.status for a in expired] == [401] * len(expired)
    assert {a.json()["error"] for a in expired} == {"expired_credential"}
