"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): real credentials for the fuzzer.

The operations that need a credential get one from a real login of a seeded user, and
the credential type alternates per case: Bearer JWT, `sid` cookie, `at` cookie (with its
X-CSRF-Token). Logout spends a fresh login of a throwaway user, so it never ends the
long-lived credentials the other cases use. The gateway's address comes from the
environment (AUTHBENCH_FUZZ_URL), set by the test that runs Schemathesis.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

import schemathesis

from tests.client import login, session_cookie

LONG_LIVED_USER = 0  # the document's examples log in users 1-3
THROWAWAY_USERS = range(10, int(os.environ.get("AUTHBENCH_FUZZ_USERS", "50")))
_MODES = {"bearer": "jwt", "session": "session", "cookie": "jwt-cookie"}


class Credentials:
    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._kinds = itertools.cycle(_MODES)
        self._throwaway = itertools.cycle(THROWAWAY_USERS)
        self._lock = threading.Lock()
        self._kept: dict[str, dict[str, Any]] = {}

    def _login(self, user: int, kind: str) -> dict[str, Any]:
        answer = login(self._base_url, user, _MODES[kind])
        if answer.status != 200:
            raise RuntimeError(f"login of user{user} failed: {answer.status} {answer.body[:200]!r}")
        if kind == "bearer":
            return {"headers": {"Authorization": f"Bearer {answer.json()['access_token']}"}}
        if kind == "session":
            name, _, value = session_cookie(answer).partition("=")
            return {"cookies": {name: value}}
        cookies = dict(line.split(";", 1)[0].split("=", 1) for line in answer.set_cookies)
        return {
            "cookies": {"at": cookies["at"]},
            "headers": {"X-CSRF-Token": answer.json()["csrf_token"]},
        }

    def for_case(self, case: schemathesis.Case) -> dict[str, Any]:
        with self._lock:
            kind = next(self._kinds)
            if case.operation.path == "/auth/logout":
                return self._login(next(self._throwaway), kind)
            if kind not in self._kept:
                self._kept[kind] = self._login(LONG_LIVED_USER, kind)
            return self._kept[kind]


_credentials = Credentials(os.environ["AUTHBENCH_FUZZ_URL"])


@schemathesis.auth(refresh_interval=None).apply_to(path_regex="^/(api/|auth/logout)")
class SeededUser:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> dict[str, Any]:
        return _credentials.for_case(case)

    def set(
        self, case: schemathesis.Case, data: dict[str, Any], ctx: schemathesis.AuthContext
    ) -> None:
        case.headers.update(data.get("headers", {}))
        case.cookies = {**(case.cookies or {}), **data.get("cookies", {})}
