"""The revocation window, measured the same way for every mode of the registry.

One logout: log in through the gateway, present the credential to every replica directly
(`Deployment.replica_urls()`, so each one has seen it and warmed whatever it caches), log
out through the gateway, then ask every replica again and again until each one answers
401. The window is the time from logout's response to the last replica's first 401, so it
includes one polling round (a replica that refuses at once still costs one request to
ask): what a client would see, not what the server believes.

Many logouts make a distribution: p50/p99/max in ms per mode. A mode whose replicas never
refuse a logged-out credential (pure `jwt`: the token is valid until its `exp`) is not
polled for ever: polling is bounded by `timeout_s`, and after `give_up_after` logouts in a
row that no replica refused within it, the mode is reported as "never, until exp", with
the token's remaining lifetime read from its `exp` claim (computed, not waited for).

Nothing here names a mode: it reads the registry (`authbench.modes`), so a new mode is
measured as soon as it has a `Mode(...)` entry. `run()` starts one private local cluster
per distinct deployment (modes that share settings share it) on a free port block, and
per store topology when given several (`--store single,replicas:2`): the same modes
measured on each store in one run, e.g. the replication lag a read replica adds. With
`--validate-at gateway` (VALIDATE_AT) the gateway checks each request once and the replicas
accept only its signed assertion, so a replica asked directly refuses everything: there the
gateway is what is asked, and the window is logout's response to the gateway's first 401.
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authbench import modes
from authbench.modes import Login, Mode
from authbench.targets.base import SINGLE_REDIS, StoreTopology

DEFAULT_LOGOUTS = 100
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_GIVE_UP_AFTER = 3  # logouts in a row nobody refused: the mode does not revoke
NEVER = "never, until exp"


class WindowError(RuntimeError):
    """The measurement could not be made (a login or a logout failed)."""


class _Client:
    """Keep-alive HTTP/1.1 to one base URL, so a polling round costs no TCP handshake."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, str], list[str], bytes]:
        """(status, headers, Set-Cookie values, body); status 0 when nothing answered."""
        all_headers = dict(headers or {})
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        for attempt in range(2):  # a keep-alive connection the server closed: once more
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout_s
                )
            try:
                self._conn.request(method, path, body=payload, headers=all_headers)
                resp = self._conn.getresponse()
                data = resp.read()
                cookies = resp.headers.get_all("Set-Cookie") or []
                if resp.will_close:
                    self.close()
                return resp.status, dict(resp.headers.items()), list(cookies), data
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    return 0, {}, [], b""
        return 0, {}, [], b""  # pragma: no cover - the loop always returns

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True, slots=True)
class Logout:
    """One logout and what the replicas did with the credential afterwards."""

    mode: str
    account: int
    replicas: int
    refused_by: int  # replicas that answered 401 before the timeout
    window_ms: float | None  # logout's 204 to the last replica's first 401; None: not all
    first_refusals_ms: tuple[float, ...]  # each refusing replica's first 401
    polls: int  # requests sent while polling
    observed_s: float
    expires_in_s: float | None  # a JWT's remaining lifetime at logout (from `exp`)


def _credential(login: Login, cookies: Sequence[str], body: bytes) -> tuple[dict[str, str], str]:
    """The header that presents a login's credential, and the access token (or "")."""
    if login is Login.SESSION:
        for cookie in cookies:
            name, _, rest = cookie.partition("=")
            if name.strip().endswith("sid"):
                return {"Cookie": f"{name.strip()}={rest.split(';', 1)[0]}"}, ""
        raise WindowError("a session login set no session cookie")
    token = str(json.loads(body or b"{}").get("access_token", ""))
    if not token:
        raise WindowError(f"a {login} login returned no access token")
    return {"Authorization": f"Bearer {token}"}, token


