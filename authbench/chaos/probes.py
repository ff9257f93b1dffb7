"""Measured, not assumed: what survives a Redis restart, and how long a logout takes to bite.

- `plant` creates credentials while Redis is up (sessions, refresh tokens, and access
  tokens that were logged out, whose jti the denylist holds) and confirms each one;
  `check_losses` asks the cluster about each of them after Redis came back.
- `revocation_window` logs out one credential per mode and asks every replica of that
  mode's group, directly, until each one refuses it (or the observation ends).

Requests are plain HTTP/1.1 (http.client) to loopback addresses of the cluster only.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from authbench.modes import Login, Mode


class ProbeError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 0: no answer
    body: bytes = b""
    cookies: tuple[str, ...] = ()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    base_url: str,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> Answer:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    all_headers = dict(headers or {})
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read()
        return Answer(resp.status, data, tuple(resp.headers.get_all("Set-Cookie") or ()))
    except (OSError, http.client.HTTPException):
        return Answer(0)
    finally:
        conn.close()


def login(gateway: str, account: int, credential: Login) -> Answer:
    answer = call(
        gateway,
        "POST",
        "/auth/login",
        body={"username": f"user{account}", "password": f"password{account}", "mode": credential},
    )
    if answer.status != 200:
        raise ProbeError(f"login of user{account} ({credential}) answered {answer.status}")
    return answer


def wait_for_logins(gateway: str, account: int, timeout_s: float = 120.0) -> float:
    """Block until a login succeeds; returns how long that took.

    The auth service hashes its seeded users' passwords in the background after start-up
    and logins queue behind that work, so a scenario waits here before its load starts:
    the warm-up should measure steady service, not the seeding.
    """
    started = time.monotonic()
    while True:
        body = {"username": f"user{account}", "password": f"password{account}", "mode": Login.JWT}
        if call(gateway, "POST", "/auth/login", body=body, timeout_s=10).status == 200:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise ProbeError("the auth service did not accept a login in time")
        time.sleep(0.2)


def credential_headers(answer: Answer) -> dict[str, str]:
    """The header that presents the credential of a login answer."""
    for cookie in answer.cookies:
        name, _, rest = cookie.partition("=")
        if name.strip().endswith("sid"):
            return {"Cookie": f"{name.strip()}={rest.split(';', 1)[0]}"}
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def token_expiry(access_token: str) -> float:
    """The `exp` claim, read without verifying (only to report how long a token lives)."""
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return float(claims["exp"])


# --- data loss across a restart ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Gateways:
    """Where to plant and check each kind of credential."""

    session: str
    jwt: str  # refresh tokens: any gateway reaches the one auth service
    denylist: str | None  # a gateway whose replicas check the denylist; None: no such mode


@dataclass(slots=True)
class Planted:
    sessions: list[dict[str, str]] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    revoked: list[dict[str, str]] = field(default_factory=list)
    acknowledged_at: float = 0.0  # wall clock of the last acknowledgement


def plant(gateways: Gateways, first_account: int, each: int) -> Planted:
    """`each` sessions, refresh tokens and (with a denylist) logged-out JWTs, each one
    confirmed by the cluster."""
    planted = Planted()
    account = first_account
    for _ in range(each):
        headers = credential_headers(login(gateways.session, account, Login.SESSION))
        if call(gateways.session, "GET", "/api/me", headers=headers).status != 200:
            raise ProbeError("a fresh session was refused")
        planted.sessions.append(headers)
        account += 1
    for _ in range(each):
        answer = login(gateways.jwt, account, Login.JWT)
        planted.refresh_tokens.append(answer.json()["refresh_token"])
        account += 1
    denylist = gateways.denylist
    for _ in range(each if denylist is not None else 0):
        assert denylist is not None
        headers = credential_headers(login(denylist, account, Login.JWT))
        if call(denylist, "POST", "/auth/logout", headers=headers).status != 204:
            raise ProbeError("logout was not acknowledged")
        if call(denylist, "GET", "/api/me", headers=headers).status != 401:
            raise ProbeError("a logged-out token was still accepted with the denylist on")
        planted.revoked.append(headers)
        account += 1
    planted.acknowledged_at = time.time()
    return planted


@dataclass(frozen=True, slots=True)
class Losses:
    """Of what was acknowledged before the fault: how much was still there after it."""

    planted_each: int
    sessions_lost: int
    refresh_tokens_lost: int
    revoked_valid_again: int | None  # logged-out JWTs the denylist forgot (None: no denylist)
    unanswered: int  # checks that got no definite answer before the deadline
    checked_after_back_s: float


def _definite(
    gateway: str,
    method: str,
    path: str,
    deadline: float,
    *,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> int:
    """Ask until the answer is not a 503/no-answer (Redis or the breaker still recovering)."""
    while True:
        status = call(gateway, method, path, headers=headers, body=body).status
        if status not in (0, 503) or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def check_losses(
    gateways: Gateways, planted: Planted, back_at: float, timeout_s: float = 10.0
) -> Losses:
    deadline = time.monotonic() + timeout_s
    started = time.time()
    sessions_lost = refresh_lost = valid_again = unanswered = 0
    for headers in planted.sessions:
        status = _definite(gateways.session, "GET", "/api/me", deadline, headers=headers)
        sessions_lost += status == 401
        unanswered += status not in (200, 401)
    for token in planted.refresh_tokens:
        body = {"refresh_token": token}
        status = _definite(gateways.jwt, "POST", "/auth/refresh", deadline, body=body)
        refresh_lost += status == 401
        unanswered += status not in (200, 401)
    for headers in planted.revoked:
        assert gateways.denylist is not None
        status = _definite(gateways.denylist, "GET", "/api/me", deadline, headers=headers)
        valid_again += status == 200
        unanswered += status not in (200, 401)
    return Losses(
        planted_each=len(planted.sessions),
        sessions_lost=sessions_lost,
        refresh_tokens_lost=refresh_lost,
        revoked_valid_again=valid_again if gateways.denylist is not None else None,
        unanswered=unanswered,
        checked_after_back_s=round(started - back_at, 2),
    )


# --- revocation window ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RevocationWindow:
    mode: str
    replicas: int  # addresses asked: each replica, or the gateway alone (compose)
    through_gateway: bool
    rejected_by: int  # replicas that refused the logged-out credential in time
    window_ms: float | None  # logout acknowledged -> refused by every replica
    observed_s: float
    token_expires_in_s: float | None  # for a JWT: how long it stays valid by itself


def revocation_window(
    gateway: str, replicas: list[str] | None, mode: Mode, account: int, observe_s: float
) -> RevocationWindow:
    """One logout measured by the bench's own measurement (authbench.bench.revocation_window:
    log in, warm every replica, log out, poll each one until it answers 401), so chaos and
    `authbench revocation-window` report the same quantity. Replicas None: they are out of
    reach (compose), so ask the gateway instead."""
    from authbench.bench import revocation_window as rw

    through_gateway = replicas is None
    try:
        logout = rw.measure_logout(
            gateway, [gateway] if replicas is None else replicas, mode, account, observe_s,
            poll_pause_s=0.02,  # a gentle poll: the scenario's load is running meanwhile
        )  # fmt: skip
    except rw.WindowError as err:
        raise ProbeError(str(err)) from err
    return RevocationWindow(
        mode=mode.key,
        replicas=logout.replicas,
        through_gateway=through_gateway,
        rejected_by=logout.refused_by,
        window_ms=round(logout.window_ms, 1) if logout.window_ms is not None else None,
        observed_s=round(logout.observed_s, 2),
        token_expires_in_s=logout.expires_in_s,
    )
