"""A small synchronous HTTP client for tests (urllib: no extra dependency)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    set_cookies: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    base_url: str,
    method: str,
    path: str,
    *,
    body: bytes | str | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    payload: bytes | None
    headers = dict(headers or {})
    if isinstance(body, dict):
        payload = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        payload = body.encode()
    else:
        payload = body
    try:
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return Answer(
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            data,
            resp.headers.get_all("Set-Cookie") or [],
        )
    finally:
        conn.close()


def login(base_url: str, user: int, mode: str) -> Answer:
    return request(
        base_url,
        "POST",
        "/auth/login",
        body={"username": f"user{user}", "password": f"password{user}", "mode": mode},
    )


def session_cookie(answer: Answer) -> str:
    for cookie in answer.set_cookies:
        name, _, rest = cookie.partition("=")
        if name.strip() in ("sid", "__Host-sid"):
            return f"{name.strip()}={rest.split(';', 1)[0]}"
    raise AssertionError(f"no session cookie in {answer.set_cookies}")


def bearer(answer: Answer) -> dict[str, str]:
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def access_claims(**overrides: Any) -> dict[str, Any]:
    """The claims of a valid access token for user1; an override of None drops a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "authbench", "aud": "authbench-api", "sub": "user1", "iat": now,
        "nbf": now, "exp": now + 300, "jti": "j" * 22,
    }  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


class SessionReader(threading.Thread):
    """The load a chaos run would bring, in small: one credential read over and over
    (GET /api/me) until `done` is set; every status kept."""

    def __init__(self, gateway: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.gateway, self.headers = gateway, headers
        self.statuses: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            answer = request(self.gateway, "GET", "/api/me", headers=self.headers)
            self.statuses.append(answer.status)
            time.sleep(0.005)
