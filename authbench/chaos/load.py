"""ChaosLoad: steady Locust load of every mode, in a subprocess, recording each request.

Locust runs headless from loadtests/chaos_locustfile.py in its own process (gevent must
not share a process with the asyncio services or this orchestrator). Its run time is a
safety cap: the scenario stops it with SIGTERM once the measurement is over, which Locust
handles gracefully (its test_stop hook closes the records CSV).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from authbench import modes
from authbench.cluster import PROJECT_ROOT

LOCUSTFILE = PROJECT_ROOT / "loadtests" / "chaos_locustfile.py"


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
        self._log_path = out_dir / "locust.log"
        self._hosts = hosts
        self._shape = shape
        self._cap_s = cap_s
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start Locust and return once every user has been spawned."""
        shape = self._shape
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(
            PYTHONPATH=str(PROJECT_ROOT),
            CHAOS_RECORDS=str(self.records_path),
            CHAOS_READY_FILE=str(self._ready),
            CHAOS_USERS_PER_MODE=str(shape.users_per_mode),
            CHAOS_CLIENT_TIMEOUT_S=str(shape.client_timeout_s),
        )
        for mode, url in self._hosts.items():
            env[f"CHAOS_HOST_{modes.get(mode).env_name}"] = url
        users = shape.users_per_mode * len(self._hosts)
        argv = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--users", str(users), "--spawn-rate", str(users),
            "--run-time", f"{int(self._cap_s)}s", "--stop-timeout", "2",
            "--only-summary", "--loglevel", "WARNING",
            # The benchmark users' options: constant arrival (pacing), reads only, each
            # user on an account of its own.
            "--pacing", f"{1 / shape.user_rps:.4f}", "--relogin-prob", "0",
            "--refresh-prob", "0", "--accounts", str(users),
            *(modes.get(mode).chaos_user.name for mode in self._hosts),
        ]  # fmt: skip
        self._ready.unlink(missing_ok=True)
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                argv,
                env=env,
                cwd=str(PROJECT_ROOT),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while not self._ready.exists():
            if self._process.poll() is not None:
                raise LoadError(f"locust exited at start; see {self._log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise LoadError(f"locust did not spawn its users in time; see {self._log_path}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 15.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
