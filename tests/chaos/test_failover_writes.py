"""The failover scenario's loss count on a real cluster: writers record what was
acknowledged, and `check` finds exactly the writes the store no longer holds.

A lost write is made by hand in Redis, as a promoted replica that missed the end of the
replication stream would look: a session or a logout's entries gone, and a refresh chain
whose newest rotation never happened (its token unknown, the previous one unspent). A
token spent by a rotation that was in flight at the kill must not count as lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import redis

from auth_service.refresh_tokens import TOKEN_PREFIX
from authbench.chaos import failover, probes
from authcore.revocation import DENYLIST_PREFIX, REVOKED_FAMILY_PREFIX
from authcore.sessions import session_key
from authcore.tokens import FAMILY_CLAIM
from tests.conftest import ClusterFactory


def _token_key(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def _claims(headers: dict[str, str]) -> dict[str, str]:
    payload = headers["Authorization"].removeprefix("Bearer ").split(".")[1]
    claims: dict[str, str] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_check_counts_exactly_the_acknowledged_writes_the_store_lost(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(replicas=1, env={"JWT_REVOCATION": "denylist"})
    gateway = cluster.gateway_url
    writes = failover.AcknowledgedWrites(
        probes.Gateways(session=gateway, jwt=gateway, denylist=gateway),
        session_accounts=range(1, 3),
        jwt_accounts=range(3, 6),
        chains=2,
    )
    writes.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        kinds = [a.kind for a in writes.acks]
        if all(kinds.count(k) >= 2 for k in ("session", "revocation")) and all(
            sum(a.kind == "refresh" and a.check["chain"] == c for a in writes.acks) >= 2
            for c in (0, 1)
        ):
            break
        time.sleep(0.1)
    writes.stop()
    acks = list(writes.acks)
    chain = {c: [a for a in acks if a.kind == "refresh" and a.check["chain"] == c] for c in (0, 1)}
    assert len(chain[0]) >= 2 and len(chain[1]) >= 2

    with redis.Redis(port=cluster.ports.redis) as store:
        # A lost session and a lost revocation.
        session = next(a for a in acks if a.kind == "session")
        sid = session.check["headers"]["Cookie"].split("=", 1)[1]
        assert store.delete(session_key(sid)) == 1
        # A logout writes two entries (the jti, and its refresh family): both lost.
        claims = _claims(next(a for a in acks if a.kind == "revocation").check["headers"])
        assert store.delete(DENYLIST_PREFIX + claims["jti"]) == 1
        assert store.delete(REVOKED_FAMILY_PREFIX + claims[FAMILY_CLAIM]) == 1
        # Chain 0 lost its newest rotation: that token unknown, the one before unspent.
        newest, before = chain[0][-1].check["token"], chain[0][-2].check["token"]
        record = json.loads(store.get(_token_key(before)) or b"{}")
        record["s"] = 0
        store.set(_token_key(before), json.dumps(record), keepttl=True)
        assert store.delete(_token_key(newest)) == 1
    # Chain 1: a rotation in flight at the kill reached the store (its token is spent).
    spent = probes.call(
        gateway, "POST", "/auth/refresh", body={"refresh_token": chain[1][-1].check["token"]}
    )
    assert spent.status == 200

    losses = writes.check(time.time(), timeout_s=15)
    assert losses.kinds["session"].lost == 1
    assert losses.kinds["revocation"].lost == 1
    assert losses.kinds["refresh"].lost == 1
    assert losses.kinds["refresh"].acknowledged == len(chain[0]) + len(chain[1])
    assert all(k.unanswered == 0 for k in losses.kinds.values())
    assert losses.lost == 3
