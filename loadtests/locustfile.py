"""A user's day against authbench, one Locust user class per credential type.

`SessionUser` carries the `sid` cookie (the server looks it up in Redis on every request);
`JwtUser` carries a Bearer access token (each replica checks the signature locally, plus a
Redis `jti` lookup when the cluster runs with `JWT_REVOCATION=denylist`, which is how the
"jwt+denylist" mode is measured: the same user class against a differently deployed
cluster).

Both log in once on start, then read `/api/me` and `/api/items/{id}` (weighted tasks, ids
grouped under one `name=`), and every so often log out and log in again; `JwtUser` also
refreshes its token now and then. Users are spread over the seeded accounts
`user{i}`/`password{i}`. Every failure is recorded with its reason (status and the
server's error code), so `*_failures.csv` says *why*, not just how many.

Knobs are Locust command-line options, each with an environment variable so the same
values reach `--processes` children and distributed workers:

| option | env | default | meaning |
| --- | --- | --- | --- |
| --accounts | AUTHBENCH_ACCOUNTS | 1000 | seeded accounts to spread users over |
| --relogin-prob | AUTHBENCH_RELOGIN_PROB | 0.005 | chance per task of logout + login |
| --refresh-prob | AUTHBENCH_REFRESH_PROB | 0.01 | chance per task that a JwtUser refreshes |
| --pacing | AUTHBENCH_PACING_S | 0 | seconds between task starts per user (0: closed loop) |
| --warmup | AUTHBENCH_WARMUP_S | 0 | seconds after test start whose stats are discarded |
| --capture | AUTHBENCH_CAPTURE_S | 0 | seconds measured after the warm-up, then stop (0: off) |
| --item-ids | AUTHBENCH_ITEM_IDS | 1000 | item ids drawn from 0..N-1 |
| --histogram-out | AUTHBENCH_HISTOGRAM_OUT | "" | write Locust's raw response-time buckets here |
| --marker-dir | AUTHBENCH_MARKER_DIR | "" | write `capture_start`/`capture_end` files here |

Pacing (`constant_pacing`) is the constant-arrival mode: each user starts a task every
`pacing` seconds whatever the server does, so a slow server is not hidden by a generator
that slows down with it (coordinated omission). It is the inverse of
`constant_throughput(1 / pacing)`. With `--pacing 0` users run back to back (closed loop),
which finds the maximum throughput instead.

Run it by hand against `authbench up`:

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 20 -r 20 -t 30s \\
        --host http://127.0.0.1:8080 SessionUser
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.runners import WorkerRunner

from authbench import modes  # the mode registry imports no asyncio library
from authbench.modes import Login
from loadtests import hdr_listener  # µs HdrHistograms of the capture window (--hdr-dir)

# Spread users over the seeded accounts; each process starts at a different offset so
# `--processes` children and workers do not all log in as user0, user1, ...
_ACCOUNT_COUNTER = itertools.count(random.Random(os.getpid()).randrange(1_000_000))


@events.init_command_line_parser.add_listener
def _add_options(parser: Any, **_kwargs: Any) -> None:
    group = parser.add_argument_group("authbench")
    group.add_argument(
        "--accounts",
        type=int,
        env_var="AUTHBENCH_ACCOUNTS",
        default=1000,
        help="seeded accounts user{i}/password{i} to spread users over",
    )
    group.add_argument(
        "--relogin-prob",
        type=float,
        env_var="AUTHBENCH_RELOGIN_PROB",
        default=0.005,
        help="chance per task of logout + login again",
    )
    group.add_argument(
        "--refresh-prob",
        type=float,
        env_var="AUTHBENCH_REFRESH_PROB",
        default=0.01,
        help="chance per task that a JwtUser refreshes",
    )
    group.add_argument(
        "--pacing",
        type=float,
        env_var="AUTHBENCH_PACING_S",
        default=0.0,
        help="seconds between task starts per user; 0 = closed loop",
    )
    group.add_argument(
        "--warmup",
        type=float,
        env_var="AUTHBENCH_WARMUP_S",
        default=0.0,
        help="seconds after start whose stats are discarded",
    )
    group.add_argument(
        "--capture",
        type=float,
        env_var="AUTHBENCH_CAPTURE_S",
        default=0.0,
        help="seconds measured after the warm-up, then stop (0: the run time decides)",
    )
    group.add_argument(
        "--item-ids",
        type=int,
        env_var="AUTHBENCH_ITEM_IDS",
        default=1000,
        help="item ids are drawn from 0..N-1",
    )
    group.add_argument(
        "--histogram-out",
        env_var="AUTHBENCH_HISTOGRAM_OUT",
        default="",
        help="path for Locust's raw response-time buckets (JSON)",
    )
    group.add_argument(
        "--marker-dir",
        env_var="AUTHBENCH_MARKER_DIR",
        default="",
        help="directory for capture_start / capture_end marker files",
    )


def _mark(environment: Any, name: str) -> None:
    directory = getattr(environment.parsed_options, "marker_dir", "")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / name).write_text(f"{time.time():.6f}\n")


def _capture(environment: Any, warmup_s: float, capture_s: float) -> None:
    """Reset the stats when the warm-up ends; stop when the capture window is over."""
    if warmup_s > 0:
        gevent.sleep(warmup_s)
        environment.runner.stats.reset_all()
    hdr_listener.begin_capture(environment, capture_s)
    _mark(environment, "capture_start")
    if capture_s > 0:
        gevent.sleep(capture_s)
        # The workers' µs histograms and CPU come by message: wait for them (bounded), or a
        # remote worker's would be lost with the master.
        hdr_listener.await_reports(environment)
        environment.runner.quit()  # what Locust's own --run-time does in headless mode


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kwargs: Any) -> None:
    """Discard the warm-up from the figures (on the master or a standalone runner)."""
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    options = environment.parsed_options
    gevent.spawn(_capture, environment, float(options.warmup), float(options.capture))


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_kwargs: Any) -> None:
    """Keep Locust's raw response-time buckets (so repeats can be merged exactly) and the
    failures with their reasons, as they are when the test stops: Locust's own CSVs are
    its last periodic write and can miss the final second."""
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    _mark(environment, "capture_end")
    out = getattr(environment.parsed_options, "histogram_out", "")
    if not out:
        return
    stats = environment.runner.stats
    entries = {
        f"{entry.method} {entry.name}": {
            "num_requests": entry.num_requests,
            "num_failures": entry.num_failures,
            "response_times": {str(k): v for k, v in entry.response_times.items()},
        }
        for entry in stats.entries.values()
    }
    total = stats.total
    payload = {
        "total": {
            "num_requests": total.num_requests,
            "num_failures": total.num_failures,
            "max_response_time": total.max_response_time,
            "start_time": total.start_time,
            "last_request_timestamp": total.last_request_timestamp,
            "response_times": {str(k): v for k, v in total.response_times.items()},
        },
        "entries": entries,
        "errors": [
            {
                "method": e.method,
                "name": e.name,
                "error": str(e.error),
                "occurrences": e.occurrences,
            }
            for e in stats.errors.values()
        ],
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(payload))


def _reason(response: Any) -> str:
    """Why a request failed: status plus the server's machine error code when it sent one."""
    status = response.status_code
    if not status:
        return f"connection error: {response.error!r}"[:200]
    code = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            code = str(body.get("error", ""))
    except (ValueError, TypeError):
        pass
    return f"HTTP {status} {code}".strip()


