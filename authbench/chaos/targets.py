"""Where a scenario runs: a fresh local ChaosCluster, or the running docker compose stack.

A scenario needs the same few things from either: which modes it can load and through
which gateway, the replicas to ask directly (for the revocation window), the Redis
persistence, and the faults. LocalCluster and ComposeTarget already share the fault
methods' names (`kill_redis`, `pause_redis`, `resume_redis`, `start_redis`), so both
targets here mostly say which modes exist.

The compose stack is one deployment: one gateway, one `JWT_REVOCATION`, one
`DENYLIST_FAIL`, one Redis persistence. So against it the chaos run loads `session` plus
the one JWT mode the stack runs, skips the restart scenario whose persistence the stack
does not have and the slow scenario (its proxy would have to sit inside the compose
network), and measures revocation through the gateway only (replicas are not published).
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from authbench.chaos.delay_proxy import DelayProxy
from authbench.chaos.topology import BLOCK, ChaosCluster, ChaosPorts
from authbench.cluster import free_port_base
from authbench.compose import ComposeTarget
from authbench.modes import CHAOS_MODES, Mode


class FaultTarget(Protocol):
    modes: tuple[Mode, ...]
    persistence: str

    def gateway_for(self, mode: Mode) -> str: ...
    def replicas_for(self, mode: Mode) -> list[str] | None: ...
    def start(self) -> str: ...
    def stop(self) -> None: ...
    def kill_redis(self) -> None: ...
    def pause_redis(self) -> None: ...
    def resume_redis(self) -> None: ...
    def start_redis(self) -> None: ...
    def wait_redis(self) -> None: ...
    def slow_redis(self, on: bool) -> None: ...


class LocalChaosTarget:
    """A fresh ChaosCluster (every mode, each group with its own gateway) in a temp dir."""

    def __init__(
        self, replicas: int, persistence: str, seed_users: int, slow_ms: float | None, log_dir: Path
    ) -> None:
        self.modes: tuple[Mode, ...] = CHAOS_MODES
        self.persistence = persistence
        self._workdir = Path(tempfile.mkdtemp(prefix="authbench-chaos-"))
        ports = ChaosPorts(free_port_base(BLOCK))
        self.cluster = ChaosCluster(
            replicas=replicas,
            workdir=self._workdir,
            redis_persistence=persistence,
            settings_env={"AUTH_SEED_USERS": str(seed_users)},
            chaos_ports=ports,
            via_proxy=slow_ms is not None,
        )
        self._proxy: DelayProxy | None = None
        if slow_ms is not None:
            self._proxy = DelayProxy(
                ports.proxy, ports.cluster.redis, slow_ms, log_dir / "proxy.log"
            )

    def gateway_for(self, mode: Mode) -> str:
        return self.cluster.mode_gateway_url(mode)

    def replicas_for(self, mode: Mode) -> list[str] | None:
        return self.cluster.group_replica_urls(mode.chaos_group)

    def start(self) -> str:
        if self._proxy is not None:
            self._proxy.start()
        self.cluster.start()
        return f"local cluster of {len(self.cluster.all_children())} processes"

    def stop(self) -> None:
        self.cluster.stop()
        if self._proxy is not None:
            self._proxy.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def kill_redis(self) -> None:
        self.cluster.kill_redis()

    def pause_redis(self) -> None:
        self.cluster.pause_redis()

    def resume_redis(self) -> None:
        self.cluster.resume_redis()

    def start_redis(self) -> None:
        self.cluster.start_redis(wait=True)  # returns once the new Redis answers PING

    def wait_redis(self) -> None:
        self.cluster.wait_redis()

    def slow_redis(self, on: bool) -> None:
        if self._proxy is None:
            raise RuntimeError("this target was started without the delay proxy")
        self._proxy.delay(on)


class ComposeChaosTarget:
    """The running compose stack (started by `docker compose up` or ComposeTarget.up)."""

    def __init__(self, compose: ComposeTarget) -> None:
        self.compose = compose
        config = compose_config(compose)
        env = config["services"]["resource"].get("environment", {})
        settings = {name: str(value) for name, value in env.items()}
        self.modes: tuple[Mode, ...] = tuple(m for m in CHAOS_MODES if m.served_by(settings))
        command = [str(arg) for arg in config["services"]["redis"].get("command") or []]
        flags = dict(itertools.pairwise(command))
        self.persistence = "aof" if flags.get("--appendonly") == "yes" else "none"

    def gateway_for(self, mode: Mode) -> str:
        return self.compose.gateway_url

    def replicas_for(self, mode: Mode) -> list[str] | None:
        return None  # replicas are not published; the gateway is the only way in

    def start(self) -> str:
        if not self.compose.is_up():
            raise RuntimeError(
                f"the compose stack is not answering at {self.compose.gateway_url}/readyz; "
                "start it first: docker compose up -d --wait"
            )
        return f"compose project {self.compose.project_name} at {self.compose.gateway_url}"

    def stop(self) -> None:
        """Leave the stack running (it is the user's), with Redis running again."""
        states = {c.state for c in self.compose.containers("redis", all=True)}
        if "paused" in states:
            self.compose.resume_redis()
        elif "running" not in states:
            self.compose.start_redis(wait=True)

    def kill_redis(self) -> None:
        self.compose.kill_redis()

    def pause_redis(self) -> None:
        self.compose.pause_redis()

    def resume_redis(self) -> None:
        self.compose.resume_redis()

    def start_redis(self) -> None:
        self.compose.start_redis(wait=True)

    def wait_redis(self) -> None:
        self.compose.wait_redis()

    def slow_redis(self, on: bool) -> None:
        raise RuntimeError("the slow scenario runs on the local target only")


def compose_config(compose: ComposeTarget) -> dict[str, Any]:
    """The stack's resolved configuration (`docker compose config`): every variable as
    compose substitutes it, so the modes match what the containers were given."""
    config: dict[str, Any] = json.loads(compose.compose("config", "--format", "json").stdout)
    return config
