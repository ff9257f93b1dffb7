"""A soak run: every mode under steady mixed load for a long time, sampled as it goes.

The cluster is the chaos one (authbench.chaos.topology.ChaosCluster): every mode of the
registry side by side on one Redis and one auth service, each in its replica group. The
load is the chaos locustfile's users (one class per mode, the benchmark's users) through
the one Locust runner, with logins, refreshes and logouts switched on. Credential
lifetimes are shortened (`lifetime_s`) so every key family is created, renewed and
expired many times within the run: a leak shows in minutes, not days.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from authbench import modes
from authbench.bench import locust_runner
from authbench.chaos import probes
from authbench.chaos.load import LOCUSTFILE
from authbench.chaos.scenarios import modes_served
from authbench.chaos.topology import ChaosCluster
from authbench.process import PROJECT_ROOT
from authbench.provenance import new_run_id, run_head
from authbench.soak import charts
from authbench.soak.criteria import Bounds, Check, evaluate, failed
from authbench.soak.sampling import Sample, take_sample

LOADGEN = "loadgen"  # sampled for the record; not held to the bounds


@dataclass
class SoakConfig:
    duration_s: float = 1800.0
    interval_s: float = 60.0
    warmup_s: float | None = None  # None: a third of the run, at most 5 minutes
    lifetime_s: int = 60  # session idle timeout and access-token lifetime
    users_per_mode: int = 5
    user_rps: float = 2.0
    relogin_prob: float = 0.01
    refresh_prob: float = 0.05
    replicas: int = 1  # per replica group
    bounds: Bounds = field(default_factory=Bounds)
    results_dir: Path = PROJECT_ROOT / "results"
    run_id: str = ""

    @property
    def warmup(self) -> float:
        if self.warmup_s is not None:
            return self.warmup_s
        return min(self.duration_s / 3, 300.0)

    @property
    def accounts(self) -> int:
        return self.users_per_mode * len(modes.CHAOS_MODES)

    def settings_env(self) -> dict[str, str]:
        life = self.lifetime_s
        return {
            "AUTH_SEED_USERS": str(self.accounts + 2),
            "SESSION_IDLE_S": str(life),
            "SESSION_ABSOLUTE_S": str(4 * life),
            "JWT_TTL_S": str(life),
            "REFRESH_TTL_S": str(2 * life),
            "REFRESH_FAMILY_ABSOLUTE_S": str(4 * life),
            # session+cache renews a cached session's idle TTL at most this often; it must
            # stay below the idle timeout.
            "SESSION_CACHE_RENEW_S": f"{life / 4:g}",
        }

    @property
    def key_lifetime_s(self) -> float:
        """The longest a key written by one auth event can live: a spent refresh token
        (REFRESH_TTL_S), a revoked-family marker (the same), a denylisted jti (the access
        token's lifetime plus the leeway)."""
        return max(2.0 * self.lifetime_s, self.lifetime_s + 6.0)


class RecordCounter:
    """Reads the load's per-request records as they grow (never the whole file twice)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self.requests: Counter[str] = Counter()  # per mode
        self.failures: Counter[str] = Counter()
        self.reasons: Counter[tuple[str, str, str]] = Counter()  # mode, name, status/error

    def update(self) -> None:
        try:
            with self.path.open() as handle:
                handle.seek(self._offset)
                chunk = handle.read()
                self._offset = handle.tell()
        except OSError:
            return
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for row in csv.reader(lines):
            if len(row) < 6 or row[0] == "start":
                continue
            _start, mode, name, status, _latency, error = row[:6]
            self.requests[mode] += 1
            if not status.isdigit() or not 200 <= int(status) < 300:
                self.failures[mode] += 1
                self.reasons[(mode, name, error or f"HTTP {status}")] += 1


def run(config: SoakConfig, say: Callable[[str], None] = print) -> tuple[Path, list[Check]]:
    config.run_id = config.run_id or new_run_id("soak")
    run_dir = config.results_dir / config.run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    manifest: dict[str, Any] = {
        **run_head("soak", config.run_id),
        "settings": {
            **{k: v for k, v in asdict(config).items() if k not in ("results_dir", "bounds")},
            "warmup_s": config.warmup,
            "bounds": asdict(config.bounds),
            "cluster_env": config.settings_env(),
            "key_lifetime_s": config.key_lifetime_s,
            "modes": modes.keys(modes.CHAOS_MODES),
        },
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    workdir = Path(tempfile.mkdtemp(prefix="authbench-soak-"))
    records = workdir / "requests.csv"
    cluster = ChaosCluster(
        replicas=config.replicas, workdir=workdir, settings_env=config.settings_env()
    )
    samples: list[Sample] = []
    counter = RecordCounter(records)
    load: locust_runner.LocustProcess | None = None
    interrupted = False
    try:
        started = time.monotonic()
        cluster.start()
        say(f"{cluster.describe()} up in {time.monotonic() - started:.1f} s")
        served = modes_served(cluster)
        hosts = {mode.key: group.gateway_url for mode, group in served}
        session_gateway = hosts[modes.SESSION.key]
        waited = probes.wait_for_logins(session_gateway, config.accounts + 1)
        say(f"logins accepted after {waited:.1f} s (password hashes seeded)")
        users = config.users_per_mode * len(hosts)
        job = locust_runner.LocustJob(
            host=None,
            user_classes=tuple(modes.get(m).chaos_user.name for m in hosts),
            out_dir=workdir / "locust",
            locustfile=LOCUSTFILE,
            users=users,
            spawn_rate=users,
            run_time_s=config.duration_s + 120,  # a cap: the soak stops it itself
            pacing_s=round(1 / config.user_rps, 4),
            accounts=users,
            relogin_prob=config.relogin_prob,
            refresh_prob=config.refresh_prob,
            env={
                "CHAOS_RECORDS": str(records),
                "CHAOS_USERS_PER_MODE": str(config.users_per_mode),
                **{f"CHAOS_HOST_{modes.get(m).env_name}": url for m, url in hosts.items()},
            },
            html=False,
            csv=False,
            stop_timeout_s=2.0,
            loglevel="WARNING",
        )
        load = locust_runner.start(job)
        pids: dict[str, int | None] = {c.name: c.pid for c in cluster.all_children()}
        pids[LOADGEN] = load.pid
        client = redis.Redis(port=cluster.ports.redis, socket_timeout=10.0)
        t0 = time.monotonic()
        say(
            f"load running: {users} users ({config.users_per_mode} per mode, "
            f"{config.user_rps:g} req/s each) for {config.duration_s:.0f} s, a sample every "
            f"{config.interval_s:g} s, warm-up {config.warmup:.0f} s; writing {run_dir}"
        )
        next_at = t0
        while True:
            now = time.monotonic()
            if now >= next_at:
                counter.update()
                last = samples[-1].auth_events if samples else 0
                sample = take_sample(t0, pids, client, cluster.auth_url, last)
                samples.append(sample)
                say(_progress(sample))
                next_at += config.interval_s
            if now - t0 >= config.duration_s:
                break
            if not load.alive():
                say(f"! Locust exited early (code {load.popen.returncode}); see {job.out_dir}")
                break
            dead = [c.name for c in cluster.all_children() if not c.alive()]
            if dead:
                say(f"! {', '.join(dead)} died; stopping the soak")
                break
            time.sleep(min(1.0, max(0.05, next_at - time.monotonic())))
        client.close()
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: stopping everything started; keeping the samples taken")
    except BaseException:
        if not samples:  # nothing measured: leave no half-written run folder behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if load is not None:
            load.stop(grace_s=10.0)
        cluster.stop()
        counter.update()
        with_log = workdir / "locust" / "locust.log"
        if with_log.exists():
            shutil.copy(with_log, run_dir / "locust.log")
        shutil.rmtree(workdir, ignore_errors=True)

    checks = evaluate(
        [s for s in samples],
        config.warmup,
        config.bounds,
        config.accounts,
        config.key_lifetime_s,
        exclude=(LOADGEN,),
    )
    _write(run_dir, manifest, samples, checks, counter, config, interrupted)
    return run_dir, checks


def _progress(sample: Sample) -> str:
    rss = sum(r.rss_mb for name, r in sample.processes.items() if name != LOADGEN)
    keys = sample.redis.keys_total if sample.redis else "?"
    mem = f"{sample.redis.used_memory_mb:.2f} MB" if sample.redis else "?"
    return (
        f"  t={sample.t_s:6.0f} s  services RSS {rss:.1f} MB  Redis {mem}, {keys} keys  "
        f"auth events {sample.auth_events}"
    )


def _write(
    run_dir: Path,
    manifest: dict[str, Any],
    samples: list[Sample],
    checks: list[Check],
    counter: RecordCounter,
    config: SoakConfig,
    interrupted: bool,
) -> None:
    (run_dir / "samples.json").write_text(json.dumps([s.as_dict() for s in samples], indent=1))
    with (run_dir / "samples.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t_s", "series", "component", "value"])
        for s in samples:
            for name, reading in s.processes.items():
                writer.writerow([f"{s.t_s:.1f}", "rss_mb", name, f"{reading.rss_mb:.3f}"])
                writer.writerow([f"{s.t_s:.1f}", "fds", name, reading.fds])
            if s.redis is not None:
                writer.writerow([f"{s.t_s:.1f}", "used_memory_mb", "redis",
                                 f"{s.redis.used_memory_mb:.4f}"])  # fmt: skip
                writer.writerow([f"{s.t_s:.1f}", "keys_total", "redis", s.redis.keys_total])
                for prefix, count in s.redis.keys_by_prefix.items():
                    writer.writerow([f"{s.t_s:.1f}", "keys", prefix, count])
            writer.writerow([f"{s.t_s:.1f}", "auth_events", "load", s.auth_events])
    charts.draw_all(run_dir, samples, config.warmup, config.accounts, config.key_lifetime_s)
    manifest["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest["machine"]["loadavg_at_end"] = list(os.getloadavg())
    manifest["interrupted"] = interrupted
    manifest["passed"] = not failed(checks) and not interrupted
    manifest["checks"] = [c.as_dict() for c in checks]
    manifest["load"] = {
        "requests_per_mode": dict(counter.requests),
        "failures_per_mode": dict(counter.failures),
        "auth_events": samples[-1].auth_events if samples else 0,
        "failure_reasons": [
            {"mode": m, "name": n, "reason": r, "count": c}
            for (m, n, r), c in counter.reasons.most_common(20)
        ],
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    lines = [f"soak {config.run_id}: {'PASSED' if manifest['passed'] else 'FAILED'}", ""]
    lines += [c.line() for c in checks]
    lines += ["", "requests (failures) per mode:"]
    lines += [f"  {m}: {n} ({counter.failures.get(m, 0)})" for m, n in counter.requests.items()]
    (run_dir / "summary.txt").write_text("\n".join(lines) + "\n")
