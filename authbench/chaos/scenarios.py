"""The chaos scenarios: one fault each, injected at a known moment under steady load.

Every scenario runs the same script on a Deployment (authbench.targets.base): locally a
fresh ChaosCluster per scenario (so no scenario inherits the previous one's Redis), or any
given deployment (the running compose stack) for every scenario in turn. The modes loaded
are those the deployment serves: a mode is served by a group (gateway and replicas) whose
settings are the mode's (authbench.modes: `Mode.served_by`), preferably its chaos group.

1. start the deployment (for `slow`, with the delay proxy in front of Redis);
2. start the load (every mode at once) and measure the revocation window of each mode;
3. plant credentials to check for losses later, and wait until the warm-up is over and at
   least `aof_margin_s` (> 1 s) has passed since the last acknowledgement: AOF with
   `appendfsync everysec` may lose up to a second of writes by design, and this run
   measures what the setting promises, not that documented second;
4. inject the fault, wait the outage, remove it; the moment Redis answers PING again (or
   the delay is switched off) is "back";
5. keep measuring for `after_s`, then check which planted credentials survived;
6. stop everything and cut the recorded requests into the timeline.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from authbench.chaos import failover, probes, read_replica, replica_crash, shard_kill, timeline
from authbench.chaos.load import ChaosLoad, LoadShape
from authbench.chaos.topology import ChaosCluster
from authbench.modes import CHAOS_MODES, Login, Mode
from authbench.store_link import NETEM, PROXY_LINK, LinkChoice, NetemLink, redis_port
from authbench.targets.base import Deployment, Group, StoreTopology
from authcore.config import Settings, documented_settings

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    fault: str  # kill | pause | restart | slow | failover | partition_failover | kill_auth | ...
    persistence: str  # none | aof
    title: str
    what: str
    store: str = "single"  # the store topology it needs (--store)
    settings: tuple[tuple[str, str], ...] = ()  # the services' settings it runs with


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "kill", "kill", "none", "Redis killed",
            "SIGKILL of redis-server; started again after the outage (no persistence).",
        ),
        Scenario(
            "pause", "pause", "none", "Redis paused",
            "SIGSTOP: Redis accepts connections but never answers, so only timeouts protect "
            "the services; SIGCONT after the outage.",
        ),
        Scenario(
            "restart-none", "restart", "none", "Crash-restart, no persistence",
            "SIGKILL and an immediate restart of a Redis that keeps nothing on disk.",
        ),
        Scenario(
            "restart-aof", "restart", "aof", "Crash-restart, AOF everysec",
            "SIGKILL and an immediate restart of a Redis with appendonly yes, appendfsync "
            "everysec; it reloads its append-only file.",
        ),
        Scenario(
            "slow", "slow", "none", "Slow Redis (delayed store link)",
            "Every byte between the services and Redis delayed: by tc netem on loopback "
            "(only Redis's port) where it works, else by a userspace TCP proxy; the "
            "manifest's store_link says which and why. The delay is on during the outage.",
        ),
        # Issue 15: the auth service as the central component. Sessions and JWTs are
        # checked at the replicas (only logins need it); opaque tokens ask it on every read.
        Scenario(
            "auth-kill", "kill_auth", "none", "Auth service killed",
            "SIGKILL of the auth service (Redis untouched); started again after the outage. "
            "Mode opaque introspects every read there; the others only log in there.",
        ),
        Scenario(
            "auth-pause", "pause_auth", "none", "Auth service paused",
            "SIGSTOP of the auth service: connections are accepted, nothing is answered, so "
            "only the replicas' introspection timeout protects mode opaque; SIGCONT after.",
        ),
    )
}  # fmt: skip

# Issue 16: the primary of a Sentinel-watched pair SIGKILLed (authbench.chaos.failover),
# with asynchronous replication, then with WAIT after every acknowledged write.
WAIT_SETTINGS = (("REDIS_WAIT_REPLICAS", "1"), ("REDIS_WAIT_TIMEOUT_MS", "100"))
# Not in the default run (`--scenarios failover,failover-wait`): they need --store sentinel.
FAILOVER_SCENARIOS: dict[str, Scenario] = {
        s.name: s
        for s in (
            Scenario(
                "failover", "failover", "none", "Primary killed, Sentinel failover",
                "SIGKILL of the Redis primary (one replica, three Sentinels); the replica is "
                "promoted, the old primary restarts as its replica; writes acknowledged up "
                "to the kill are looked for on the new primary.",
                store="sentinel",
                settings=(("REDIS_WAIT_REPLICAS", "0"),),  # asynchronous replication
            ),
            Scenario(
                "failover-wait", "failover", "none", "Primary killed, Sentinel failover, WAIT 1",
                "As failover, with REDIS_WAIT_REPLICAS=1 (WAIT 1 100 after each session "
                "creation, refresh rotation and revocation before acknowledging it).",
                store="sentinel",
                settings=WAIT_SETTINGS,
            ),
            # On loopback the replica is ~0 behind at any instant, so the two above lose
            # nothing; these cut the replica's link first (a partition, simulated by a
            # userspace proxy on that link: authbench.stores.sentinel, cut_replica_link).
            Scenario(
                "failover-partition", "partition_failover", "none",
                "Replica partitioned, then primary killed, Sentinel failover",
                "The replica's replication link is cut (a userspace TCP proxy on it stops "
                "passing bytes; the Sentinels still reach both nodes) while the writers go on "
                "for the partition time; then the primary is SIGKILLed and the replica "
                "promoted: writes the primary acknowledged during the cut are looked for on "
                "the new primary.",
                store="sentinel",
            ),
            Scenario(
                "failover-partition-wait", "partition_failover", "none",
                "Replica partitioned, then primary killed, Sentinel failover, WAIT 1",
                "As failover-partition, with REDIS_WAIT_REPLICAS=1 (WAIT 1 100): writes "
                "during the cut are refused (503 redis_not_replicated), not acknowledged.",
                store="sentinel",
                settings=WAIT_SETTINGS,
            ),
        )
}  # fmt: skip
FAILOVER_FAULTS = ("failover", "partition_failover")

# Issue 16 item 5: a resource replica SIGKILLed mid-request (authbench.chaos.replica_crash).
# Not in the default run either: `--scenarios replica-crash`.
REPLICA_SCENARIOS: dict[str, Scenario] = {
    "replica-crash": Scenario(
        "replica-crash", "replica_kill", "none", "A resource replica killed mid-request",
        "SIGKILL of one resource replica behind the main gateway; only requests in flight on "
        "it should fail, and the gateway should eject it within its health interval; it is "
        "started again after the outage.",
    ),
}  # fmt: skip


# Issue 17 item 5: one shard of a three-shard Redis Cluster SIGKILLed (authbench.chaos.
# shard_kill). Not in the default run: `--scenarios shard-kill`.
SHARD_SCENARIOS: dict[str, Scenario] = {
    "shard-kill": Scenario(
        "shard-kill", "shard_kill", "none", "One Redis Cluster shard killed",
        "SIGKILL of one of three Redis Cluster primaries (no replicas, no persistence); "
        "only the sessions whose keys it holds should fail, about a third; it is started "
        "again, empty, after the outage.",
        store="cluster:3",
    ),
}  # fmt: skip


# Issue 17 item 6: one read replica of a primary + two read replicas store SIGKILLed or
# SIGSTOPped (authbench.chaos.read_replica). Not in the default run:
# `--scenarios read-replica-kill,read-replica-pause`.
READ_REPLICA_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "read-replica-kill", "read_replica_kill", "none", "One read replica killed",
            "SIGKILL of one of two Redis read replicas (session reads go to the replicas in "
            "turn, each behind its own breaker); reads should all go on succeeding, on the "
            "other replica; it is started again, empty, after the outage, syncs, and should "
            "serve reads again.",
            store="replicas:2",
        ),
        Scenario(
            "read-replica-pause", "read_replica_pause", "none", "One read replica paused",
            "SIGSTOP of one of two Redis read replicas: a read sent to it waits out "
            "REDIS_TIMEOUT_MS before moving on to the other replica, then its breaker keeps "
            "it out; reads should all succeed, some slower; SIGCONT after the outage.",
            store="replicas:2",
        ),
    )
}  # fmt: skip
READ_REPLICA_FAULTS = ("read_replica_kill", "read_replica_pause")


# Every scenario by name: the default run (SCENARIOS) and those run only when named.
ALL_SCENARIOS: dict[str, Scenario] = {
    **SCENARIOS, **FAILOVER_SCENARIOS, **REPLICA_SCENARIOS, **SHARD_SCENARIOS,
    **READ_REPLICA_SCENARIOS,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Timing:
    warmup_s: float = 5.0
    outage_s: float = 5.0  # kill, pause, slow: how long Redis is gone or slow
    after_s: float = 10.0  # measuring on after Redis is back
    aof_margin_s: float = 2.0  # last acknowledgement -> fault (AOF everysec: > 1 s)
    revocation_observe_s: float = 3.0
    hang_ms: float = 1000.0  # a request slower than this "hung"
    slow_ms: float = 5.0  # one-way delay of the slow scenario
    failover_writes_s: float = 3.0  # failover: writers run this long up to the kill
    failover_timeout_s: float = 30.0  # failover: longest wait for a new primary
    # failover-partition: writers go on this long with the replica's link cut, then the
    # kill. Keep it well under 10 s: a Sentinel re-points a replica whose master address
    # is not the one it monitors after two of its INFO polls, 10 s apart.
    partition_s: float = 3.0


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    replicas: int = 2
    shape: LoadShape = field(default_factory=LoadShape)
    timing: Timing = field(default_factory=Timing)
    planted_each: int = 10
    # The slow scenario's link (authbench.store_link.choose): netem or the delay proxy.
    store_link: LinkChoice = PROXY_LINK

    @property
    def seed_users(self) -> int:
        """Exactly the accounts a run uses: load users, revocation probes, planted ones
        (seeding more would only make the auth service busier at start)."""
        return self.shape.accounts + len(CHAOS_MODES) + 3 * self.planted_each


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    window: timeline.FaultWindow
    events: dict[str, float]
    figures: dict[str, timeline.ModeFigures]
    losses: probes.Losses
    revocation: list[probes.RevocationWindow]
    records: int
    failover: dict[str, Any] | None = None  # the failover scenarios' figures
    replica_crash: dict[str, Any] | None = None  # the replica-crash scenario's figures
    shard_kill: dict[str, Any] | None = None  # the shard-kill scenario's figures
    read_replica: dict[str, Any] | None = None  # the read-replica scenarios' figures

    def to_json(self) -> dict[str, Any]:
        extra = {"failover": self.failover} if self.failover is not None else {}
        if self.replica_crash is not None:
            extra["replica_crash"] = self.replica_crash
        if self.shard_kill is not None:
            extra["shard_kill"] = self.shard_kill
        if self.read_replica is not None:
            extra["read_replica"] = self.read_replica
        return extra | {
            "scenario": asdict(self.scenario),
            "window": asdict(self.window),
            "events": self.events,
            "figures": {mode: asdict(f) for mode, f in self.figures.items()},
            "losses": asdict(self.losses),
            "revocation": [asdict(r) for r in self.revocation],
            "records": self.records,
        }


# What each fault asks of the deployment (Deployment's fault operations).
FAULT_OPERATIONS: dict[str, tuple[str, ...]] = {
    "kill": ("kill_redis", "start_redis"),
    "restart": ("kill_redis", "start_redis"),
    "pause": ("pause_redis", "resume_redis", "wait_redis"),
    "slow": ("slow_redis",),
    "kill_auth": ("kill_auth", "start_auth"),
    "pause_auth": ("pause_auth", "resume_auth", "start_auth"),
    "failover": ("kill_redis_primary", "wait_redis_failover", "rejoin_redis"),
    "partition_failover": (
        "cut_redis_replica_link",
        "redis_replication",
        "kill_redis_primary",
        "wait_redis_failover",
        "rejoin_redis",
    ),
    "replica_kill": ("kill_replica", "start_replica", "upstream_health"),
    "shard_kill": ("kill_shard", "start_shard", "shard_of_keys"),
    "read_replica_kill": ("kill_read_replica", "start_read_replica", "read_replica_reads"),
    "read_replica_pause": ("pause_read_replica", "resume_read_replica", "read_replica_reads"),
}


SHARD_PROBE_SESSIONS = 60  # shard-kill: sessions whose shard is known before the kill
READ_REPLICA_PROBE_SESSIONS = 20  # read-replica-*: sessions read over and over in the outage


def modes_served(deployment: Deployment) -> list[tuple[Mode, Group]]:
    """Each chaos mode the deployment serves, with the group serving it (registry order)."""
    groups = deployment.groups()
    served = []
    for mode in CHAOS_MODES:
        fitting = [g for g in groups if mode.served_by(g.settings)]
        if fitting:
            group = next((g for g in fitting if g.name == mode.chaos_group), fitting[0])
            served.append((mode, group))
    return served


def _placement(group: Group) -> str:
    """Where a group checks credentials: its VALIDATE_AT (the services' default: replica)."""
    return group.settings.get("VALIDATE_AT") or Settings().validate_at


def cannot_run(scenario: Scenario, deployment: Deployment) -> str | None:
    """Why `scenario` cannot run on a given (already running) deployment; None if it can."""
    missing = [op for op in FAULT_OPERATIONS[scenario.fault] if not deployment.supports(op)]
    if missing:
        why = "; ".join(filter(None, dict.fromkeys(map(deployment.unsupported_why, missing))))
        return f"target {deployment.target} cannot {', '.join(missing)}" + (
            f": {why}" if why else ""
        )
    needs = StoreTopology.parse(scenario.store)
    if needs.kind != deployment.store.kind:
        return f"it needs --store {scenario.store}; this deployment runs {deployment.store}"
    if scenario.fault in READ_REPLICA_FAULTS and deployment.store.read_replicas < 1:
        return f"it needs a read replica to break; this deployment runs {deployment.store}"
    # A running deployment cannot be given the scenario's settings: it must run them.
    defaults = {name: default for name, default, _doc in documented_settings()}
    for name, value in scenario.settings:
        running = deployment.settings.get(name, defaults.get(name, ""))
        if running != value:
            return f"it needs {name}={value}; this deployment runs {name}={running}"
    if scenario.fault == "restart" and scenario.persistence != deployment.redis_persistence:
        return (
            f"its Redis persistence is {deployment.redis_persistence}; {scenario.name} needs "
            f"{scenario.persistence}"
        )
    return None


@contextlib.contextmanager
def fresh_cluster(scenario: Scenario, options: ChaosOptions, out_dir: Path) -> Iterator[Deployment]:
    """A new local ChaosCluster for one scenario, in a temporary folder removed after it
    (the delay proxy's log is kept with the scenario's results)."""
    workdir = Path(tempfile.mkdtemp(prefix="authbench-chaos-"))
    cluster = ChaosCluster(
        replicas=options.replicas,
        workdir=workdir,
        redis_persistence=scenario.persistence,
        settings_env={"AUTH_SEED_USERS": str(options.seed_users), **dict(scenario.settings)},
        redis_delay_ms=(
            options.timing.slow_ms
            if scenario.fault == "slow" and options.store_link.via != NETEM
            else None
        ),
        store=StoreTopology.parse(scenario.store),
        sentinel_partition_proxy=scenario.fault == "partition_failover",
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        with contextlib.suppress(OSError):
            shutil.copy(workdir / "logs" / "proxy.log", out_dir / "proxy.log")
        if scenario.fault == "partition_failover":
            # The evidence that the cut held: the proxy's switches, and the Sentinels'
            # events (a +fix-slave-config before the kill would have undone the cut).
            logs = workdir / "sentinel" / "logs"
            for log in [logs / "replica-proxy.log", *sorted(logs.glob("sentinel-*.log"))]:
                with contextlib.suppress(OSError):
                    shutil.copy(log, out_dir / log.name)
        shutil.rmtree(workdir, ignore_errors=True)


def run_scenario(
    scenario: Scenario,
    options: ChaosOptions,
    out_dir: Path,
    say: Progress,
    target: Deployment | None = None,
) -> ScenarioResult:
    """Run one scenario; raw and derived data go to `out_dir`.

    Without `target`, a fresh local ChaosCluster is started for the scenario (and stopped
    after); a given target (the compose stack) is attached to, and stays running.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if target is None:
            target = stack.enter_context(fresh_cluster(scenario, options, out_dir))
        return _run_scenario(scenario, options, out_dir, say, target)


def _run_scenario(
    scenario: Scenario,
    options: ChaosOptions,
    out_dir: Path,
    say: Progress,
    target: Deployment,
) -> ScenarioResult:
    timing = options.timing
    load: ChaosLoad | None = None
    # The load may run past its cap only if this script hangs; then Locust stops itself.
    cap_s = (
        60 + timing.warmup_s + timing.outage_s + timing.after_s + 4 * timing.aof_margin_s
        + timing.failover_writes_s + timing.partition_s
    )  # fmt: skip
    events: dict[str, float] = {}
    try:
        started = time.monotonic()
        target.start()
        say(f"{target.describe()} up in {time.monotonic() - started:.1f} s")
        served = modes_served(target)
        modes = [mode for mode, _group in served]
        group_of = {mode.key: group for mode, group in served}

        def gateway_for(mode: Mode) -> str:
            return group_of[mode.key].gateway_url

        session_gateway = gateway_for(next(m for m in modes if m.login is Login.SESSION))
        waited = probes.wait_for_logins(session_gateway, options.seed_users - 1)
        say(f"logins accepted after {waited:.1f} s (password hashes seeded)")
        load = ChaosLoad({m.key: gateway_for(m) for m in modes}, options.shape, out_dir, cap_s)
        load.start()
        events["load_started"] = time.time()
        say(f"load running: {options.shape.users_per_mode} users per mode")

        account = options.shape.accounts
        revocation = []
        for mode in modes:
            revocation.append(
                probes.revocation_window(
                    gateway_for(mode),
                    list(group_of[mode.key].replica_urls) or None,  # None: via the gateway
                    mode,
                    account,
                    timing.revocation_observe_s,
                )
            )
            account += 1
        say("revocation windows measured")
        # The first JWT mode whose reads ask the store: the denylist (closed, in registry order).
        denylist = next((m for m in modes if m.login is Login.JWT and m.store_on_read), None)
        gateways = probes.Gateways(
            session=session_gateway,
            jwt=gateway_for(next(m for m in modes if m.login is Login.JWT)),
            denylist=gateway_for(denylist) if denylist is not None else None,
        )
        planted = probes.plant(gateways, account, options.planted_each)
        events["last_acknowledged"] = planted.acknowledged_at
        say(f"planted {options.planted_each} sessions, refresh tokens and revoked JWTs")
        _sleep_until(events["load_started"] + timing.warmup_s)
        _sleep_until(planted.acknowledged_at + timing.aof_margin_s)

        writes: failover.AcknowledgedWrites | None = None
        partition: dict[str, Any] | None = None
        if scenario.fault in FAILOVER_FAULTS:
            each = options.planted_each  # the planted accounts: new credentials each time
            writes = failover.AcknowledgedWrites(
                gateways, range(account, account + each), range(account + each, account + 3 * each),
                chains=4,
            )  # fmt: skip
            writes.start()
            say(f"writers: sessions, refreshes and revocations for {timing.failover_writes_s:g} s")
            _sleep_until(time.time() + timing.failover_writes_s)
            if scenario.fault == "partition_failover":
                partition = dict(target.cut_redis_replica_link())
                events["cut_at"] = float(partition["cut_at"])
                say(
                    f"partition: the replica's link (proxy on port {partition['proxy_port']}) "
                    f"cut; writers go on for {timing.partition_s:g} s"
                )
                _sleep_until(events["cut_at"] + timing.partition_s)
                partition["at_kill"] = target.redis_replication()
                say(f"replication just before the kill: {partition['at_kill']}")
            window, times = failover.inject(
                target, writes, gateways, timing.failover_timeout_s, events, say
            )
        elif scenario.fault == "replica_kill":
            window, crash_times = replica_crash.inject(target, timing.outage_s, events, say)
        elif scenario.fault == "shard_kill":
            accounts = [i % options.shape.accounts for i in range(SHARD_PROBE_SESSIONS)]
            cookies = shard_kill.log_in(session_gateway, accounts)
            window, shard_figures = shard_kill.inject(
                target, session_gateway, cookies, timing.outage_s, events, say
            )
        elif scenario.fault in READ_REPLICA_FAULTS:
            accounts = [i % options.shape.accounts for i in range(READ_REPLICA_PROBE_SESSIONS)]
            cookies = shard_kill.log_in(session_gateway, accounts)
            window, replica_figures = read_replica.inject(
                target, scenario.fault == "read_replica_pause", session_gateway, cookies,
                timing.outage_s, events, say,
            )  # fmt: skip
        else:
            window = _inject(scenario, target, timing, events, say, options.store_link)
        _sleep_until(window.back_at + timing.after_s)
        losses = probes.check_losses(gateways, planted, window.back_at)
        events["losses_checked"] = time.time()
        say(
            f"after: sessions lost {losses.sessions_lost}/{losses.planted_each}, refresh tokens "
            f"lost {losses.refresh_tokens_lost}, revoked JWTs valid again "
            f"{losses.revoked_valid_again}"
        )
        failover_figures = None
        if writes is not None:
            lost = writes.check(window.fault_at, cut_at=events.get("cut_at"))
            store = target.store_description()
            failover_figures = failover.summary(
                lost, times, writes, store, dict(scenario.settings), partition
            )
            say(
                f"acknowledged before the kill: {lost.acknowledged} writes, lost on the new "
                f"primary: {lost.lost} ("
                + ", ".join(f"{k} {v.lost}/{v.acknowledged}" for k, v in lost.kinds.items())
                + ")"
            )
    finally:
        if load is not None:
            load.stop()
        target.stop()

    records = timeline.read_records(out_dir / "requests.csv")
    figures = {
        key: replace(f, validate_at=_placement(group_of[key]))
        for key, f in timeline.figures_by_mode(
            records, window, timing.hang_ms, [m.key for m in modes]
        ).items()
    }
    per_mode = timeline.buckets(records, window.fault_at)
    rows = timeline.timeline_rows(scenario.name, per_mode, timeline.failure_statuses(records))
    timeline.write_timeline(out_dir / "timeline.csv", rows)
    crash_figures = None
    if scenario.fault == "replica_kill":
        interval = target.settings.get("HEALTH_INTERVAL_S", str(Settings().health_interval_s))
        crash_figures = replica_crash.figures(
            records, window, crash_times, {m.key: group_of[m.key].name for m in modes},
            float(interval),
        )  # fmt: skip
    if scenario.fault == "shard_kill":
        shard_figures["load"] = shard_kill.load_figures(records, window, [m.key for m in modes])
    if scenario.fault in READ_REPLICA_FAULTS:
        replica_figures["load"] = shard_kill.load_figures(records, window, [m.key for m in modes])
    result = ScenarioResult(
        scenario, window, events, figures, losses, revocation, len(records), failover_figures,
        crash_figures, shard_figures if scenario.fault == "shard_kill" else None,
        replica_figures if scenario.fault in READ_REPLICA_FAULTS else None,
    )  # fmt: skip
    (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _inject(
    scenario: Scenario,
    target: Deployment,
    timing: Timing,
    events: dict[str, float],
    say: Progress,
    link: LinkChoice = PROXY_LINK,
) -> timeline.FaultWindow:
    fault_at = time.time()
    if scenario.fault in ("kill", "restart"):
        target.kill_redis()
        say(f"fault: redis-server SIGKILLed ({scenario.persistence} persistence)")
        if scenario.fault == "kill":
            _sleep_until(fault_at + timing.outage_s)
        restore_at = time.time()
        target.start_redis()  # returns once the new Redis answers PING
    elif scenario.fault == "pause":
        target.pause_redis()
        say("fault: redis-server SIGSTOPped")
        _sleep_until(fault_at + timing.outage_s)
        restore_at = time.time()
        target.resume_redis()
        target.wait_redis()
    elif scenario.fault == "slow" and link.via == NETEM:
        with NetemLink(redis_port(target)) as netem:  # removed on any exit, Ctrl-C too
            netem.set_rtt(2 * timing.slow_ms)
            say(f"fault: {timing.slow_ms:g} ms added each way on Redis's port (netem)")
            _sleep_until(fault_at + timing.outage_s)
            restore_at = time.time()
    elif scenario.fault == "slow":
        target.slow_redis(timing.slow_ms)
        say(f"fault: {timing.slow_ms:g} ms added each way on the Redis link")
        _sleep_until(fault_at + timing.outage_s)
        restore_at = time.time()
        target.slow_redis(0)
    elif scenario.fault == "kill_auth":
        target.kill_auth()
        say("fault: auth service SIGKILLed (Redis untouched)")
        _sleep_until(fault_at + timing.outage_s)
        restore_at = time.time()
        target.start_auth()  # returns once it answers /readyz
    elif scenario.fault == "pause_auth":
        target.pause_auth()
        say("fault: auth service SIGSTOPped (Redis untouched)")
        _sleep_until(fault_at + timing.outage_s)
        restore_at = time.time()
        target.resume_auth()
        target.start_auth()  # a resumed process: waits until it answers /readyz
    else:  # pragma: no cover - SCENARIOS is closed
        raise ValueError(scenario.fault)
    back_at = time.time()
    say(
        f"{_faulty(scenario)} back after {back_at - fault_at:.2f} s; "
        f"measuring recovery for {timing.after_s:g} s"
    )
    events.update(fault_at=fault_at, restore_at=restore_at, back_at=back_at)
    return timeline.FaultWindow(fault_at, restore_at, back_at)


def _faulty(scenario: Scenario) -> str:
    """What the scenario's fault hits, for progress lines."""
    return "auth service" if scenario.fault in AUTH_FAULTS else "redis"


AUTH_FAULTS = ("kill_auth", "pause_auth")


def _sleep_until(wall_clock: float) -> None:
    delay = wall_clock - time.time()
    if delay > 0:
        time.sleep(delay)