def token_expires_in(access_token: str, now: float | None = None) -> float | None:
    """Seconds until a JWT's `exp`, read without verifying (only to report a lifetime)."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return round(float(claims["exp"]) - (time.time() if now is None else now), 1)
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def measure_logout(
    gateway: str,
    replicas: Sequence[str],
    mode: Mode,
    account: int,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    poll_pause_s: float = 0.0,
) -> Logout:
    """Log in, warm every replica, log out, poll every replica until each answers 401."""
    if not replicas:
        raise WindowError("no replica to ask: the window is per replica")
    front = _Client(gateway)
    clients = [_Client(url) for url in replicas]
    try:
        status, _h, cookies, body = front.request(
            "POST",
            "/auth/login",
            body={
                "username": f"user{account}",
                "password": f"password{account}",
                "mode": mode.login,
            },
        )
        if status != 200:
            raise WindowError(f"login of user{account} ({mode.login}) answered {status}")
        headers, token = _credential(mode.login, cookies, body)
        for url, client in zip(replicas, clients, strict=True):
            warm = client.request("GET", "/api/me", headers)[0]
            if warm != 200:
                raise WindowError(f"replica {url} answered {warm} to a fresh credential")
        status = front.request("POST", "/auth/logout", headers)[0]
        acked = time.perf_counter()
        expires_in = token_expires_in(token) if token else None
        if status != 204:
            raise WindowError(f"logout answered {status}")
        first: dict[int, float] = {}
        polls = 0
        while len(first) < len(clients) and time.perf_counter() - acked < timeout_s:
            for index, client in enumerate(clients):
                if index in first:
                    continue
                answer = client.request("GET", "/api/me", headers)[0]
                polls += 1
                if answer == 401:
                    first[index] = (time.perf_counter() - acked) * 1000.0
            if poll_pause_s > 0 and len(first) < len(clients):
                time.sleep(poll_pause_s)
        observed = time.perf_counter() - acked
    finally:
        front.close()
        for client in clients:
            client.close()
    done = len(first) == len(clients)
    return Logout(
        mode=mode.key,
        account=account,
        replicas=len(clients),
        refused_by=len(first),
        window_ms=round(max(first.values()), 2) if done else None,
        first_refusals_ms=tuple(round(first[i], 2) for i in sorted(first)),
        polls=polls,
        observed_s=round(observed, 3),
        expires_in_s=expires_in,
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (a value that was measured); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass
class ModeWindow:
    """Every logout of one mode, and the distribution they make."""

    mode: str
    logouts: list[Logout] = field(default_factory=list)
    gave_up: bool = False  # stopped early: nobody refused (the mode does not revoke)
    timeout_s: float = DEFAULT_TIMEOUT_S
    store: str = "single"  # the store topology it ran on (--store)
    validate_at: str = "replica"  # --validate-at: where the credential was checked

    @property
    def windows_ms(self) -> list[float]:
        return [lo.window_ms for lo in self.logouts if lo.window_ms is not None]

    @property
    def revokes(self) -> bool:
        return bool(self.windows_ms) and not self.gave_up

    def summary(self) -> dict[str, Any]:
        windows = self.windows_ms
        expiries = [lo.expires_in_s for lo in self.logouts if lo.expires_in_s is not None]
        return {
            "mode": self.mode,
            "store": self.store,
            "validate_at": self.validate_at,
            "logouts": len(self.logouts),
            "revoked": len(windows),
            "not_revoked_within_timeout": len(self.logouts) - len(windows),
            "timeout_s": self.timeout_s,
            "p50_ms": _round(percentile(windows, 0.50)),
            "p99_ms": _round(percentile(windows, 0.99)),
            "max_ms": _round(max(windows)) if windows else None,
            "verdict": self.verdict(),
            "token_expires_in_s": max(expiries) if expiries else None,
        }

    def verdict(self) -> str:
        """How a reader should read the window: measured, or never (until exp)."""
        if self.gave_up or not self.windows_ms:
            return NEVER
        missed = len(self.logouts) - len(self.windows_ms)
        if missed:
            return f"measured; {missed} of {len(self.logouts)} not revoked within the timeout"
        return "measured"


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 2)


def measure_mode(
    gateway: str,
    replicas: Sequence[str],
    mode: Mode,
    logouts: int = DEFAULT_LOGOUTS,
    accounts: int = 20,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    give_up_after: int = DEFAULT_GIVE_UP_AFTER,
    first_account: int = 0,
    say: Callable[[str], None] = lambda _m: None,
    store: str = "single",
    validate_at: str = "replica",
) -> ModeWindow:
    """`logouts` logouts of `mode` (accounts taken in turn); stops early when the first
    `give_up_after` logouts were refused by no replica at all (the mode never revokes)."""
    result = ModeWindow(mode.key, timeout_s=timeout_s, store=store, validate_at=validate_at)
    for i in range(logouts):
        account = first_account + i % max(1, accounts)
        logout = measure_logout(gateway, replicas, mode, account, timeout_s)
        result.logouts.append(logout)
        if (
            i + 1 == give_up_after
            and give_up_after > 0
            and all(lo.refused_by == 0 for lo in result.logouts)
        ):
            result.gave_up = True
            say(f"  {mode.key}: no replica refused {give_up_after} logged-out credentials in "
                f"{timeout_s:g} s: {NEVER}")  # fmt: skip
            break
        if (i + 1) % 25 == 0:
            say(f"  {mode.key}: {i + 1}/{logouts} logouts")
    return result


# --- a whole run: one private cluster per distinct deployment ------------------------------
def deployment_groups(chosen: Iterable[Mode]) -> list[tuple[dict[str, str], list[Mode]]]:
    """Modes grouped by the settings their deployment needs (registry order kept)."""
    groups: dict[tuple[tuple[str, str], ...], list[Mode]] = {}
    for mode in chosen:
        groups.setdefault(tuple(sorted(mode.settings.items())), []).append(mode)
    return [(dict(key), members) for key, members in groups.items()]


def write_results(run_dir: Path, results: Sequence[ModeWindow], manifest: dict[str, Any]) -> None:
    """windows.csv (one row per logout), summary.json (per mode), manifest.json, README.md."""
    import csv

    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "windows.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            ["mode", "store", "account", "replicas", "refused_by", "window_ms",
             "first_refusals_ms", "polls", "observed_s", "expires_in_s", "validate_at"]
        )  # fmt: skip
        for result in results:
            for lo in result.logouts:
                writer.writerow(
                    [lo.mode, result.store, lo.account, lo.replicas, lo.refused_by,
                     "" if lo.window_ms is None else lo.window_ms,
                     ";".join(f"{v:g}" for v in lo.first_refusals_ms), lo.polls, lo.observed_s,
                     "" if lo.expires_in_s is None else lo.expires_in_s, result.validate_at]
                )  # fmt: skip
    summaries = [r.summary() for r in results]
    (run_dir / "summary.json").write_text(json.dumps(summaries, indent=2))
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_readme(run_dir)


def write_readme(run_dir: Path) -> Path:
    """README.md of a run folder, from its summary.json and manifest.json alone."""
    summaries = read_summary(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    lines = [
        f"# Revocation window, run {manifest.get('run_id', run_dir.name)}",
        "",
        "From logout's response to the last replica's first 401, asking every replica "
        "directly (one polling round included); validated at the gateway, the gateway is "
        "asked. Command:",
        "",
        "    " + shown_command(manifest.get("command", [])),
        "",
        "| mode | store | validated at | logouts | revoked | p50 ms | p99 ms | max ms | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summaries:
        verdict = s["verdict"]
        if verdict == NEVER and s["token_expires_in_s"] is not None:
            verdict += f" (token valid {s['token_expires_in_s']:g} s more by its exp)"
        lines.append(
            f"| {modes.label(s['mode'])} | {s.get('store', 'single')} | "
            f"{s.get('validate_at', 'replica')} | {s['logouts']} | "
            f"{s['revoked']} | "
            f"{_cell(s['p50_ms'])} | {_cell(s['p99_ms'])} | {_cell(s['max_ms'])} | {verdict} |"
        )
    lags = manifest.get("replication_read_lag_ms") or {}
    if lags:
        lines += [
            "",
            "Replication read lag, without HTTP: a key deleted on the primary until a GET on "
            "a read replica (in turn) first misses it, once per logout count:",
            "",
            "| store | samples | p50 ms | p99 ms | max ms |",
            "| --- | --- | --- | --- | --- |",
        ]
        for store, lag in lags.items():
            lines.append(
                f"| {store} | {lag['samples']} | {_cell(lag['p50_ms'])} | "
                f"{_cell(lag['p99_ms'])} | {_cell(lag['max_ms'])} |"
            )
    git = manifest.get("git", {})
    if git:
        dirty = " (dirty: the tree held uncommitted edits)" if git.get("dirty") else ""
        lines += ["", f"Code: commit {git.get('commit', '?')}{dirty}."]
    load = manifest.get("machine", {}).get("loadavg_at_end")
    if load:
        lines += [f"Load average at the end: {', '.join(f'{v:.2f}' for v in load)}."]
    (run_dir / "README.md").write_text("\n".join(lines) + "\n")
    return run_dir / "README.md"


def shown_command(argv: Sequence[str]) -> str:
    """The command line as a reader types it: `authbench …` for `python -m authbench …`."""
    args = list(argv)
    if args and (args[0].endswith("__main__.py") or args[0].endswith("authbench")):
        args[0] = "authbench"
    return " ".join(args)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def read_summary(run_dir: Path) -> list[dict[str, Any]]:
    """A committed run's per-mode summary (what the spectrum chart reads)."""
    data: list[dict[str, Any]] = json.loads((run_dir / "summary.json").read_text())
    return data


