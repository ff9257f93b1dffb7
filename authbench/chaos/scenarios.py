"""The chaos scenarios: one fault each, injected at a known moment under steady load.

Every scenario runs the same script on a fresh ChaosCluster (so no scenario inherits the
previous one's Redis):

1. start the cluster (and, for `slow`, the delay proxy in front of Redis);
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

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from authbench.chaos import probes, timeline
from authbench.chaos.load import ChaosLoad, LoadShape
from authbench.chaos.topology import MODES, ChaosCluster, ChaosPorts, free_port_base
from authbench.cluster import PROJECT_ROOT

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    fault: str  # kill | pause | restart | slow
    persistence: str  # none | aof
    title: str
    what: str


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
            "slow", "slow", "none", "Slow Redis (userspace delay proxy)",
            "Every byte between the services and Redis delayed by a userspace TCP proxy "
            "(netem is not available on this kernel); the delay is on during the outage.",
        ),
    )
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


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    replicas: int = 2
    shape: LoadShape = field(default_factory=LoadShape)
    timing: Timing = field(default_factory=Timing)
    planted_each: int = 10

    @property
    def seed_users(self) -> int:
        """Exactly the accounts a run uses: load users, revocation probes, planted ones
        (seeding more would only make the auth service busier at start)."""
        return self.shape.accounts + len(MODES) + 3 * self.planted_each


@dataclass(slots=True)
class ScenarioResult:
    scenario: Scenario
    window: timeline.FaultWindow
    events: dict[str, float]
    figures: dict[str, timeline.ModeFigures]
    losses: probes.Losses
    revocation: list[probes.RevocationWindow]
    records: int

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": asdict(self.scenario),
            "window": asdict(self.window),
            "events": self.events,
            "figures": {mode: asdict(f) for mode, f in self.figures.items()},
            "losses": asdict(self.losses),
            "revocation": [asdict(r) for r in self.revocation],
            "records": self.records,
        }


class DelayProxy:
    """The delay proxy as a child process (see authbench.chaos.delay_proxy)."""

    def __init__(self, listen: int, upstream: int, delay_ms: float, log_path: Path) -> None:
        self.listen = listen
        argv = [
            sys.executable, "-m", "authbench.chaos.delay_proxy",
            "--listen", f"127.0.0.1:{listen}", "--upstream", f"127.0.0.1:{upstream}",
            "--delay-ms", str(delay_ms),
        ]  # fmt: skip
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=str(PROJECT_ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def wait_listening(self, timeout_s: float = 10.0) -> None:
        import socket

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the delay proxy exited at start")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.listen)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the delay proxy did not listen in time")

    def delay(self, on: bool) -> None:
        self.process.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_scenario(
    scenario: Scenario, options: ChaosOptions, out_dir: Path, say: Progress
) -> ScenarioResult:
    """Run one scenario on a fresh local cluster; raw and derived data go to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    timing = options.timing
    workdir = Path(tempfile.mkdtemp(prefix=f"authbench-chaos-{scenario.name}-"))
    ports = ChaosPorts(free_port_base())
    cluster = ChaosCluster(
        replicas=options.replicas,
        workdir=workdir,
        redis_persistence=scenario.persistence,
        settings_env={"AUTH_SEED_USERS": str(options.seed_users)},
        chaos_ports=ports,
        via_proxy=scenario.fault == "slow",
    )
    proxy: DelayProxy | None = None
    load: ChaosLoad | None = None
    # The load may run past its cap only if this script hangs; then Locust stops itself.
    cap_s = 60 + timing.warmup_s + timing.outage_s + timing.after_s + 4 * timing.aof_margin_s
    events: dict[str, float] = {}
    try:
        if scenario.fault == "slow":
            proxy = DelayProxy(
                ports.proxy, ports.cluster.redis, timing.slow_ms, out_dir / "proxy.log"
            )
            proxy.wait_listening()
        started = time.monotonic()
        cluster.start()
        processes = len(cluster.all_children())
        say(f"cluster up in {time.monotonic() - started:.1f} s ({processes} processes)")
        waited = probes.wait_for_logins(cluster.gateway_url, options.seed_users - 1)
        say(f"logins accepted after {waited:.1f} s (password hashes seeded)")
        load = ChaosLoad(cluster, options.shape, out_dir, cap_s)
        load.start()
        events["load_started"] = time.time()
        say(f"load running: {options.shape.users_per_mode} users per mode")

        account = options.shape.accounts
        revocation = []
        for mode in MODES:
            revocation.append(
                probes.revocation_window(
                    cluster.mode_gateway_url(mode),
                    cluster.group_replica_urls(mode.group),
                    mode,
                    account,
                    timing.revocation_observe_s,
                )
            )
            account += 1
        say("revocation windows measured")
        planted = probes.plant(cluster, account, options.planted_each)
        events["last_acknowledged"] = planted.acknowledged_at
        say(f"planted {options.planted_each} sessions, refresh tokens and revoked JWTs")
        _sleep_until(events["load_started"] + timing.warmup_s)
        _sleep_until(planted.acknowledged_at + timing.aof_margin_s)

        window = _inject(scenario, cluster, proxy, timing, events, say)
        _sleep_until(window.back_at + timing.after_s)
        losses = probes.check_losses(cluster, planted, window.back_at)
        events["losses_checked"] = time.time()
        say(
            f"after: sessions lost {losses.sessions_lost}/{losses.planted_each}, refresh tokens "
            f"lost {losses.refresh_tokens_lost}, revoked JWTs valid again "
            f"{losses.revoked_valid_again}"
        )
    finally:
        if load is not None:
            load.stop()
        cluster.stop()
        if proxy is not None:
            proxy.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    records = timeline.read_records(out_dir / "requests.csv")
    modes = [m.key for m in MODES]
    figures = timeline.figures_by_mode(records, window, timing.hang_ms, modes)
    per_mode = timeline.buckets(records, window.fault_at)
    rows = timeline.timeline_rows(scenario.name, per_mode, timeline.failure_statuses(records))
    timeline.write_timeline(out_dir / "timeline.csv", rows)
    result = ScenarioResult(scenario, window, events, figures, losses, revocation, len(records))
    (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _inject(
    scenario: Scenario,
    cluster: ChaosCluster,
    proxy: DelayProxy | None,
    timing: Timing,
    events: dict[str, float],
    say: Progress,
) -> timeline.FaultWindow:
    fault_at = time.time()
    if scenario.fault in ("kill", "restart"):
        cluster.kill_redis()
        say(f"fault: redis-server SIGKILLed ({scenario.persistence} persistence)")
        if scenario.fault == "kill":
            time.sleep(timing.outage_s)
        events["restart_issued"] = time.time()
        cluster.start_redis(wait=True)  # returns once the new Redis answers PING
    elif scenario.fault == "pause":
        cluster.pause_redis()
        say("fault: redis-server SIGSTOPped")
        time.sleep(timing.outage_s)
        cluster.resume_redis()
        cluster.wait_redis()
    elif scenario.fault == "slow":
        assert proxy is not None
        proxy.delay(True)
        say(f"fault: {timing.slow_ms:g} ms added each way on the Redis link")
        time.sleep(timing.outage_s)
        proxy.delay(False)
    else:  # pragma: no cover - SCENARIOS is closed
        raise ValueError(scenario.fault)
    back_at = time.time()
    say(f"redis back after {back_at - fault_at:.2f} s; measuring recovery for {timing.after_s:g} s")
    events["fault_at"] = fault_at
    events["back_at"] = back_at
    return timeline.FaultWindow(fault_at, back_at)


def _sleep_until(wall_clock: float) -> None:
    delay = wall_clock - time.time()
    if delay > 0:
        time.sleep(delay)
