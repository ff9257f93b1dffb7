"""The `failover` scenarios: SIGKILL the Redis primary under load, Sentinel promotes the
replica, and what was acknowledged before the kill is looked for on the new primary.

Replication is asynchronous: the primary answers a client before its replica has the
write, so a write acknowledged in the last instant before the primary dies can be missing
on the promoted replica. The planted credentials of every scenario are acknowledged
seconds before the fault (long replicated); what this module adds are writers that keep
writing up to the kill, each acknowledgement recorded with its wall-clock time:

- sessions: session logins (a session created);
- refresh rotations: chains of `POST /auth/refresh` (a thread each), each answer's token
  the next one's input; after the failover each chain is walked back from its newest
  token to count the rotations the new primary lacks (`AcknowledgedWrites.check`);
- revocations: a JWT login then its logout on a gateway with the denylist; after the
  failover the logged-out token must still be refused.

The writers stop at the kill; a write whose answer did not come before is not counted.
After the failover every acknowledged write is checked through the gateways (a 503 while
the breaker recovers is asked again). The writers' own latencies are the price of
`REDIS_WAIT_REPLICAS` (the `failover-wait` scenario), measured the same way in both runs.

After the new primary is named, the killed node is started again as its replica (what a
supervisor does); until then a deployment with WAIT cannot acknowledge any write, which
`writes_back_s` shows.

On loopback the replica is ~0 behind at any instant, so a bare kill loses nothing. The
`failover-partition` scenarios first cut the replica's replication link (a userspace proxy
on it stops passing bytes: a simulated partition, authbench.stores.sentinel) while the
writers go on, then kill the primary; every count is then split at the cut (`_cut`
fields: acknowledged during the partition), and the latencies are those of requests
started before the cut, so both scenarios price WAIT on a healthy link.
"""

from __future__ import annotations

import html
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from authbench.chaos import probes, timeline
from authbench.modes import Login
from authbench.targets.base import Deployment

Progress = Callable[[str], None]
SESSION_WRITE = Login.SESSION.value  # a session created by a login (the login's name)
KINDS = (SESSION_WRITE, "refresh", "revocation")
# The writers' operations whose latency is reported (WAIT's cost).
OPERATIONS = ("login (session)", "login (jwt)", "refresh", "logout (jwt+denylist)")
LAST_MS = 100.0  # "just before the kill": acknowledged in the last this-many ms


@dataclass(frozen=True, slots=True)
class Ack:
    kind: str  # one of KINDS
    at: float  # wall clock when the acknowledgement was read
    check: dict[str, Any]  # what to ask after the failover


@dataclass(slots=True)
class KindLoss:
    acknowledged: int = 0
    lost: int = 0
    unanswered: int = 0
    acknowledged_last: int = 0  # in the last LAST_MS before the kill
    lost_last: int = 0
    # Answered after the replica's link was cut (partition scenarios): by the time the
    # answer was read, so one in flight at the cut may have reached the replica before it.
    acknowledged_cut: int = 0
    lost_cut: int = 0


@dataclass(slots=True)
class WriteLosses:
    """Per kind: writes acknowledged before the kill, and how many the new primary lacks."""

    kinds: dict[str, KindLoss] = field(default_factory=dict)
    last_ms: float = LAST_MS

    @property
    def lost(self) -> int:
        return sum(k.lost for k in self.kinds.values())

    @property
    def acknowledged(self) -> int:
        return sum(k.acknowledged for k in self.kinds.values())


