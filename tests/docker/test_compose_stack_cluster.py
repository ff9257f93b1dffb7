"""The compose stack on a sharded store (issue 17 item 5): the profile `cluster` (three
Redis Cluster shards and the one-shot that forms the cluster), brought up by the harness's
`--store cluster:3`, with the services given REDIS_CLUSTER_NODES as the local target gives
them.

One stack for the module, in the docker tests' own project (tests/docker/conftest.py: its
lock, images and port), brought up here and taken down after, as test_compose_stack_ha
does. The harness runs the profile with docker-compose.cluster.yml (fixed shard
addresses), so the second test kills a shard's container and starts it again through the
shard-kill scenario's own code. Traffic goes only to 127.0.0.1 and into the containers
started here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from authbench.chaos import probes, shard_kill
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
    # Told the shards by their fixed addresses (docker-compose.cluster.yml), in order.
    addresses = cluster_stack.shard_addresses()
    assert None not in addresses
    assert cluster_stack.settings["REDIS_CLUSTER_NODES"].split(",") == [
        f"{address}:6379" for address in addresses
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


def _sessions_on_and_off(
    target: ComposeTarget, victim: int, each: int, most: int = 40
) -> list[dict[str, str]]:
    """Session cookies, logged in until at least `each` live on shard `victim` and `each`
    elsewhere (CLUSTER KEYSLOT; a third of the slots is the victim's)."""
    cookies: list[dict[str, str]] = []
    while len(cookies) < most:
        cookies += shard_kill.log_in(target.gateway_url, [USERS[len(cookies) % len(USERS)]] * 6)
        where = target.shard_of_keys([session_key(c["Cookie"].partition("=")[2]) for c in cookies])
        if sum(s == victim for s in where) >= each and sum(s != victim for s in where) >= each:
            return cookies
    raise AssertionError(f"{most} sessions, fewer than {each} on shard {victim + 1} or off it")


def test_a_killed_shard_fails_only_its_own_sessions_and_serves_again_once_started(
    cluster_stack: ComposeTarget,
) -> None:
    """The shard-kill scenario's own inject() on compose: the last shard's container
    SIGKILLed, every probe session read over and over for two seconds, the container
    started again (same fixed address, same nodes file, no data)."""
    cluster_stack.start()
    assert cluster_stack.supports("kill_shard") and cluster_stack.supports("start_shard")
    victim = len(SHARD_SERVICES) - 1
    cookies = _sessions_on_and_off(cluster_stack, victim, 3)
    events: dict[str, float] = {}
    started = time.monotonic()
    window, figures = shard_kill.inject(
        cluster_stack, cluster_stack.gateway_url, cookies, 2.0, events, print
    )
    print(f"kill, outage and rejoin in {time.monotonic() - started:.1f} s: {figures['statuses']}")
    on_victim = figures["probe_sessions_on_victim"]
    assert on_victim >= 3 and figures["probe_sessions"] - on_victim >= 3
    # During the outage: every session on the dead shard failed, with a JSON 503 (never a
    # 500 or a hang); every other one answered 200 on every read.
    assert figures["failed_on_victim"] == on_victim, figures
    assert figures["failed_elsewhere"] == 0 and figures["reads_failed_elsewhere"] == 0, figures
    assert set(figures["statuses"]) == {"503"}, figures["statuses"]
    assert window.fault_at < window.restore_at <= window.back_at
    # Started again: the shard is reached (its sessions are gone, 401, not 503: no
    # persistence), the others still answer...
    after = figures["after_restart"]
    assert after == {
        "victim_lost": on_victim,
        "victim_other": 0,
        "elsewhere_ok": figures["probe_sessions"] - on_victim,
        "elsewhere_not_ok": 0,
    }, after
    # ...and it serves again: new sessions, on every shard, all answer. A service that
    # did not call the shard during the outage (auth: the probes only read) still pools
    # connections to the killed container, which sent no FIN (its network namespace went
    # with it); the first call on one meets the new container's RST and fails (503, no
    # retry on a cluster: authcore/redis_store.py), and that node's breaker then waits out
    # its cooldown. So a login may be refused for about a cooldown, not longer.
    deadline = time.monotonic() + 10.0
    refused: list[int] = []
    fresh: list[dict[str, str]] = []
    where: list[int] = []
    while victim not in where and len(fresh) < 42:  # a third of the slots are the victim's
        body = {"username": "user1", "password": "password1", "mode": "session"}
        answer = probes.call(cluster_stack.gateway_url, "POST", "/auth/login", body=body)
        if answer.status != 200:
            refused.append(answer.status)
            assert answer.status == 503 and time.monotonic() < deadline, (refused, answer.body)
            time.sleep(0.2)
            continue
        fresh.append(probes.credential_headers(answer))
        if len(fresh) % 6 == 0:
            where = cluster_stack.shard_of_keys(
                [session_key(c["Cookie"].partition("=")[2]) for c in fresh]
            )
    print(f"logins refused after the rejoin: {refused}; new sessions on shards {where}")
    assert victim in where, where
    statuses = [
        probes.call(cluster_stack.gateway_url, "GET", "/api/me", headers=c).status for c in fresh
    ]
    assert statuses == [200] * len(fresh), list(zip(where, statuses, strict=True))
