"""`docker compose up`: the same system in containers, checked for real.

One stack for the module (tests/docker/conftest.py), real images, real Redis, traffic only
to 127.0.0.1:8080 where the project publishes its gateway. The tests run in file order:
the last one takes the stack down and checks nothing is left.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from authbench.process import free_port_block
from authbench.targets.compose import ComposeTarget
from tests.client import bearer, login, request, session_cookie
from tests.docker.conftest import GATEWAY_PORT, PROJECT, SEED_USERS, in_ci

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(300)]


def _status(url: str, path: str, headers: dict[str, str], timeout: float = 3.0) -> int:
    try:
        return request(url, "GET", path, headers=headers, timeout=timeout).status
    except OSError:
        return 0  # no answer at all (refused, reset, timed out)


def _identity(target: ComposeTarget) -> dict[str, str]:
    """Container id, start time and restart count of every service but Redis."""
    ids = [c.id for c in target.containers() if c.service != "redis"]
    out = subprocess.run(
        ["docker", "inspect", "--format",
         "{{.Name}} {{.Id}} {{.State.StartedAt}} {{.RestartCount}}", *ids],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return {line.split()[0]: line for line in out.splitlines()}


def test_every_service_is_healthy_and_both_login_modes_answer(
    compose_stack: ComposeTarget,
) -> None:
    containers = compose_stack.containers()
    by_service: dict[str, int] = {}
    for c in containers:
        assert c.state == "running" and c.health == "healthy", c
        by_service[c.service] = by_service.get(c.service, 0) + 1
    assert by_service == {"redis": 1, "auth": 1, "resource": 3, "gateway": 1}

    # Published on loopback only, on 8080 (always in CI; see conftest for the exception).
    published = compose_stack.compose("port", "gateway", "8080").stdout.strip()
    assert published == f"127.0.0.1:{compose_stack.gateway_port}"
    if in_ci():
        assert compose_stack.gateway_port == GATEWAY_PORT
    url = compose_stack.gateway_url
    session = login(url, 1, "session")
    assert session.status == 200, session.body
    me = request(url, "GET", "/api/me", headers={"Cookie": session_cookie(session)})
    assert me.status == 200, me.body
    assert me.json()["user"] == "user1" and me.json()["auth"] == "session"

    jwt = login(url, 2, "jwt")
    assert jwt.status == 200, jwt.body
    me = request(url, "GET", "/api/me", headers=bearer(jwt))
    assert me.status == 200, me.body
    assert me.json()["user"] == "user2" and me.json()["auth"] == "jwt"
    assert request(url, "GET", "/api/me").status == 401


def test_the_first_scale_after_the_first_up_recreates_nothing_and_old_jwts_keep_working(
    compose_stack: ComposeTarget,
) -> None:
    """README's scale command, typed right after the first `up` (which built the image).

    When each service built the image itself, the three builds left three image IDs and
    this first scale recreated auth, every replica and the gateway: auth came back with
    new keys and every JWT issued so far got 401.
    """
    url = compose_stack.gateway_url
    jwt = bearer(login(url, 7, "jwt"))
    session = {"Cookie": session_cookie(login(url, 8, "session"))}
    before = _identity(compose_stack)
    assert len(before) == 5, before  # auth, 3 replicas, gateway

    # Exactly what README says, not ComposeTarget.scale (whose --no-recreate would hide it).
    compose_stack.compose("up", "-d", "--wait", "--scale", "resource=4", timeout_s=180)
    after = _identity(compose_stack)
    assert len(after) == 6, after
    for name, identity in before.items():
        assert after[name] == identity, f"{name} was recreated or restarted by the scale"
    statuses = {_status(url, "/api/me", h) for h in (jwt, session) for _ in range(12)}
    assert statuses == {200}, "a credential issued before the scale no longer works"

    compose_stack.compose("up", "-d", "--wait", "--scale", "resource=3", timeout_s=180)
    back = _identity(compose_stack)
    for name in (f"/{PROJECT}-auth-1", f"/{PROJECT}-gateway-1"):
        assert back[name] == before[name], f"{name} was recreated by scaling back"
    assert _status(url, "/api/me", jwt) == 200


def test_scaling_resource_from_1_to_3_reaches_every_replica_without_restarting_the_gateway(
    compose_stack: ComposeTarget,
) -> None:
    url = compose_stack.gateway_url
    token = bearer(login(url, 3, "jwt"))
    gateway_before = _identity(compose_stack)[f"/{PROJECT}-gateway-1"]

    def replicas_seen(seconds: float) -> set[str]:
        seen: set[str] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            answer = request(url, "GET", "/api/me", headers=token)
            if answer.status == 200:
                seen.add(answer.json()["replica"])
            time.sleep(0.02)
        return seen

    compose_stack.scale(1)
    assert compose_stack.replicas() == 1
    # The gateway drops the removed replicas on its next DNS rounds (HEALTH_INTERVAL_S=1);
    # on a busy machine a round can come late, so allow a few.
    started = time.monotonic()
    seen = replicas_seen(1.0)
    while len(seen) != 1 and time.monotonic() - started < 10:
        seen = replicas_seen(1.0)
    assert len(seen) == 1, f"{time.monotonic() - started:.1f} s after scaling to 1: {seen}"

    compose_stack.scale(3)
    assert compose_stack.replicas() == 3
    started = time.monotonic()
    seen = set()
    while len(seen) < 3 and time.monotonic() - started < 10:
        seen |= replicas_seen(0.5)
    assert len(seen) == 3, f"after {time.monotonic() - started:.1f} s only {seen} answered"
    print(f"all three replicas answered {time.monotonic() - started:.1f} s after scaling")
    assert _identity(compose_stack)[f"/{PROJECT}-gateway-1"] == gateway_before


@dataclass
class SmallLoad:
    """Reads of /api/me, one thread per credential kind (so a slow failure of one kind
    does not slow the other), ~20 a second each, bounded in time."""

    url: str
    headers: dict[str, dict[str, str]]
    max_seconds: float = 60.0
    records: list[tuple[float, str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> SmallLoad:
        for kind in self.headers:
            thread = threading.Thread(target=self._run, args=(kind,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, kind: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            status = _status(self.url, "/api/me", self.headers[kind])
            self.records.append((time.monotonic(), kind, status))
            self._stop.wait(0.05)

    def statuses(self, kind: str, start: float, end: float = float("inf")) -> list[int]:
        return [s for t, k, s in list(self.records) if k == kind and start <= t <= end]


def test_killed_redis_fails_sessions_with_503_while_jwts_keep_200_then_start_recovers(
    compose_stack: ComposeTarget,
) -> None:
    url = compose_stack.gateway_url
    session = login(url, 4, "session")
    jwt = login(url, 5, "jwt")
    assert session.status == 200 and jwt.status == 200
    headers = {"session": {"Cookie": session_cookie(session)}, "jwt": bearer(jwt)}
    before = _identity(compose_stack)

    with SmallLoad(url, headers) as load:
        time.sleep(1.5)
        killed = time.monotonic()
        compose_stack.kill_redis()
        assert [c.state for c in compose_stack.containers("redis", all=True)] == ["exited"]
        time.sleep(4.0)
        outage_end = time.monotonic()
        compose_stack.start_redis()
        restarted = time.monotonic()
        time.sleep(1.5)

    assert set(load.statuses("session", 0, killed)) == {200}
    assert set(load.statuses("jwt", 0, killed)) == {200}
    # After a short grace (requests in flight, the breaker opening), every session
    # request of the outage is a 503 and every JWT request still a 200.
    during_sessions = load.statuses("session", killed + 1.0, outage_end)
    during_jwts = load.statuses("jwt", killed + 1.0, outage_end)
    assert len(during_sessions) >= 3 and set(during_sessions) == {503}, during_sessions
    assert len(during_jwts) >= 20 and set(during_jwts) == {200}, during_jwts
    assert set(load.statuses("jwt", 0)) == {200}, "a JWT request failed at some point"
    print(
        f"outage: {len(during_sessions)} session requests, all 503; "
        f"{len(during_jwts)} JWT requests, all 200"
    )

    # Redis is back (empty: no persistence), nothing else was restarted, and a new
    # session works end to end within seconds.
    deadline = restarted + 15
    while True:
        again = login(url, 6, "session")
        if again.status == 200:
            break
        assert time.monotonic() < deadline, (again.status, again.body)
        time.sleep(0.3)
    me = request(url, "GET", "/api/me", headers={"Cookie": session_cookie(again)})
    assert me.status == 200 and me.json()["auth"] == "session", me.body
    assert _identity(compose_stack) == before


def test_a_short_locust_run_in_the_load_profile_writes_csv_stats_to_results(
    compose_stack: ComposeTarget,
) -> None:
    run_name = f"_scratch/compose-test-{os.getpid()}"
    try:
        run = compose_stack.run_locust(
            run_name=run_name,
            users=4,
            spawn_rate=4,
            run_time="10s",  # 5 s saw no finished login on a machine at load 16
            workers=2,
            user_classes=("SessionUser", "JwtUser"),
            extra_env={"AUTH_SEED_USERS": str(SEED_USERS)},
            timeout_s=180,
        )
        print(run.log)  # shown when an assertion below fails
        assert run.exit_code == 0, run.log
        assert run.csv_dir == compose_stack.project_dir / "results" / run_name
        with (run.csv_dir / "locust_stats.csv").open() as f:
            rows = {row["Name"]: row for row in csv.DictReader(f)}
        total = rows["Aggregated"]
        assert int(total["Request Count"]) > 0, (rows, run.log)
        assert int(total["Failure Count"]) == 0, (rows, run.log)
        assert int(rows["/api/me"]["Request Count"]) > 0
        assert run.workers == 2, run.log
        assert compose_stack.replicas() == 3, "the Locust run must not rescale the stack"
    finally:
        shutil.rmtree(compose_stack.results_dir / run_name, ignore_errors=True)


def test_the_load_profile_serves_locusts_web_ui_on_loopback(compose_stack: ComposeTarget) -> None:
    """README's `LOCUST_HEADLESS=false ... docker compose --profile load up -d --wait`:
    Locust's web UI answers on 127.0.0.1:$LOCUST_WEB_PORT, idle with both workers
    connected, and its Start (the page's own POST) changes the state it reports."""
    port = free_port_block()
    ui = f"http://127.0.0.1:{port}"
    run_name = f"_scratch/compose-ui-{os.getpid()}"
    csv_dir = compose_stack.results_dir / run_name
    csv_dir.mkdir(parents=True, exist_ok=True)
    csv_dir.chmod(0o777)  # the master writes its CSVs here every few seconds, as any uid
    settings = {
        "LOCUST_HEADLESS": "false",
        "LOCUST_WEB_PORT": str(port),
        "LOCUST_WORKERS": "2",
        "LOCUST_RUN": run_name,
    }
    compose_stack.env.update(settings)
    try:
        # README's command as it stands (no --no-deps): the running stack is left as it is.
        compose_stack.compose("up", "-d", "--wait", profiles=("load",), timeout_s=180)
        page = request(ui, "GET", "/")
        assert page.status == 200 and b"<title>Locust" in page.body, page.body[:200]
        deadline = time.monotonic() + 20
        while (idle := _ui_stats(ui))["worker_count"] < 2 and time.monotonic() < deadline:
            time.sleep(0.3)  # a worker registers with the master just after it is healthy
        assert (idle["state"], idle["user_count"], idle["worker_count"]) == ("ready", 0, 2), idle

        form = "user_count=2&spawn_rate=2&host=http%3A%2F%2Fgateway%3A8080"
        started = request(ui, "POST", "/swarm", body=form, headers=_FORM)
        assert started.status == 200 and started.json()["success"] is True, started.body
        assert _ui_state(ui, "spawning", "running") in ("spawning", "running")
        # Stop answers; its state is not waited for (the containers go next): ~4 s of CI.
        assert request(ui, "POST", "/stop").json()["success"] is True
    finally:
        for name in settings:
            compose_stack.env.pop(name, None)
        compose_stack.compose(
            "rm", "-f", "-s", "locust-master", "locust-worker", profiles=("load",), timeout_s=60
        )
        shutil.rmtree(csv_dir, ignore_errors=True)
    assert compose_stack.replicas() == 3, "the load profile's `up` must not rescale the stack"


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _ui_state(ui: str, *wanted: str, timeout_s: float = 20.0) -> str:
    """The state the UI reports, polled until it is one of `wanted` (the UI caches its
    stats for a few seconds, so a Start shows there a moment later)."""
    deadline = time.monotonic() + timeout_s
    while (state := str(_ui_stats(ui)["state"])) not in wanted and time.monotonic() < deadline:
        time.sleep(0.5)
    return state


def _ui_stats(ui: str) -> dict[str, Any]:
    """What the web UI's pages poll: state, users and workers of the run."""
    answer = request(ui, "GET", "/stats/requests")
    assert answer.status == 200, answer.body
    return cast(dict[str, Any], answer.json())


def _status_after_redis_is_back(url: str, headers: dict[str, str]) -> int:
    """The first answer that is not a 503 (Redis still coming back, breaker open)."""
    deadline = time.monotonic() + 20
    while True:
        status = _status(url, "/api/me", headers)
        if status not in (0, 503) or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def test_sessions_survive_a_redis_restart_only_with_redis_appendonly_yes(
    compose_stack: ComposeTarget,
) -> None:
    """README: by default `docker compose restart redis` loses every session;
    REDIS_APPENDONLY=yes keeps them. Nothing but Redis restarts either way."""
    url = compose_stack.gateway_url
    others = _identity(compose_stack)

    lost = {"Cookie": session_cookie(login(url, 9, "session"))}
    assert _status(url, "/api/me", lost) == 200
    compose_stack.compose("restart", "redis", timeout_s=60)
    compose_stack.wait_redis()
    assert _status_after_redis_is_back(url, lost) == 401, "a session outlived a memory-only Redis"

    compose_stack.env["REDIS_APPENDONLY"] = "yes"
    try:
        # The changed setting recreates the redis container only (same volume).
        compose_stack.compose("up", "-d", "--wait", "--no-deps", "redis", timeout_s=120)
        kept = {"Cookie": session_cookie(login(url, 10, "session"))}
        assert _status(url, "/api/me", kept) == 200
        time.sleep(1.5)  # appendfsync everysec: the write is on disk within a second
        compose_stack.compose("restart", "redis", timeout_s=60)
        compose_stack.wait_redis()
        assert _status_after_redis_is_back(url, kept) == 200, "the session did not survive"
    finally:
        compose_stack.env["REDIS_APPENDONLY"] = "no"
        compose_stack.compose("up", "-d", "--wait", "--no-deps", "redis", timeout_s=120)
    assert _identity(compose_stack) == others


def test_down_leaves_nothing_running(compose_stack: ComposeTarget) -> None:
    compose_stack.down()
    label = f"label=com.docker.compose.project={PROJECT}"
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        out = subprocess.run(
            ["docker", *kind, "-q", "--filter", label],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        assert out.strip() == "", f"docker {' '.join(kind)} still lists {out.split()}"
    assert _status(compose_stack.gateway_url, "/healthz", {}, timeout=1.0) == 0