class AcknowledgedWrites:
    """Writer threads that record each acknowledged write until `stop()`."""

    def __init__(
        self, gateways: probes.Gateways, session_accounts: range, jwt_accounts: range, chains: int
    ) -> None:
        if gateways.denylist is None:
            raise probes.ProbeError("the failover scenario needs a mode with the denylist")
        self._gateways = gateways
        self._session_accounts = session_accounts
        self._jwt_accounts = jwt_accounts
        self._chains = chains
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.acks: list[Ack] = []
        self.latencies: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        self.latency_started: dict[str, list[float]] = {op: [] for op in OPERATIONS}  # wall
        self.errors: dict[str, int] = {}
        self.error_at: list[tuple[str, float]] = []  # (errors key, wall clock of the answer)
        self._tokens: list[str] = []  # each chain's latest acknowledged refresh token
        self.first_tokens: list[str] = []  # each chain's token from its login
        self.probe_account = jwt_accounts[-1]  # logs in after the kill (writes back?)

    # --- writing ----------------------------------------------------------------------
    def start(self) -> None:
        """Start each chain (a JWT login), then the writer threads."""
        for i in range(self._chains):
            account = self._jwt_accounts[i % len(self._jwt_accounts)]
            self._tokens.append(
                probes.login(self._gateways.jwt, account, Login.JWT).json()["refresh_token"]
            )
        self.first_tokens = list(self._tokens)
        writers: list[tuple[Callable[..., None], tuple[int, ...]]] = [
            (self._write_sessions, ()),
            (self._write_revocations, ()),
        ] + [(self._write_refreshes, (chain,)) for chain in range(self._chains)]
        for target, args in writers:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _timed(
        self,
        operation: str,
        gateway: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> probes.Answer:
        """POST `path`, timing an acknowledged answer under `operation`."""
        started, wall = time.perf_counter(), time.time()
        answer = probes.call(gateway, "POST", path, body=body, headers=headers)
        if answer.status in (200, 204):
            with self._lock:
                self.latencies[operation].append((time.perf_counter() - started) * 1000)
                self.latency_started[operation].append(wall)
        else:
            with self._lock:
                key = f"{operation}: {answer.status}"
                self.errors[key] = self.errors.get(key, 0) + 1
                self.error_at.append((key, time.time()))
        return answer

    def _record(self, kind: str, check: dict[str, Any]) -> None:
        with self._lock:
            self.acks.append(Ack(kind, time.time(), check))

    def _write_sessions(self) -> None:
        gateway, i = self._gateways.session, 0
        while not self._stop.is_set():
            account = self._session_accounts[i % len(self._session_accounts)]
            i += 1
            body = _login_body(account, Login.SESSION)
            answer = self._timed("login (session)", gateway, "/auth/login", body=body)
            if answer.status == 200:
                self._record(SESSION_WRITE, {"headers": probes.credential_headers(answer)})

    def _write_refreshes(self, chain: int) -> None:
        gateway = self._gateways.jwt
        while not self._stop.is_set():
            body = {"refresh_token": self._tokens[chain]}
            answer = self._timed("refresh", gateway, "/auth/refresh", body=body)
            if answer.status == 200:
                self._tokens[chain] = answer.json()["refresh_token"]
                self._record("refresh", {"chain": chain, "token": self._tokens[chain]})
            elif answer.status != 503:
                return  # a chain this writer cannot continue (should not happen)

    def _write_revocations(self) -> None:
        gateway, i = self._gateways.denylist, 0
        assert gateway is not None
        while not self._stop.is_set():
            account = self._jwt_accounts[i % len(self._jwt_accounts)]
            i += 1
            body = _login_body(account, Login.JWT)
            answer = self._timed("login (jwt)", gateway, "/auth/login", body=body)
            if answer.status != 200 or self._stop.is_set():
                continue
            headers = probes.credential_headers(answer)
            done = self._timed("logout (jwt+denylist)", gateway, "/auth/logout", headers=headers)
            if done.status == 204:
                self._record("revocation", {"headers": headers})

    # --- checking after the failover --------------------------------------------------
    def check(
        self, fault_at: float, timeout_s: float = 30.0, cut_at: float | None = None
    ) -> WriteLosses:
        """Ask the deployment about every write acknowledged before the writers stopped
        (with `cut_at`, those acknowledged after it are also counted under `_cut`).

        A refresh chain is walked from its newest acknowledged token back: a lost
        rotation leaves its token unknown (401, and no side effect), and the newest token
        the new primary still holds unspent rotates (200); so the 401s before the first
        200 are exactly the chain's lost rotations, and every earlier one survived (the
        one that made the surviving token, and so on back)."""
        deadline = time.monotonic() + timeout_s
        losses = WriteLosses(kinds={kind: KindLoss() for kind in KINDS})
        chains: dict[int, list[Ack]] = {}

        def during_cut(ack: Ack) -> bool:
            return cut_at is not None and ack.at >= cut_at

        for ack in self.acks:
            entry = losses.kinds[ack.kind]
            recent = fault_at - ack.at <= LAST_MS / 1000
            entry.acknowledged += 1
            entry.acknowledged_last += recent
            entry.acknowledged_cut += during_cut(ack)
            if ack.kind == "refresh":
                chains.setdefault(ack.check["chain"], []).append(ack)  # in order per chain
                continue
            lost, unanswered = self._ask(ack, deadline)
            entry.lost += lost
            entry.lost_last += lost and recent
            entry.lost_cut += lost and during_cut(ack)
            entry.unanswered += unanswered
        entry = losses.kinds["refresh"]
        for acks in chains.values():
            for ack in reversed(acks):
                body = {"refresh_token": ack.check["token"]}
                answer = _definite_answer(
                    self._gateways.jwt, "POST", "/auth/refresh", deadline, body=body
                )
                if answer.status != 401 or not _unknown_token(answer):
                    # 200: the newest surviving token; 401 "reused": spent by a rotation
                    # that was in flight at the kill and reached the new primary, so this
                    # acknowledged one survived too.
                    entry.unanswered += answer.status not in (200, 401)
                    break
                entry.lost += 1
                entry.lost_last += fault_at - ack.at <= LAST_MS / 1000
                entry.lost_cut += during_cut(ack)
        return losses

    def _ask(self, ack: Ack, deadline: float) -> tuple[bool, bool]:
        """(lost, no definite answer) for one acknowledged write."""
        g = self._gateways
        if ack.kind == SESSION_WRITE:
            status = _definite(g.session, "GET", "/api/me", deadline, headers=ack.check["headers"])
            return status == 401, status not in (200, 401)
        assert g.denylist is not None
        status = _definite(g.denylist, "GET", "/api/me", deadline, headers=ack.check["headers"])
        return status == 200, status not in (200, 401)

    def latency_figures(
        self, until: float | None = None
    ) -> dict[str, dict[str, float | int | None]]:
        """Per operation: count, p50 and p99 (ms) of the acknowledged ones (started
        before `until` when given: the cut of a partition scenario)."""
        figures: dict[str, dict[str, float | int | None]] = {}
        for op, every in self.latencies.items():
            starts = self.latency_started[op]
            values = [
                ms for ms, at in zip(every, starts, strict=True) if until is None or at < until
            ]
            figures[op] = {
                "count": len(values),
                "p50_ms": timeline._round(timeline.percentile(values, 0.5)),
                "p99_ms": timeline._round(timeline.percentile(values, 0.99)),
            }
        return figures


def _login_body(account: int, credential: Login) -> dict[str, Any]:
    return {"username": f"user{account}", "password": f"password{account}", "mode": credential}


def _unknown_token(answer: probes.Answer) -> bool:
    """Whether a refused refresh token was unknown (never written, or lost), rather than
    spent or of a revoked family."""
    try:
        return "unknown" in str(answer.json().get("detail", ""))
    except (ValueError, AttributeError):
        return False


def _definite_answer(
    gateway: str,
    method: str,
    path: str,
    deadline: float,
    *,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> probes.Answer:
    """Ask until the answer is not a 503/no answer (the breaker still recovering)."""
    while True:
        answer = probes.call(gateway, method, path, headers=headers, body=body)
        if answer.status not in (0, 503) or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def _definite(
    gateway: str,
    method: str,
    path: str,
    deadline: float,
    *,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> int:
    return _definite_answer(gateway, method, path, deadline, headers=headers, body=body).status


@dataclass(slots=True)
class FailoverTimes:
    """Seconds from the kill (SIGKILL of the primary) to each step of the failover."""

    promoted_s: float  # the Sentinels name the replica as primary
    primary_answers_s: float  # ... and it answers as one ("back")
    writes_back_s: float | None  # the first acknowledged write (a JWT login) after the kill
    rejoined_s: float  # the killed node is a synced replica of the new primary again
    old_primary: str  # the target's name of the node: 127.0.0.1:PORT, or a compose service
    new_primary: str


def inject(
    target: Deployment,
    writes: AcknowledgedWrites,
    gateways: probes.Gateways,
    timeout_s: float,
    events: dict[str, float],
    say: Progress,
) -> tuple[timeline.FaultWindow, FailoverTimes]:
    """Kill the primary, stop the writers, wait for the failover, bring the old primary
    back as a replica, and time each step."""
    old, fault_at = target.kill_redis_primary()
    writes.stop()
    say(f"fault: Redis primary {old} SIGKILLed; waiting for the Sentinels")
    named_at, new = target.wait_redis_failover(old, timeout_s)
    back_at = time.time()
    say(f"promoted: {new} named after {named_at - fault_at:.2f} s, answers as primary")
    # The first write acknowledged after the kill, while the old primary restarts as a
    # replica (with WAIT no write is acknowledged before that).
    first_write: list[float] = []
    probe = threading.Thread(
        target=_first_write,
        args=(gateways.jwt, writes.probe_account, first_write, timeout_s),
        daemon=True,
    )
    probe.start()
    target.rejoin_redis()
    rejoined_at = time.time()
    probe.join(timeout_s)
    say(f"old primary rejoined as a replica after {rejoined_at - fault_at:.2f} s")
    events.update(fault_at=fault_at, restore_at=named_at, back_at=back_at, rejoined_at=rejoined_at)
    times = FailoverTimes(
        promoted_s=round(named_at - fault_at, 3),
        primary_answers_s=round(back_at - fault_at, 3),
        writes_back_s=round(first_write[0] - fault_at, 3) if first_write else None,
        rejoined_s=round(rejoined_at - fault_at, 3),
        old_primary=old,
        new_primary=new,
    )
    return timeline.FaultWindow(fault_at, named_at, back_at), times


def _first_write(gateway: str, account: int, found: list[float], timeout_s: float) -> None:
    """A JWT login (a new refresh family: a write) every 0.2 s until one is acknowledged.
    A login, not a rotation: a rotation refused for want of a replica has still spent
    its token on the primary, so retrying it would look like reuse."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = _login_body(account, Login.JWT)
        if probes.call(gateway, "POST", "/auth/login", body=body).status == 200:
            found.append(time.time())
            return
        time.sleep(0.2)


def summary(
    losses: WriteLosses,
    times: FailoverTimes,
    writes: AcknowledgedWrites,
    store: dict[str, Any],
    settings: dict[str, str],
    partition: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The scenario's failover figures, as result.json keeps them. `partition`: what
    cut the replica's link (`cut_redis_replica_link`, with `at_kill`, the replication
    state read just before the kill); latencies are then of requests before the cut."""
    cut_at = float(partition["cut_at"]) if partition else None
    return {
        "store": store,
        "settings": settings,
        "times": asdict(times),
        "writes": {kind: asdict(entry) for kind, entry in losses.kinds.items()},
        "last_ms": losses.last_ms,
        "acknowledged": losses.acknowledged,
        "lost": losses.lost,
        "acknowledged_cut": sum(k.acknowledged_cut for k in losses.kinds.values()),
        "lost_cut": sum(k.lost_cut for k in losses.kinds.values()),
        "partition": partition,
        "latency": writes.latency_figures(until=cut_at),
        "write_errors": dict(sorted(writes.errors.items())),
        "write_errors_cut": dict(
            sorted(Counter(k for k, at in writes.error_at if cut_at and at >= cut_at).items())
        ),
    }


def report_section(
    results: Sequence[dict[str, Any]],
    table: Callable[[Sequence[str], Sequence[Sequence[Any]]], str],
) -> str:
    """report.html's failover section: every failover scenario of the run side by side
    (without and with WAIT): the failover's steps, acknowledged writes lost, and what the
    writes cost. Empty when the run has none."""
    runs = [r for r in results if r.get("failover")]
    if not runs:
        return ""
    names = [html.escape(r["scenario"]["name"]) for r in runs]
    first = runs[0]["failover"]["store"]
    tuning = (
        f"one primary, one replica, three Sentinels (quorum {first.get('quorum', '?')}), "
        f"down-after-milliseconds {first.get('down_after_milliseconds', '?')}, "
        f"failover-timeout {first.get('failover_timeout_ms', '?')} ms"
    )
    steps = [
        ("primary named (s after the kill)", "promoted_s"),
        ("new primary answers (s)", "primary_answers_s"),
        ("first write acknowledged again (s)", "writes_back_s"),
        ("old primary rejoined as replica (s)", "rejoined_s"),
    ]
    rows: list[list[Any]] = [
        ["settings"]
        + [", ".join(f"{k}={v}" for k, v in r["failover"]["settings"].items()) or "-" for r in runs]
    ]
    partitioned = any(r["failover"].get("partition") for r in runs)
    if partitioned:
        rows.append(["replica's link cut (s before the kill)"] + [_cut_lead(r) for r in runs])
        rows.append(["replica behind at the kill (bytes); link still through the proxy"] + [
            _lag(r) for r in runs
        ])  # fmt: skip
    rows += [[label] + [r["failover"]["times"][key] for r in runs] for label, key in steps]
    last = runs[0]["failover"]["last_ms"]
    for kind in KINDS:
        cells = []
        for r in runs:
            w = r["failover"]["writes"][kind]
            cells.append(
                f"{w['lost']} of {w['acknowledged']} (last {last:g} ms: "
                f"{w['lost_last']} of {w['acknowledged_last']}"
                + (
                    f"; during the cut: {w.get('lost_cut', 0)} of {w.get('acknowledged_cut', 0)}"
                    if r["failover"].get("partition")
                    else ""
                )
                + ")"
                + (f", {w['unanswered']} unanswered" if w["unanswered"] else "")
            )
        rows.append([f"{kind}s lost" if kind != "refresh" else "refresh rotations lost", *cells])
    for op in OPERATIONS:
        cells = []
        for r in runs:
            f = r["failover"]["latency"].get(op, {})
            cells.append(f"{f.get('p50_ms')} / {f.get('p99_ms')} (n={f.get('count')})")
        rows.append([f"{op} p50 / p99 ms", *cells])
    rows.append(["writes refused (status: count)"] + [
        " ".join(f"{k}: {v}" for k, v in r["failover"]["write_errors"].items()) or "-" for r in runs
    ])  # fmt: skip
    if partitioned:
        rows.append(["... of which during the cut"] + [
            " ".join(f"{k}: {v}" for k, v in r["failover"].get("write_errors_cut", {}).items())
            or "-"
            for r in runs
        ])  # fmt: skip
    return (
        "<h3 id=failover>Failover: what a Sentinel failover loses, with and without WAIT</h3>"
        f"<p>{html.escape(tuning)}. Writers create sessions, rotate refresh tokens and "
        "revoke JWTs until the primary is SIGKILLed; every write acknowledged before that "
        "is then looked for through the gateways on the promoted replica (a refresh chain "
        "is walked back from its newest token: the unknown ones before the first that "
        "still rotates are its lost rotations). Latencies are of the writers' acknowledged "
        "requests before the kill (before the cut, in a partition scenario), the same "
        "writers in each scenario.</p>"
        + (
            "<p>Partition scenarios: the partition is simulated, not a network fault: the "
            "replica's replication link goes through a userspace TCP proxy (the delay proxy "
            "of the slow scenario) that stops passing bytes at the cut, while the Sentinels "
            "and the services still reach both nodes directly. The primary goes on "
            "acknowledging writes the replica never receives; then it is SIGKILLed and the "
            'replica promoted. "During the cut" goes by when the answer was read: a '
            "request in flight at the cut may have reached the replica before it.</p>"
            if partitioned
            else ""
        )
        + table(["", *names], rows)
    )


# Which writer's refused requests count against which kind of write (chart_losses).
REFUSED_KIND = {
    "login (session)": SESSION_WRITE,
    "refresh": "refresh",
    "login (jwt)": "revocation",  # the revocation writer's login, refused before its logout
    "logout (jwt+denylist)": "revocation",
}


def chart_losses(results: Sequence[dict[str, Any]], path: Path, plt: Any) -> bool:
    """failover.png: per kind of write, one stacked bar per failover scenario: the writes
    acknowledged and kept, acknowledged and lost, and refused (an error answer, never
    acknowledged). False (nothing drawn) when the run has no failover scenario."""
    runs = [r for r in results if r.get("failover")]
    if not runs:
        return False
    names = [r["scenario"]["name"] for r in runs]
    fig, axes = plt.subplots(1, len(KINDS), figsize=(4.2 * len(KINDS), 4.2))
    for ax, kind in zip(axes, KINDS, strict=True):
        kept, lost, refused = [], [], []
        for r in runs:
            w = r["failover"]["writes"][kind]
            kept.append(w["acknowledged"] - w["lost"])
            lost.append(w["lost"])
            refused.append(sum(
                n for key, n in r["failover"]["write_errors"].items()
                if REFUSED_KIND.get(key.rpartition(":")[0]) == kind
            ))  # fmt: skip
        xs = range(len(names))
        ax.bar(xs, kept, color="#2ca02c", label="acknowledged, kept")
        ax.bar(xs, lost, bottom=kept, color="#d62728", label="acknowledged, LOST")
        tops = [a + b for a, b in zip(kept, lost, strict=True)]
        ax.bar(xs, refused, bottom=tops, color="#bbbbbb", hatch="//", label="refused (503)")
        for x, (top, n_lost, n_refused) in enumerate(zip(tops, lost, refused, strict=True)):
            ax.annotate(
                f"lost {n_lost}, refused {n_refused}", (x, top + n_refused),
                ha="center", va="bottom", fontsize=8,
            )  # fmt: skip
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=12, fontsize=8)
        ax.set_title({"refresh": "refresh rotations"}.get(kind, f"{kind}s"))
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("writers' requests before the kill")
    axes[0].legend(fontsize=8)
    fig.suptitle("What a Sentinel failover lost of the acknowledged writes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _cut_lead(result: dict[str, Any]) -> str:
    """How long before the kill the replica's link was cut ("-" without a cut)."""
    partition = result["failover"].get("partition")
    if not partition:
        return "-"
    return f"{result['window']['fault_at'] - float(partition['cut_at']):.2f}"


def _lag(result: dict[str, Any]) -> str:
    at_kill = (result["failover"].get("partition") or {}).get("at_kill") or {}
    if not at_kill:
        return "-"
    held = "yes" if at_kill.get("through_proxy") else "NO (re-pointed: the partition did not hold)"
    return f"{at_kill.get('replica_lag_bytes', '?')}; {held}"