class AuthUser(FastHttpUser):
    """What both credential types share: accounts, reads, relogin, failure reasons."""

    abstract = True
    login_mode: Login
    pacing = 0.0
    relogin_prob = 0.0
    _last_run = 0.0  # constant pacing: when the last task started, and the wait after it
    _last_wait = 0.0

    def wait_time(self) -> float:
        # constant_pacing's bookkeeping, inlined so the pacing is a run option.
        if self.pacing <= 0:
            return 0.0
        now = time.perf_counter()
        run_time = now - self._last_run - self._last_wait
        self._last_wait = max(0.0, self.pacing - run_time)
        self._last_run = now
        return self._last_wait

    def on_start(self) -> None:
        self.pacing = float(self._option("pacing", 0.0))
        self._last_run = time.perf_counter()
        self._last_wait = 0.0
        self.relogin_prob = float(self._option("relogin_prob", 0.0))
        accounts = max(1, int(self._option("accounts", 1000)))
        self.account = next(_ACCOUNT_COUNTER) % accounts
        self.item_ids = max(1, int(self._option("item_ids", 1000)))
        self.login()
        if self.pacing > 0:
            # Each user's phase at random within one pacing period, as independent clients
            # have: users spawned together would otherwise all send on the same tick, and
            # the latency measured would include the generator's own burst queueing (h2load
            # staggers its clients over the period for the same reason; see crosscheck.py).
            gevent.sleep(random.uniform(0.0, self.pacing))
            self._last_run = time.perf_counter()

    def _option(self, name: str, default: Any) -> Any:
        options = self.environment.parsed_options
        return getattr(options, name, default) if options is not None else default

    # --- credential handling, per mode ------------------------------------------------
    def credential_headers(self) -> dict[str, str]:
        return {}

    def accept_login(self, body: dict[str, Any]) -> bool:
        raise NotImplementedError

    def forget_credential(self) -> None:
        raise NotImplementedError

    def login(self) -> bool:
        payload = {
            "username": f"user{self.account}",
            "password": f"password{self.account}",
            "mode": self.login_mode,
        }
        with self.client.post(
            "/auth/login", json=payload, name="/auth/login", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(_reason(response))
                return False
            try:
                body = response.json()
            except ValueError:
                response.failure("login answer is not JSON")
                return False
            if not self.accept_login(body):
                response.failure("login answer carries no credential")
                return False
            response.success()
            return True

    def logout(self) -> None:
        with self.client.post(
            "/auth/logout",
            headers=self.credential_headers(),
            name="/auth/logout",
            catch_response=True,
        ) as response:
            if response.status_code == 204:
                response.success()
            else:
                response.failure(_reason(response))
        self.forget_credential()

    def read(self, path: str, name: str) -> None:
        with self.client.get(
            path, headers=self.credential_headers(), name=name, catch_response=True
        ) as response:
            if response.status_code == 200:
                response.success()
                return
            response.failure(_reason(response))
        if response.status_code == 401:
            self.forget_credential()
            self.login()  # the credential is gone (expired, revoked): start over

    def between_reads(self) -> None:
        """Now and then log out and log in again (a new session, a new token family)."""
        if random.random() < self.relogin_prob:
            self.logout()
            self.login()

    # --- the day's work -------------------------------------------------------------
    @task(6)
    def me(self) -> None:
        self.read("/api/me", "/api/me")
        self.between_reads()

    @task(4)
    def item(self) -> None:
        item_id = random.randrange(self.item_ids)
        self.read(f"/api/items/{item_id}", "/api/items/[id]")
        self.between_reads()


class SessionUser(AuthUser):
    """Logs in for a session: the server keeps the state, the client keeps a cookie."""

    login_mode = Login.SESSION

    def accept_login(self, body: dict[str, Any]) -> bool:
        # FastHttpUser's cookie jar stores `sid` (or `__Host-sid`) and sends it back.
        return any(cookie.name.endswith("sid") for cookie in self.client.cookiejar)

    def forget_credential(self) -> None:
        self.client.cookiejar.clear()


class OpaqueUser(AuthUser):
    """Logs in for an opaque token (mode opaque): a random bearer token that each replica
    resolves by asking the auth service (RFC 7662 introspection). No refresh token: a
    refused token means logging in again."""

    login_mode = Login.OPAQUE
    access_token = ""

    def credential_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    def accept_login(self, body: dict[str, Any]) -> bool:
        self.access_token = str(body.get("access_token", ""))
        return bool(self.access_token)

    def forget_credential(self) -> None:
        self.access_token = ""


class SessionCacheUser(SessionUser):
    """The same day as SessionUser, against replicas with the session near cache
    (mode session+cache, `SESSION_CACHE=1`): its own class so its stats say so."""


class JwtUser(AuthUser):
    """Logs in for tokens: the client carries a signed access token and a refresh token."""

    login_mode = Login.JWT
    access_token = ""
    refresh_token = ""

    def credential_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}

    def accept_login(self, body: dict[str, Any]) -> bool:
        self.access_token = str(body.get("access_token", ""))
        self.refresh_token = str(body.get("refresh_token", ""))
        return bool(self.access_token and self.refresh_token)

    def forget_credential(self) -> None:
        self.access_token = self.refresh_token = ""

    def on_start(self) -> None:
        self.refresh_prob = float(self._option("refresh_prob", 0.0))
        super().on_start()

    def between_reads(self) -> None:
        if self.refresh_token and random.random() < self.refresh_prob:
            self.refresh()
        super().between_reads()

    def refresh(self) -> bool:
        """Trade the refresh token for a new pair (rotation); True when one was accepted.

        Refused (a 4xx: reused, revoked or expired refresh token), it starts over with a
        login. Unavailable (a 5xx, or no answer: the store or the auth service is down), it
        keeps both tokens, as a real client does: the access token stays valid until its
        `exp`, and the refresh may be tried again (jwt-short's schedule retries it)."""
        with self.client.post(
            "/auth/refresh",
            json={"refresh_token": self.refresh_token},
            name="/auth/refresh",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                try:
                    ok = self.accept_login(response.json())
                except ValueError:
                    ok = False
                if ok:
                    response.success()
                    return True
                response.failure("refresh answer carries no tokens")
            else:
                response.failure(_reason(response))
                if not 400 <= response.status_code < 500:
                    return False
        self.forget_credential()
        self.login()
        return False


class PushlistUser(JwtUser):
    """Mode jwt+pushlist: the same day as JwtUser, against a cluster that pushes every
    revocation to the replicas (JWT_REVOCATION=pushlist), so its reads ask Redis nothing."""

    mode = modes.JWT_PUSHLIST


# jwt-short: refresh when this share of the access token's lifetime (`expires_in`) is gone.
REFRESH_AT_FRACTION = 0.8
REFRESH_RETRY_S = 1.0  # and again this often while the refresh is unavailable (5xx)


class JwtShortUser(JwtUser):
    """Short-lived access tokens (mode jwt-short): refreshes its token before it expires,
    at REFRESH_AT_FRACTION of the `expires_in` it was given, through /auth/refresh with the
    rotating refresh token; no random refreshes, so its refresh traffic is the TTL's alone."""

    token_lifetime_s = 0.0
    token_received = 0.0
    next_refresh_try = 0.0  # after a refresh the store or auth could not serve

    def on_start(self) -> None:
        super().on_start()
        self.refresh_prob = 0.0  # the schedule refreshes, not chance

    def accept_login(self, body: dict[str, Any]) -> bool:
        ok = super().accept_login(body)
        self.token_received = time.monotonic()
        try:
            self.token_lifetime_s = float(body.get("expires_in", 0) or 0)
        except (TypeError, ValueError):
            self.token_lifetime_s = 0.0
        return ok

    def between_reads(self) -> None:
        now = time.monotonic()
        due = now - self.token_received >= REFRESH_AT_FRACTION * self.token_lifetime_s
        if self.refresh_token and due and now >= self.next_refresh_try:
            if not self.refresh() and self.refresh_token:
                self.next_refresh_try = now + REFRESH_RETRY_S
        AuthUser.between_reads(self)  # relogin now and then, as every user
