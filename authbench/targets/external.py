"""ExternalTarget: a deployment that something else runs, measured by its URL only.

The `external` target (authbench.targets.base.Deployment): a Kubernetes cluster through
`kubectl port-forward`, a cloud load balancer, a compose stack on another host, or a
loopback `authbench up`. The harness starts, stops, scales and breaks nothing here:
`start()` checks the gateway answers /readyz (and probes what it can), `stop()` only
closes the sampling connection, and every fault raises `NotSupported`.

What it can still measure: Locust's figures at the gateway, and Redis INFO when the
operator gives a Redis address reachable from here (`--redis HOST:PORT`). What it cannot
control is listed by `uncontrolled()` and written into the run's manifest, so a reader
of the results knows which figures are the harness's and which are the deployment's.

    with ExternalTarget(Endpoints("http://127.0.0.1:8080", redis_address="127.0.0.1:6390")) as d:
        d.settings            # {"JWT_REVOCATION": "denylist"}: probed, not configured
        d.redis_info()        # INFO all, when a Redis address was given
        d.kill_redis()        # NotSupported
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis

from authbench.targets.base import Deployment, DeploymentError, NotSupported, http_status

TARGET = "external"


@dataclass(frozen=True)
class Endpoints:
    """Where an external deployment answers, as the operator gives it."""

    gateway_url: str
    auth_url: str | None = None  # None: the gateway's (it forwards /auth/*)
    redis_address: str | None = None  # host:port for INFO sampling; None: not sampled

    def __post_init__(self) -> None:
        for name in ("gateway_url", "auth_url"):
            url = getattr(self, name)
            if url is None:
                continue
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{name} must be an http(s) URL with a host, not {url!r}")
            object.__setattr__(self, name, url.rstrip("/"))
        if self.redis_address is not None:
            split_address(self.redis_address)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "gateway_url": self.gateway_url,
            "auth_url": self.auth_url,
            "redis_address": self.redis_address,
        }


def split_address(address: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as a pair; ValueError when it is not one."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"an address is HOST:PORT, not {address!r}")
    return host, int(port)


def uncontrolled(endpoints: Endpoints) -> list[str]:
    """What the harness cannot control or see on an external deployment, in words; the
    run's manifest carries this list."""
    notes = [
        "replica count: not scaled; the run's `replicas` is what the operator stated",
        "service settings (JWT_REVOCATION, DENYLIST_FAIL, JWT_ALG, ...): not set by the "
        "harness; JWT_REVOCATION is probed (log out, reuse the token), the rest is unknown",
        "restarts: the deployment is not restarted between groups, so state (sessions, "
        "refresh families, denylist entries) carries over from cell to cell",
        "Redis faults (kill, pause, restart, slow): not possible, so no chaos scenario runs",
        "CPU of the services and of Redis's host: not measured (no process or cgroup access)",
        "per-replica /metrics and readiness: not reachable (only the gateway is known)",
        "seeded accounts: the deployment must have seeded at least as many users as "
        "--accounts (AUTH_SEED_USERS); the harness cannot seed them",
    ]
    if endpoints.redis_address is None:
        notes.append("Redis INFO (ops/s, Redis CPU): not sampled, no --redis address given")
    return notes


@dataclass
class ExternalTarget(Deployment):
    """A running deployment at `endpoints`; see the module's docstring. Which bench modes
    it can be measured in is `check_modes`'s question, asked before a run starts."""

    target: ClassVar[str] = TARGET

    endpoints: Endpoints
    probe: bool = True  # probe JWT_REVOCATION at start (one login, logout and reuse)
    ready_timeout_s: float = 5.0
    _probed: dict[str, str] = field(default_factory=dict, init=False)
    _client: redis.Redis | None = field(default=None, init=False, repr=False)

    # --- life ---------------------------------------------------------------------------
    def start(self) -> None:
        status = http_status(f"{self.gateway_url}/readyz", timeout_s=self.ready_timeout_s)
        if status != 200:
            raise DeploymentError(
                f"the external deployment is not ready: {self.gateway_url}/readyz answered "
                f"{status if status is not None else 'nothing'}"
            )
        if self.probe:
            revocation = probe_revocation(self.gateway_url)
            if revocation is not None:
                self._probed["JWT_REVOCATION"] = revocation

    def stop(self) -> None:
        """Nothing was started: only the sampling connection is closed."""
        self.close()

    def describe(self) -> str:
        redis_part = f", Redis {self.redis_address}" if self.redis_address else ""
        return f"external deployment at {self.gateway_url}{redis_part} (not controlled)"

    # --- where it is --------------------------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return self.endpoints.gateway_url

    @property
    def auth_url(self) -> str:
        return self.endpoints.auth_url or self.endpoints.gateway_url

    @property
    def redis_address(self) -> str | None:
        return self.endpoints.redis_address

    @property
    def services_redis_url(self) -> str | None:
        return None  # what the services are given is the deployment's own business

    @property
    def settings(self) -> Mapping[str, str]:
        """Only what was probed: nothing here was configured by the harness."""
        return dict(self._probed)

    def uncontrolled(self) -> list[str]:
        return uncontrolled(self.endpoints)

    # --- what samplers read ---------------------------------------------------------------
    def redis_info(self) -> Mapping[str, Any]:
        if self.redis_address is None:
            raise NotSupported(self.target, "redis_info", "no Redis address was given")
        if self._client is None:
            host, port = split_address(self.redis_address)
            self._client = redis.Redis(
                host=host, port=port, socket_timeout=2.0, socket_connect_timeout=2.0
            )
        try:
            info: dict[str, Any] = self._client.info("all")
        except redis.RedisError as err:
            raise DeploymentError(f"redis INFO at {self.redis_address} failed: {err}") from err
        return info

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def probe_revocation(gateway_url: str) -> str | None:
    """JWT_REVOCATION as the deployment behaves: log in (JWT), log out, reuse the token.
    401: `denylist`; 200: `none`; None when the probe could not log in."""
    from authbench.bench.protocol import revocation_probe
    from authbench.modes import JWT

    status = revocation_probe(gateway_url, JWT.key)
    if status == 401:
        return "denylist"
    if status == 200:
        return "none"
    return None


def check_modes(endpoints: Endpoints, mode_keys: Sequence[str]) -> dict[str, str]:
    """The settings probed on the running deployment; ValueError when it is not ready, or
    when a mode asked for needs a JWT_REVOCATION it does not run (the harness cannot set
    it there, and a cell must never carry the label of a mode it did not measure)."""
    from authbench import modes

    target = ExternalTarget(endpoints)
    try:
        target.start()
    except DeploymentError as err:
        raise ValueError(str(err)) from err
    finally:
        target.stop()
    probed = dict(target.settings)
    if "JWT_REVOCATION" not in probed:
        raise ValueError(
            f"could not log in at {endpoints.gateway_url} as user0 to probe JWT_REVOCATION; "
            "the deployment must serve the contract's API with seeded users (AUTH_SEED_USERS)"
        )
    wrong = [key for key in mode_keys if not modes.get(key).served_by(probed)]
    if wrong:
        raise ValueError(
            f"the external deployment runs JWT_REVOCATION={probed['JWT_REVOCATION']} (probed: "
            "a logged-out token "
            f"{'is refused' if probed['JWT_REVOCATION'] == 'denylist' else 'still works'}), "
            f"so it cannot be measured as {', '.join(wrong)}; the harness cannot change its "
            "settings: leave those out of --modes"
        )
    return probed
