"""The compose stack on a primary and two read replicas (issue 17 item 6): the profile
`replicas`, brought up by the harness's `--store replicas:2`, with the services given
REDIS_READ_REPLICAS and SESSION_RENEW_INTERVAL_S as the local target gives them.

One stack for the module, in the docker tests' own project (tests/docker/conftest.py: its
lock, images and port), brought up here and taken down after, as the cluster test does.
Traffic goes only to 127.0.0.1 and into the containers started here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from authbench.bench.samplers import RedisSampler, Sampling
from authbench.chaos.scenarios import ALL_SCENARIOS, cannot_run
from authbench.targets.compose import READ_REPLICA_SERVICES, READ_REPLICAS, ComposeTarget
from tests.client import login, request, session_cookie

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def replicas_stack(compose_stack: ComposeTarget) -> Iterator[ComposeTarget]:
    target = ComposeTarget(
        project_name=compose_stack.project_name,
        env={**compose_stack.env, "AUTH_SEED_USERS": "3", "HEALTHCHECK_INTERVAL": "1s"},
        store=READ_REPLICAS,
    )
    try:
        started = time.monotonic()
        target.up(replicas=1, build=False, timeout_s=180)
        print(f"replicas stack up in {time.monotonic() - started:.1f} s")
        yield target
    finally:
        target.down()


def test_session_reads_go_to_the_read_replicas_and_the_bench_sees_them_there(
    replicas_stack: ComposeTarget,
) -> None:
    url = replicas_stack.gateway_url
    replicas_stack.start()  # attach: the store as the running services have it
    assert replicas_stack.store == READ_REPLICAS
    assert replicas_stack.settings["REDIS_READ_REPLICAS"].split(",") == [
        f"{service}:6379" for service in READ_REPLICA_SERVICES
    ]
    assert replicas_stack.settings["SESSION_RENEW_INTERVAL_S"] == "60"
    answer = login(url, 1, "session")
    assert answer.status == 200, answer.body
    cookie = {"Cookie": session_cookie(answer)}
    time.sleep(0.3)  # the new session replicates

    sampling = Sampling(replicas_stack, None)
    start = sampling.redis()
    for _ in range(10):
        assert request(url, "GET", "/api/me", headers=cookie).status == 200
    window = RedisSampler.window(start, sampling.redis())
    assert window is not None
    assert set(window.nodes) == {"redis-primary", *READ_REPLICA_SERVICES}
    gets = {name: node.per_command.get("get", 0) for name, node in window.nodes.items()}
    assert gets["redis-primary"] == 0, gets
    assert sum(gets[s] for s in READ_REPLICA_SERVICES) == 10 and min(gets.values()) == 0, gets
    assert all(gets[s] >= 4 for s in READ_REPLICA_SERVICES), gets  # in turn
    assert {"redis-primary", *READ_REPLICA_SERVICES} <= set(replicas_stack.cpu_seconds())

    # A logout (a DEL on the primary) reaches the replicas: refused soon after.
    assert request(url, "POST", "/auth/logout", headers=cookie).status == 204
    deadline = time.monotonic() + 2.0
    while request(url, "GET", "/api/me", headers=cookie).status != 401:
        assert time.monotonic() < deadline, "the logout never reached the read replicas"
        time.sleep(0.01)


def test_a_paused_read_replica_costs_no_session_read(replicas_stack: ComposeTarget) -> None:
    """read-replica-pause's fault on this stack (docker pause through the engine; the
    scenario's figures are tested on processes); the kill is refused: a killed
    container's name stops resolving (see the target)."""
    replicas_stack.start()
    assert cannot_run(ALL_SCENARIOS["read-replica-pause"], replicas_stack) is None
    assert cannot_run(ALL_SCENARIOS["read-replica-kill"], replicas_stack) == (
        "target compose cannot kill_read_replica, start_read_replica"
    )
    url = replicas_stack.gateway_url
    cookie = {"Cookie": session_cookie(login(url, 2, "session"))}
    time.sleep(0.3)  # replicated
    replicas_stack.pause_read_replica(1)
    try:
        reads = replicas_stack.read_replica_reads()
        assert reads["redis-replica-2"] is None, reads  # frozen: INFO unanswered
        assert isinstance(reads["redis-primary"], int) and isinstance(
            reads["redis-replica-1"], int
        ), reads
        statuses, slowest_s = [], 0.0
        for _ in range(8):
            started = time.monotonic()
            statuses.append(request(url, "GET", "/api/me", headers=cookie).status)
            slowest_s = max(slowest_s, time.monotonic() - started)
    finally:
        replicas_stack.resume_read_replica(1)
    # Every read answered: one sent to the frozen replica waits REDIS_TIMEOUT_MS (1000 in
    # the docker tests' stack) once, then the other replica answers it.
    assert statuses == [200] * 8
    assert slowest_s < 2 * 1.0 + 0.5, slowest_s
    after = replicas_stack.read_replica_reads()
    assert isinstance(after["redis-replica-2"], int), after  # resumed
