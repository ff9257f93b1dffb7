"""The store axes of the bench and the knobs around them, each defined once.

- store distance, `--store-rtt MS[,MS…]`: a round trip added between every service and
  Redis, half each way, by netem on loopback (only Redis's port) where it works, else by
  the userspace delay proxy (authbench.delay_proxy); `--store-link` and
  authbench.store_link.choose decide which, once per run, and the manifest says why.
  Asking for any RTT brings its control pair along: `direct` (nothing in the path) and
  the link at 0 ms, so the link's own cost is a measured number;
- store capacity, `--redis-cpus F[,F…]`: a CPU quota for redis-server (a cgroup locally,
  see authbench.cgroups; `docker update --cpus` on the compose stack's Redis container);
- token size, `--token-bytes B[,B…]`: a `pad` claim of B characters in every access token
  (the auth service's ACCESS_TOKEN_PAD_BYTES);
- placement, `--pin`: the load generator on one core, the system under test on the others;
- access-token lifetime, `--jwt-ttl S[,S…]`: JWT_TTL_S of the modes that set one (jwt-short,
  whose load user refreshes before expiry): its revocation window, and its refresh cost.

Every parser raises ValueError naming its flag, so the CLI answers a bad value with one
clear line.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from authbench import cgroups
from authbench.store_link import NETEM, PROXY, NetemError, NetemLink
from authbench.targets.base import Deployment, DeploymentError
from authbench.targets.nginx import GATEWAYS
from authcore.config import VALIDATION_PLACES

DIRECT = "direct"  # nothing in the path: the services talk to Redis itself
DISTANT = (PROXY, NETEM)  # the store links that add a distance (authbench.store_link)
UNCAPPED_WORDS = ("none", "uncapped", "off")
MAX_RTT_MS = 1000.0  # beyond the services' Redis timeout anyway
MAX_TOKEN_PAD = 5000  # its token (~384 + 4/3 of it) fits an 8 KB header line


@dataclass(frozen=True, order=True)
class StoreLink:
    """How the services reach Redis: directly, or through a link adding `rtt_ms`: the
    delay proxy or netem (`via`, the run's choice, authbench.store_link.choose).
    `proxied` is true for either: the cell has a store distance, even at 0 ms."""

    proxied: bool = False
    rtt_ms: float = 0.0
    via: str = PROXY

    @property
    def kind(self) -> str:
        return self.via if self.proxied else DIRECT

    @property
    def one_way_ms(self) -> float:
        return self.rtt_ms / 2.0

    @property
    def label(self) -> str:
        return DIRECT if not self.proxied else f"rtt{self.rtt_ms:g}ms"


NO_PROXY = StoreLink()


def parse_store_rtts(text: str) -> tuple[StoreLink, ...]:
    """`0` (the default): direct. `1,5`: direct, proxy at 0 ms (the control), 1 and 5 ms.
    `direct` may be named; a number is a round trip in ms through the proxy."""
    links: list[StoreLink] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == DIRECT:
            links.append(NO_PROXY)
            continue
        try:
            rtt = float(part)
        except ValueError:
            raise ValueError(f"--store-rtt: {part!r} is not a number of ms (or 'direct')") from None
        if not 0.0 <= rtt <= MAX_RTT_MS:
            raise ValueError(f"--store-rtt: a round trip is 0 to {MAX_RTT_MS:g} ms, got {part}")
        links.append(StoreLink(True, rtt))
    if not links:
        raise ValueError("--store-rtt: give at least one value")
    if all(link.proxied and link.rtt_ms == 0 for link in links) and len(links) == 1:
        return (NO_PROXY,)  # the default `0`: today's direct link
    if any(link.proxied and link.rtt_ms > 0 for link in links):
        links += [NO_PROXY, StoreLink(True, 0.0)]  # the control pair, always measured
    return tuple(sorted(set(links)))


def parse_redis_cpus(text: str) -> tuple[float | None, ...]:
    """`none` (the default, uncapped) or cores > 0 (0.05 = 5% of one core)."""
    caps: list[float | None] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part in UNCAPPED_WORDS:
            caps.append(None)
            continue
        try:
            cores = float(part)
        except ValueError:
            raise ValueError(
                f"--redis-cpus: {part!r} is not a number of cores (or 'none')"
            ) from None
        caps.append(cgroups.validate_cores(cores))
    if not caps:
        raise ValueError("--redis-cpus: give at least one value")
    return tuple(dict.fromkeys(caps))


def parse_token_bytes(text: str) -> tuple[int, ...]:
    sizes: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            size = int(part)
        except ValueError:
            raise ValueError(f"--token-bytes: {part!r} is not a whole number of bytes") from None
        if not 0 <= size <= MAX_TOKEN_PAD:
            raise ValueError(f"--token-bytes: 0 to {MAX_TOKEN_PAD} bytes of padding, got {size}")
        sizes.append(size)
    if not sizes:
        raise ValueError("--token-bytes: give at least one value")
    return tuple(dict.fromkeys(sizes))


def parse_validate_at(text: str) -> tuple[str, ...]:
    """`--validate-at replica[,gateway]`: where credentials are checked (VALIDATE_AT), an
    axis: the replicas themselves, or the gateway once, with an identity assertion inward."""
    places = [p.strip() for p in text.split(",") if p.strip()]
    wrong = [p for p in places if p not in VALIDATION_PLACES]
    if wrong or not places:
        raise ValueError(
            f"--validate-at: comma-separated {' and/or '.join(VALIDATION_PLACES)}, not {text!r}"
        )
    return tuple(dict.fromkeys(places))


def parse_gateways(text: str) -> tuple[str, ...]:
    """`--gateway ours[,nginx]`: what answers at the gateway's address, an axis: ours, and/or
    Debian's nginx in its place (authbench.targets.nginx), side by side in one run."""
    gateways = [g.strip() for g in text.split(",") if g.strip()]
    wrong = [g for g in gateways if g not in GATEWAYS]
    if wrong or not gateways:
        raise ValueError(f"--gateway: comma-separated {' and/or '.join(GATEWAYS)}, not {text!r}")
    return tuple(dict.fromkeys(gateways))


MAX_JWT_TTL_S = 86400  # an access token living a day is not short-lived any more


def parse_jwt_ttls(text: str) -> tuple[int, ...]:
    """`--jwt-ttl S[,S…]`: access-token lifetimes in whole seconds (JWT_TTL_S) for the modes
    whose deployment sets one (authbench.modes.TTL_SETTING: jwt-short); "" = the mode's own."""
    ttls: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            ttl = int(part)
        except ValueError:
            raise ValueError(f"--jwt-ttl: {part!r} is not a whole number of seconds") from None
        if ttl <= 0:
            raise ValueError(
                f"--jwt-ttl: a TTL of {ttl} s would make every token expire at once; "
                "give 1 s or more"
            )
        if ttl > MAX_JWT_TTL_S:
            raise ValueError(f"--jwt-ttl: at most {MAX_JWT_TTL_S} s, got {ttl}")
        ttls.append(ttl)
    return tuple(dict.fromkeys(ttls))


def token_settings(pad_bytes: int) -> dict[str, str]:
    """The services' settings for a padded token: the pad, and limits that let it pass."""
    if pad_bytes <= 0:
        return {}
    max_bytes = max(4096, pad_bytes * 4 // 3 + 2048)
    return {
        "ACCESS_TOKEN_PAD_BYTES": str(pad_bytes),
        "JWT_MAX_BYTES": str(max_bytes),
    }


def check_redis_cpus_possible(target: str, caps: Sequence[float | None]) -> str:
    """How the quota is applied on this target; ValueError naming the flag when it cannot."""
    if all(cap is None for cap in caps):
        return "none"
    if target == "local":
        try:
            hierarchy = cgroups.detect()
        except cgroups.CgroupError as err:
            raise ValueError(str(err)) from err
        return f"cgroup v{hierarchy.version} ({hierarchy.cpu_parent})"
    if target == "compose":
        if shutil.which("docker") is None:
            raise ValueError("--redis-cpus with --target compose needs the docker CLI")
        return "docker update --cpus (the compose redis container, or each shard)"
    raise ValueError(f"--redis-cpus is not supported by target {target}")


# --- the store link as measured ---------------------------------------------------------
def ping_rtt_us(url: str, count: int = 20) -> float:
    """Median round trip of PING over one connection to `url` (the services' Redis URL,
    through the proxy when there is one): the store distance actually added."""
    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        client.ping()  # connect outside the timing
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            client.ping()
            samples.append((time.perf_counter() - started) * 1e6)
        return round(statistics.median(samples), 1)
    except redis.RedisError:
        return float("nan")
    finally:
        client.close()


# --- the Redis CPU quota on a running deployment ----------------------------------------
@dataclass
class RedisCap:
    """Holds redis-server of one deployment to a CPU quota (or none), cell by cell. On a
    cluster store (`--store cluster:N`) every shard gets a quota of its own, each of
    `cores`: N capped shards, the capped-store experiment scaled out; on a replicas store
    (`--store replicas:N`) so do the primary and each read replica."""

    deployment: Deployment
    name: str
    cores: float | None = None
    _quotas: list[cgroups.CpuQuota] = field(default_factory=list, init=False)

    def apply(self, cores: float | None) -> None:
        if cores == self.cores and (cores is None or self._quotas):
            return
        target = self.deployment.target
        if target == "local":
            self._apply_local(cores)
        elif target == "compose":
            self._apply_compose(cores)
        elif cores is not None:
            raise DeploymentError(f"--redis-cpus is not supported by target {target}")
        self.cores = cores

    def _apply_local(self, cores: float | None) -> None:
        pids = _redis_pids(self.deployment)
        if cores is None:
            self._remove_quotas()
            return
        if not self._quotas:
            for i, pid in enumerate(pids):
                name = self.name if len(pids) == 1 else f"{self.name}-node{i + 1}"
                quota = cgroups.CpuQuota.create(name, cores)
                self._quotas.append(quota)
                quota.attach(pid)
        else:
            for quota in self._quotas:
                quota.set_cores(cores)

    def _remove_quotas(self) -> None:
        for quota in self._quotas:
            quota.remove()
        self._quotas = []

    def _apply_compose(self, cores: float | None) -> None:
        containers = getattr(self.deployment, "containers", None)
        if containers is None:
            raise DeploymentError("--redis-cpus: the compose deployment lists no containers")
        # Every shard of the profile `cluster`, each with a quota of its own, as locally.
        services = getattr(self.deployment, "store_services", lambda: ("redis",))()
        # `--cpus 0` leaves a quota in place (checked: NanoCpus stays set), so no cap is
        # the whole machine's CPUs, which is what an uncapped container may use.
        cpus = cores if cores is not None else float(os.cpu_count() or 1)
        for container in (c for service in services for c in containers(service)):
            subprocess.run(
                ["docker", "update", "--cpus", f"{cpus:g}", container.id],
                capture_output=True, text=True, timeout=30, check=True,
            )  # fmt: skip

    def throttling(self) -> dict[str, float]:
        """Summed over the shards' quotas (one quota: its own numbers)."""
        total: dict[str, float] = {}
        for quota in self._quotas:
            for key, value in quota.throttling().items():
                total[key] = total.get(key, 0.0) + value
        return total

    def release(self) -> None:
        """Lift the cap and remove the group (the deployment may go on running)."""
        self._remove_quotas()
        if self.cores is not None and self.deployment.target == "compose":
            self._apply_compose(None)
        self.cores = None


def _redis_pids(deployment: Deployment) -> list[int]:
    """The redis-server to cap: the one Redis, every shard of a cluster store, or the
    primary and every read replica of a replicas store."""
    for attribute in ("cluster_store", "replica_store"):
        nodes = getattr(deployment, attribute, None)
        if nodes is not None:
            pids = list(nodes.processes().values())
            if len(pids) != len(nodes.ports):
                raise DeploymentError(f"--redis-cpus: a node of the {attribute} is not running")
            return pids
    child = getattr(deployment, "redis", None)
    pid = getattr(child, "pid", None)
    if not isinstance(pid, int):
        raise DeploymentError("--redis-cpus: redis-server is not running")
    return [pid]


# --- --pin: generator on one core, the system on the others -----------------------------
@dataclass(frozen=True)
class Placement:
    loadgen_cpus: tuple[int, ...]
    system_cpus: tuple[int, ...]

    @classmethod
    def split(cls, cpus: Iterable[int] | None = None) -> Placement:
        """The last CPU for the generator, the rest for the system (two CPUs at least)."""
        available = sorted(cpus if cpus is not None else os.sched_getaffinity(0))
        if len(available) < 2:
            raise ValueError(f"--pin needs at least 2 CPUs; this process may use {available}")
        return cls((available[-1],), tuple(available[:-1]))

    def pin_system(self, deployment: Deployment) -> list[int]:
        pids = [p for p in _deployment_pids(deployment)]
        if not pids:
            raise DeploymentError(f"--pin is not supported by target {deployment.target}")
        return cgroups.pin(pids, self.system_cpus)

    def pin_loadgen(self, pid: int) -> list[int]:
        return cgroups.pin([pid], self.loadgen_cpus)

    def as_dict(self) -> dict[str, Any]:
        return {"loadgen_cpus": list(self.loadgen_cpus), "system_cpus": list(self.system_cpus)}


def _deployment_pids(deployment: Deployment) -> list[int]:
    """Every local process of a deployment: Redis, the proxy, the services."""
    pids: list[int] = []
    for child in getattr(deployment, "all_children", lambda: [])():
        if isinstance(getattr(child, "pid", None), int):
            pids.append(child.pid)
    proxy = getattr(deployment, "proxy", None)
    process = getattr(proxy, "process", None)
    if process is not None and isinstance(getattr(process, "pid", None), int):
        pids.append(process.pid)
    return pids


# --- one group's axes, cell by cell ------------------------------------------------------
def credential_bytes(host: str, login: str, account: int = 0) -> int | None:
    """Size of the credential a client sends on every read: the session cookie's value or
    the access token, from one real login (None when the login fails)."""
    import json
    import urllib.request

    body = json.dumps(
        {"username": f"user{account}", "password": f"password{account}", "mode": login}
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the deployment under test
        host + "/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10.0) as resp:  # noqa: S310
            cookie = resp.headers.get("Set-Cookie", "")
            answer = json.loads(resp.read() or b"{}")
    except (OSError, ValueError):
        return None
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if isinstance(token, str) and token:
        return len(token.encode())
    value = cookie.split(";", 1)[0].partition("=")[2]
    return len(value.encode()) if value else None


@dataclass
class CellAxes:
    """What the store axes do around each cell of one deployment group.

    `before(cell)`: set the cell's store distance (the proxy's delay, or netem's, which
    the first cell installs and `close()` removes) and Redis's quota, measure the store's
    PING round trip over the services' own path (through the link when there is one),
    note the quota's throttling counters. `pin_loadgen(pid)`: --pin's generator
    side. `annotate(row)`: the axes' columns of the cell's summary row.
    """

    deployment: Deployment
    services_redis_url: str | None
    cap: RedisCap | None = None
    placement: Placement | None = None
    netem: NetemLink | None = None  # --store-link netem: Redis's port delayed on lo
    _ping_us: float = float("nan")
    _throttle: dict[str, float] = field(default_factory=dict)
    _credential_bytes: dict[str, int | None] = field(default_factory=dict)

    def before(self, cell: Any) -> None:
        if cell.store.proxied and cell.store.via == NETEM:
            if self.netem is None:
                raise DeploymentError("--store-link netem: this group has no netem link")
            try:  # installed at the group's first cell, changed at the next ones
                self.netem.set_rtt(cell.store.rtt_ms)
            except (NetemError, ValueError) as err:
                raise DeploymentError(str(err)) from err
        elif cell.store.proxied:  # the cell's store distance on the group's one proxy
            self.deployment.slow_redis(cell.store.one_way_ms)
            time.sleep(0.3)  # the proxy switches on a signal: let it land before the PING
        if self.cap is not None:
            self.cap.apply(cell.redis_cpus)
        elif cell.redis_cpus is not None:
            raise DeploymentError("--redis-cpus: this group has no Redis cap")
        self._throttle = self.cap.throttling() if self.cap is not None else {}
        self._ping_us = (
            ping_rtt_us(self.services_redis_url) if self.services_redis_url else float("nan")
        )
        login = str(cell.spec.login)
        if login not in self._credential_bytes:
            self._credential_bytes[login] = credential_bytes(self.deployment.gateway_url, login)

    def pin_loadgen(self, pid: int) -> None:
        if self.placement is not None:
            self.placement.pin_loadgen(pid)

    def annotate(self, row: Any, cell: Any) -> None:
        row.store_link = cell.store.kind
        row.store_rtt_ms = cell.store.rtt_ms
        row.store_ping_us = self._ping_us
        row.redis_cpus = cell.redis_cpus if cell.redis_cpus is not None else float("nan")
        row.token_bytes = cell.token_bytes
        row.credential_bytes = self._credential_bytes.get(str(cell.spec.login))
        if self.cap is not None and self._throttle:
            now = self.cap.throttling()
            periods = now.get("periods", 0.0) - self._throttle.get("periods", 0.0)
            held = now.get("throttled_periods", 0.0) - self._throttle.get("throttled_periods", 0)
            row.redis_throttled_pct = round(100.0 * held / periods, 1) if periods else 0.0
        if self.placement is not None:
            row.pinned = (
                f"loadgen:{','.join(map(str, self.placement.loadgen_cpus))} "
                f"system:{','.join(map(str, self.placement.system_cpus))}"
            )

    def close(self) -> None:
        """Undo the group's axes: lo's own qdisc back, Redis's quota lifted (both tried)."""
        try:
            if self.netem is not None:
                self.netem.remove()
        finally:
            if self.cap is not None:
                self.cap.release()