@dataclass
class RunConfig:
    modes: tuple[Mode, ...]
    logouts: int = DEFAULT_LOGOUTS
    replicas: int = 3
    timeout_s: float = DEFAULT_TIMEOUT_S
    give_up_after: int = DEFAULT_GIVE_UP_AFTER
    accounts: int = 20
    port_base: int | None = None  # None: a free block
    settings_env: dict[str, str] = field(default_factory=dict)
    results_dir: Path = Path("results")
    run_id: str = ""
    stores: tuple[StoreTopology, ...] = (SINGLE_REDIS,)  # each measured in turn
    places: tuple[str, ...] = ("replica",)  # --validate-at: VALIDATE_AT, each in turn


def run(config: RunConfig, say: Callable[[str], None] = print) -> Path:
    """Measure every chosen mode on private local clusters; returns the run folder."""
    from authbench.process import PROJECT_ROOT, free_port_block
    from authbench.provenance import new_run_id, run_head
    from authbench.targets.local import LocalCluster, Ports

    config.run_id = config.run_id or new_run_id("revocation-window")
    run_dir = config.results_dir / config.run_id
    if run_dir.exists():
        raise FileExistsError(run_dir)
    manifest = {
        **run_head("revocation-window", config.run_id),
        "settings": {
            "modes": modes.keys(config.modes),
            "logouts": config.logouts,
            "replicas": config.replicas,
            "timeout_s": config.timeout_s,
            "give_up_after": config.give_up_after,
            "accounts": config.accounts,
            "cluster_env": config.settings_env,
            "stores": [str(store) for store in config.stores],
            "validate_at": list(config.places),
        },
        "deployments": {},
        # --store replicas:N: a DEL on the primary until a replica's GET misses it (ms).
        "replication_read_lag_ms": {},
    }
    results: list[ModeWindow] = []
    started = time.monotonic()
    plans = [
        (s, p, g) for s in config.stores for p in config.places
        for g in deployment_groups(config.modes)
    ]  # fmt: skip
    for store, place, (settings, members) in plans:
        base = config.port_base if config.port_base is not None else free_port_block()
        env = {
            "AUTH_SEED_USERS": str(max(config.accounts, 1)),
            "LOG_LEVEL": "WARNING",
            **config.settings_env,
            **settings,
            # The gateway's assertion keys are made by the cluster, never kept here.
            **({"VALIDATE_AT": place} if place != "replica" else {}),
        }
        cluster = LocalCluster(
            replicas=config.replicas,
            ports=Ports.block(base),
            # A copy: LocalCluster adds secrets of its own (INTROSPECT_SECRET, an HS256
            # secret) to the dict it is given, and `env` goes into the manifest.
            settings_env=dict(env),
            workdir=PROJECT_ROOT / ".authbench" / config.run_id / f"ports{base}",
            store=store,
        )
        say(
            f"starting a local cluster ({config.replicas} replicas, store {store}, validated "
            f"at the {place}) for {modes.keys(members)}"
        )
        cluster.start()
        try:
            _wait_login(cluster.gateway_url)
            for mode in members:
                # The settings asked for, and those the store topology added.
                key = mode.key if len(config.stores) == 1 else f"{mode.key}@{store}"
                if place != "replica":
                    key += f" at {place}"
                manifest["deployments"][key] = {**env, **cluster.store_settings()}
                # At the gateway: the one place that checks credentials is what is asked.
                asked = cluster.replica_urls() if place == "replica" else [cluster.gateway_url]
                results.append(
                    measure_mode(
                        cluster.gateway_url,
                        asked,
                        mode,
                        config.logouts,
                        config.accounts,
                        config.timeout_s,
                        config.give_up_after,
                        say=say,
                        store=str(store),
                        validate_at=place,
                    )
                )
                s = results[-1].summary()
                say(
                    f"{mode.key} on {store} at the {place}: p50 {s['p50_ms']} ms, "
                    f"p99 {s['p99_ms']} ms, "
                    f"max {s['max_ms']} ms over {s['revoked']}/{s['logouts']} logouts "
                    f"({s['verdict']})"
                )
            if cluster.replica_store is not None and cluster.replica_store.replica_ports:
                lags = cluster.replica_store.read_lag_ms(config.logouts)
                manifest["replication_read_lag_ms"][str(store)] = lag_summary(lags)
                say(f"replication read lag on {store}: {lag_summary(lags)}")
        finally:
            cluster.stop()
    manifest["duration_s"] = round(time.monotonic() - started, 1)
    manifest["machine"]["loadavg_at_end"] = list(os.getloadavg())
    manifest["summary"] = [r.summary() for r in results]
    write_results(run_dir, results, manifest)
    return run_dir


def lag_summary(lags_ms: Sequence[float]) -> dict[str, Any]:
    """p50/p99/max (ms, nearest rank) of replication read lags."""
    return {
        "samples": len(lags_ms),
        "p50_ms": _round(percentile(lags_ms, 0.50)),
        "p99_ms": _round(percentile(lags_ms, 0.99)),
        "max_ms": _round(max(lags_ms)) if lags_ms else None,
    }


def _wait_login(gateway: str, timeout_s: float = 120.0) -> None:
    """Block until a login goes through (the auth service seeds its users' hashes first)."""
    client = _Client(gateway, timeout_s=10.0)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            body = {"username": "user0", "password": "password0", "mode": Login.JWT}
            if client.request("POST", "/auth/login", body=body)[0] == 200:
                return
            if time.monotonic() > deadline:
                raise WindowError("the auth service did not accept a login in time")
            time.sleep(0.2)
    finally:
        client.close()
