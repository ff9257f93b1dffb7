"""The compose stack on a sharded store (issue 17 item 5): the profile `cluster` (three
Redis Cluster shards and the one-shot that forms the cluster), brought up by the harness's
`--store cluster:3`, with the services given REDIS_CLUSTER_NODES as the local target gives
them.

One stack for the module, in the docker tests' own project (tests/docker/conftest.py: its
lock, images and port), brought up here and taken down after, as test_compose_stack_ha
does. Traffic goes only to 127.0.0.1 and into the containers started here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from authbench.targets.compose import CLUSTER, REDIS_SERVICE, SHARD_SERVICES, ComposeTarget
from authcore.sessions import USER_SESSIONS_PREFIX, session_key
from tests.client import login, request, session_cookie

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(240)]

USERS = (1, 2, 3, 4, 5, 6)


@pytest.fixture(scope="module")
def cluster_stack(compose_stack: ComposeTarget) -> Iterator[ComposeTarget]:
    target = ComposeTarget(
        project_name=compose_stack.project_name,
        env={
            **compose_stack.env,
            "AUTH_SEED_USERS": "7",  # users 1-6
            # Five stages wait on a healthcheck each (shards, auth, resource, gateway):
            # probed every second, the stack is up a few seconds sooner (CI time).
            "HEALTHCHECK_INTERVAL": "1s",
        },
        store=CLUSTER,
    )
    try:
        started = time.monotonic()
        target.up(replicas=1, build=False, timeout_s=180)
        print(f"cluster stack up in {time.monotonic() - started:.1f} s")
        yield target
    finally:
        target.down()


def test_sessions_through_the_gateway_live_on_more_than_one_shard(
    cluster_stack: ComposeTarget,
) -> None:
    url = cluster_stack.gateway_url
    cluster_stack.start()  # attach: the store as the running services have it
    assert cluster_stack.store == CLUSTER
    assert cluster_stack.settings["REDIS_CLUSTER_NODES"].split(",") == [
        f"{service}:6379" for service in SHARD_SERVICES
    ]
    cookies = {}
    for user in USERS:
        answer = login(url, user, "session")
        assert answer.status == 200, answer.body
        cookies[user] = session_cookie(answer)
        me = request(url, "GET", "/api/me", headers={"Cookie": cookies[user]})
        assert me.status == 200, me.body
        assert me.json()["user"] == f"user{user}"

    # Each login wrote the session (a random key) and the user's index `us:userN` (a fixed
    # key: users 1-6's fall on all three shards' slots); every key is on the shard that
    # CLUSTER KEYSLOT and the slot map name, so the writes reached all three shards.
    sessions = [session_key(cookies[user].partition("=")[2]) for user in USERS]
    keys = sessions + [f"{USER_SESSIONS_PREFIX}user{user}" for user in USERS]
    shards = cluster_stack.shard_of_keys(keys)
    assert set(shards) == {0, 1, 2}, shards
    for index, service in enumerate(SHARD_SERVICES):
        here = [key for key, shard in zip(keys, shards, strict=True) if shard == index]
        found = cluster_stack.shard_cli(index, [["EXISTS", key] for key in here])
        assert found == ["1"] * len(here), (service, here, found)
    infos = cluster_stack.redis_infos()
    assert sorted(infos) == sorted(SHARD_SERVICES)
    assert all(info["cluster_enabled"] == "1" for info in infos.values())
    holding = [name for name, info in infos.items() if "db0" in info]
    assert sorted(holding) == sorted(SHARD_SERVICES), holding
    # The profile's plain `redis` still runs (the services depend on it) but holds nothing.
    assert (
        cluster_stack.compose("exec", "-T", REDIS_SERVICE, "redis-cli", "DBSIZE").stdout.strip()
        == "0"
    )

    # A logout deletes the session on its shard; the others keep working.
    first = {"Cookie": cookies[USERS[0]]}
    assert request(url, "POST", "/auth/logout", headers=first).status == 204
    assert request(url, "GET", "/api/me", headers=first).status == 401
    assert request(url, "GET", "/api/me", headers={"Cookie": cookies[USERS[1]]}).status == 200
