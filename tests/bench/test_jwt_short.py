"""jwt-short and its --jwt-ttl axis: cells, settings, errors, and a real run's refreshes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from authbench import modes
from authbench.bench import axes, spectrum
from authbench.bench.matrix import MODE_ORDER, Cell, Load, Matrix, validate_modes
from authbench.process import PROJECT_ROOT, free_port_block
from tests.conftest import ClusterFactory


@pytest.mark.parametrize(
    ("text", "message"),
    [("0", "TTL of 0 s"), ("-5", "TTL of -5 s"), ("x", "not a whole number"), ("", "")],
)
def test_a_ttl_of_zero_or_less_is_a_clear_error_naming_the_flag(text: str, message: str) -> None:
    if not message:
        assert axes.parse_jwt_ttls(text) == ()  # empty: the mode's own TTL
        return
    with pytest.raises(ValueError, match=f"--jwt-ttl: .*{message}"):
        axes.parse_jwt_ttls(text)


def test_the_axis_crosses_only_the_modes_that_set_a_ttl() -> None:
    assert axes.parse_jwt_ttls("30, 300,3600,30") == (30, 300, 3600)
    both = (modes.JWT.key, modes.JWT_SHORT.key)
    cells = Matrix(both, (1,), (Load(4),), ("EdDSA",), jwt_ttls=(5, 60)).configs()
    assert sorted((c.mode, c.jwt_ttl_s) for c in cells) == [
        (modes.JWT.key, None),
        (modes.JWT_SHORT.key, 5),
        (modes.JWT_SHORT.key, 60),
    ]
    short = next(c for c in cells if c.jwt_ttl_s == 5)
    assert short.deployment[modes.TTL_SETTING] == "5" and short.ttl_s == 5
    assert short.deployment["JWT_REVOCATION"] == "none"
    assert short.cell_id.endswith("-ttl5s")
    groups = {c.group for c in cells}
    assert len(groups) == 3  # each TTL is its own deployment
    # Without the axis, the mode's own TTL; jwt keeps the services' default.
    assert Cell(modes.JWT_SHORT.key, 1, Load(4), "EdDSA").ttl_s == 30
    assert Cell(modes.JWT.key, 1, Load(4), "EdDSA").ttl_s == 300


def test_jwt_short_is_asked_for_by_name_not_in_the_default_run() -> None:
    assert modes.JWT_SHORT.key not in MODE_ORDER
    assert validate_modes([modes.JWT_SHORT.key]) == (modes.JWT_SHORT.key,)


def authbench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "authbench", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_a_jwt_short_user_refreshes_before_expiry_at_the_rate_its_ttl_sets(
    tmp_path: Path,
) -> None:
    # TTL 2 s: the user refreshes at 0.8 x 2 = 1.6 s, so 4 users over 6 s make about 15
    # refreshes; a user that waited for expiry would instead see 401s (failures).
    done = authbench(
        "bench", "--modes", f"{modes.JWT.key},{modes.JWT_SHORT.key}", "--jwt-ttl", "2",
        "--replicas", "1", "--loads", "4@5", "--warmup", "1", "--capture", "6", "--rest", "0",
        "--accounts", "10", "--relogin-prob", "0", "--refresh-prob", "0", "--no-report",
        "--no-locust-html", "--port-base", str(free_port_block()),
        "--results-dir", str(tmp_path), "--run-id", "short",
        timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    cells = {c.mode: c for c in spectrum.read_cells(tmp_path / "short")}
    short, jwt = cells[modes.JWT_SHORT.key], cells[modes.JWT.key]
    assert short.ttl_s == 2 and jwt.ttl_s == 300
    # jwt's reads ask no store: at most background work (the auth service's key store)
    assert jwt.refreshes == 0 and jwt.redis_commands <= 0.1 * jwt.reads
    expected = short.users * short.capture_s / (0.8 * 2)
    assert 0.6 * expected <= short.refreshes <= 1.4 * expected, (short.refreshes, expected)
    assert short.redis_commands > jwt.redis_commands  # the refreshes' own Redis work
    [cost] = spectrum.refresh_costs(list(cells.values()))
    assert cost.ttl_s == 2 and cost.redis_cmds_per_refresh >= 1
    assert 1350 <= cost.refreshes_per_user_hour <= 3150  # 3600 / 1.6 = 2250


# In a subprocess: importing a locustfile monkey-patches with gevent, which must never
# happen in the pytest process. One real JwtShortUser against the cluster: it logs in, its
# refresh falls due, Redis is down (refresh 503), then it reads.
_UNAVAILABLE_REFRESH = """
import argparse, json, os, sys, time
from locust.env import Environment
from loadtests.locustfile import JwtShortUser
import redis
env = Environment(user_classes=[JwtShortUser], host=sys.argv[1])
env.create_local_runner()
env.parsed_options = argparse.Namespace(accounts=20)  # the cluster seeds user0..user19
JwtShortUser.host = sys.argv[1]
user = JwtShortUser(env)
user.on_start()
token = user.access_token
user.token_received -= 0.8 * user.token_lifetime_s  # its refresh is due
os.kill(int(sys.argv[2]), 9)  # redis-server: /auth/refresh answers 503
time.sleep(0.3)
user.between_reads()
kept = user.access_token == token and bool(token)
retry_in = getattr(user, "next_refresh_try", 0.0) - time.monotonic()
user.read("/api/me", "/api/me")
stats = {k[0]: [v.num_requests, v.num_failures] for k, v in env.stats.entries.items()}
errors = [str(e.error) for e in env.stats.errors.values()]
json.dump({"kept": kept, "retry_in": retry_in, "stats": stats, "errors": errors}, sys.stdout)
"""


@pytest.mark.slow
def test_a_refresh_the_store_cannot_serve_keeps_the_valid_access_token(
    make_cluster: ClusterFactory,
) -> None:
    # Before: a 503 from /auth/refresh made the user drop its access token and log in again
    # (503 too), so every read of the outage was a 401 while the token was still valid:
    # chaos charged jwt-short with failures its design does not have.
    cluster = make_cluster(replicas=1, env={"JWT_REVOCATION": "none", "JWT_TTL_S": "30"})
    redis_pid = cluster.child("redis").pid
    done = subprocess.run(
        [sys.executable, "-c", _UNAVAILABLE_REFRESH, cluster.gateway_url, str(redis_pid)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["stats"].get("/auth/refresh") == [1, 1], found  # tried; the store was down
    assert found["kept"], found
    assert 0 < found["retry_in"] <= 1.0, found  # tried again a second later, not per read
    assert found["stats"]["/api/me"] == [1, 0]  # the token is good until its exp
    assert "/auth/login" in found["stats"] and found["stats"]["/auth/login"][1] == 0
