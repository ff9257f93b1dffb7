"""Chaos load: session, JWT, JWT+denylist, JWT+denylist(open) and opaque users side by side.

Run by `authbench chaos` (authbench/chaos/load.py). Each user class plays one mode of
the registry (`mode = modes.X`; the registry names the class back, and a test checks both
ways); its records carry the mode's key. The users are the benchmark's own
`SessionUser` and `JwtUser` (loadtests/locustfile.py: log in once, read `/api/me` and
`/api/items/{id}`, log in again when a credential is refused), one subclass per mode, each
aimed at the gateway of its replica group; chaos runs them with `--relogin-prob 0
--refresh-prob 0`, so during an outage the only Redis work left is what each mode needs to
check a credential. Every request is also written to CHAOS_RECORDS as one CSV row (start
time, mode, name, status, latency, error), so the analysis can cut the run into 1-second
buckets around the fault.

Environment:
  CHAOS_RECORDS           CSV file to write (required)
  CHAOS_HOST_<MODE>       gateway URL per mode (`Mode.env_name`: SESSION, JWT_DENYLIST, ...)
  CHAOS_USERS_PER_MODE    users of each mode (default 4)
  CHAOS_CLIENT_TIMEOUT_S  client timeout: a request longer than this is cut (default 10)
  CHAOS_READY_FILE        written once every user has started
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from locust import events

from authbench import modes
from authbench.modes import Mode

# Imported as a module, not by name: Locust runs every User class it finds in this file's
# globals, and the plain SessionUser/JwtUser must not run next to the chaos ones.
from loadtests import locustfile as day

USERS_PER_MODE = int(os.environ.get("CHAOS_USERS_PER_MODE", "4"))
CLIENT_TIMEOUT_S = float(os.environ.get("CHAOS_CLIENT_TIMEOUT_S", "10"))

_records: Any = None
_records_file: Any = None


@events.test_start.add_listener
def _open_records(**kwargs: Any) -> None:
    global _records, _records_file
    path = os.environ["CHAOS_RECORDS"]
    _records_file = open(path, "w", newline="", buffering=1 << 16)
    _records = csv.writer(_records_file)
    _records.writerow(["start", "mode", "name", "status", "latency_ms", "error"])


@events.request.add_listener
def _record(
    name: str,
    response_time: float,
    start_time: float,
    context: dict[str, Any],
    exception: BaseException | None,
    response: Any = None,
    **kwargs: Any,
) -> None:
    if _records is None:
        return
    status = getattr(response, "status_code", 0) or 0
    error = type(exception).__name__ if exception is not None and status == 0 else ""
    _records.writerow(
        [
            f"{start_time:.4f}",
            context.get("mode", ""),
            name,
            status,
            f"{response_time:.2f}",
            error,
        ]
    )


@events.spawning_complete.add_listener
def _ready(**kwargs: Any) -> None:
    ready = os.environ.get("CHAOS_READY_FILE")
    if ready:
        Path(ready).write_text("ready\n")


@events.test_stop.add_listener
def _close_records(**kwargs: Any) -> None:
    global _records
    if _records_file is not None:
        _records_file.flush()
        _records_file.close()
    _records = None


def _host(mode: Mode) -> str:
    return os.environ.get(f"CHAOS_HOST_{mode.env_name}", "http://127.0.0.1:8080")


class SessionChaosUser(day.SessionUser):
    mode = modes.SESSION
    host = _host(mode)
    fixed_count = USERS_PER_MODE
    network_timeout = connection_timeout = CLIENT_TIMEOUT_S

    def context(self) -> dict[str, Any]:
        return {"mode": self.mode.key}


class SessionCacheChaosUser(SessionChaosUser):
    mode = modes.SESSION_CACHE
    host = _host(mode)


class JwtChaosUser(day.JwtUser):
    mode = modes.JWT
    host = _host(mode)
    fixed_count = USERS_PER_MODE
    network_timeout = connection_timeout = CLIENT_TIMEOUT_S

    def context(self) -> dict[str, Any]:
        return {"mode": self.mode.key}


class DenylistChaosUser(JwtChaosUser):
    mode = modes.JWT_DENYLIST
    host = _host(mode)


class DenylistOpenChaosUser(JwtChaosUser):
    mode = modes.JWT_DENYLIST_OPEN
    host = _host(mode)


class OpaqueChaosUser(day.OpaqueUser):
    mode = modes.OPAQUE
    host = _host(mode)
    fixed_count = USERS_PER_MODE
    network_timeout = connection_timeout = CLIENT_TIMEOUT_S

    def context(self) -> dict[str, Any]:
        return {"mode": self.mode.key}


class PushlistChaosUser(JwtChaosUser):
    mode = modes.JWT_PUSHLIST
    host = _host(mode)


class JwtShortChaosUser(day.JwtShortUser):
    mode = modes.JWT_SHORT
    host = _host(mode)
    fixed_count = USERS_PER_MODE
    network_timeout = connection_timeout = CLIENT_TIMEOUT_S

    def context(self) -> dict[str, Any]:
        return {"mode": self.mode.key}
