"""ChaosLoad: steady Locust load of every mode, in a subprocess, recording each request.

Locust runs headless from loadtests/chaos_locustfile.py through the one Locust runner
(authbench.bench.locust_runner), in its own process (gevent must not share a process with
the asyncio services or this orchestrator). Its run time is a safety cap: the scenario
stops it with SIGTERM once the measurement is over, which Locust handles gracefully (its
test_stop hook closes the records CSV).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from authbench import modes
from authbench.bench import locust_runner

# Where the registry's chaos users live (one file: Locust runs them side by side).
(LOCUSTFILE,) = {mode.chaos_user.locustfile for mode in modes.CHAOS_MODES}


class LoadError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class LoadShape:
    users_per_mode: int = 4
    user_rps: float = 5.0
    client_timeout_s: float = 10.0

    @property
    def accounts(self) -> int:
        """Load users use accounts 0..accounts-1; probes use the ones after."""
        return self.users_per_mode * len(modes.CHAOS_MODES)


class ChaosLoad:
    def __init__(self, hosts: dict[str, str], shape: LoadShape, out_dir: Path, cap_s: float):
        """`hosts`: the gateway URL of each mode to load (mode key -> URL)."""
        self.records_path = out_dir / "requests.csv"
        self._ready = out_dir / ".locust-ready"
        users = shape.users_per_mode * len(hosts)
        self._job = locust_runner.LocustJob(
            host=None,  # each user class aims at its own mode's gateway (CHAOS_HOST_*)
            user_classes=tuple(modes.get(mode).chaos_user.name for mode in hosts),
            out_dir=out_dir,
            locustfile=LOCUSTFILE,
            users=users,
            spawn_rate=users,
            run_time_s=int(cap_s),
            # The benchmark users' options: constant arrival (pacing), reads only, each
            # user on an account of its own.
            pacing_s=round(1 / shape.user_rps, 4),
            accounts=users,
            relogin_prob=0.0,
            refresh_prob=0.0,
            env={
                "CHAOS_RECORDS": str(self.records_path),
                "CHAOS_READY_FILE": str(self._ready),
                "CHAOS_USERS_PER_MODE": str(shape.users_per_mode),
                "CHAOS_CLIENT_TIMEOUT_S": str(shape.client_timeout_s),
                **{f"CHAOS_HOST_{modes.get(mode).env_name}": url for mode, url in hosts.items()},
            },
            html=False,
            csv=False,
            stop_timeout_s=2.0,
            loglevel="WARNING",
        )
        self._process: locust_runner.LocustProcess | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start Locust and return once every user has been spawned."""
        self._ready.unlink(missing_ok=True)
        self._process = locust_runner.start(self._job)
        if not self._process.wait_file(self._ready, timeout_s):
            log = self._process.outputs.log
            if not self._process.alive():
                raise LoadError(f"locust exited at start; see {log}")
            self.stop()
            raise LoadError(f"locust did not spawn its users in time; see {log}")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._process is not None:
            self._process.stop(grace_s=timeout_s)
