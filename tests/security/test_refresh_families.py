"""Refresh-token families: "log out everywhere" reaches every live one, and none lives for
ever however often it rotates (REFRESH_FAMILY_ABSOLUTE_S).

Short lifetimes make hours into seconds: REFRESH_TTL_S=2 (each token), and a family
deadline of 6 s. Real cluster, real Redis; logs scanned when it stops (conftest).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.client import Answer, request
from tests.security.conftest import WatchedCluster, start_watched, stop_and_scan

pytestmark = pytest.mark.slow  # waits out token and family lifetimes

TOKEN_TTL_S = 2
FAMILY_S = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedCluster]:
    watched = start_watched(
        tmp_path_factory.mktemp("families"),
        1,
        {
            "JWT_REVOCATION": "denylist",
            "REFRESH_TTL_S": str(TOKEN_TTL_S),
            "REFRESH_FAMILY_ABSOLUTE_S": str(FAMILY_S),
        },
    )
    yield watched
    stop_and_scan(watched)


def _login(watched: WatchedCluster, user: int, mode: str) -> Answer:
    answer = request(
        watched.url, "POST", "/auth/login",
        body={"username": f"user{user}", "password": f"password{user}", "mode": mode},
    )  # fmt: skip
    assert answer.status == 200, answer.body
    watched.remember(f"password{user}")
    if mode == "jwt":
        watched.remember(answer.json()["access_token"], answer.json()["refresh_token"])
    return answer


def _refresh(watched: WatchedCluster, token: str) -> Answer:
    answer = request(watched.url, "POST", "/auth/refresh", body={"refresh_token": token})
    if answer.status == 200:
        watched.remember(answer.json()["access_token"], answer.json()["refresh_token"])
    return answer


def test_log_out_everywhere_revokes_a_family_that_kept_rotating_past_the_token_ttl(
    cluster: WatchedCluster,
) -> None:
    # A stolen refresh token, kept alive by rotating it: longer than REFRESH_TTL_S after
    # its login (the user's family index used to expire then, taking the family with it).
    tokens = _login(cluster, 1, "jwt").json()
    refresh, access = tokens["refresh_token"], tokens["access_token"]
    until = time.monotonic() + TOKEN_TTL_S + 1.5
    while time.monotonic() < until:
        time.sleep(0.5)
        rotated = _refresh(cluster, refresh)
        assert rotated.status == 200, rotated.body
        refresh, access = rotated.json()["refresh_token"], rotated.json()["access_token"]
    # The user logs in elsewhere (a session: no new family) and logs out everywhere.
    session = _login(cluster, 1, "session").set_cookies[0].split(";", 1)[0]
    everywhere = request(cluster.url, "POST", "/auth/logout?scope=all", headers={"Cookie": session})
    assert everywhere.status == 204
    stolen = _refresh(cluster, refresh)
    assert stolen.status == 401, stolen.body
    assert stolen.json()["error"] == "revoked_credential"
    me = request(cluster.url, "GET", "/api/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status == 401 and me.json()["error"] == "revoked_credential"


def test_a_family_ends_at_its_absolute_lifetime_however_often_it_rotates(
    cluster: WatchedCluster,
) -> None:
    started = time.monotonic()
    refresh = _login(cluster, 2, "jwt").json()["refresh_token"]
    answers: list[tuple[float, int, str]] = []
    while time.monotonic() - started < FAMILY_S + 2:
        time.sleep(0.6)
        answer = _refresh(cluster, refresh)
        code = answer.json().get("error", "") if answer.status != 200 else ""
        answers.append((time.monotonic() - started, answer.status, code))
        if answer.status != 200:
            break
        refresh = answer.json()["refresh_token"]
    # Rotation works well past one token's lifetime, then ends at the family's deadline.
    assert all(status == 200 for t, status, _ in answers if t < FAMILY_S - 1), answers
    assert any(t > TOKEN_TTL_S + 1 and status == 200 for t, status, _ in answers), answers
    last_time, last_status, last_code = answers[-1]
    assert last_status == 401 and last_code == "expired_credential", answers
    assert FAMILY_S - 1 <= last_time <= FAMILY_S + 2, answers
    # A new login starts a new family: the user is not locked out.
    assert _refresh(cluster, _login(cluster, 2, "jwt").json()["refresh_token"]).status == 200
