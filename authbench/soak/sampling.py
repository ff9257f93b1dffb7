"""One soak sample: process memory and descriptors, Redis memory and keys.

Kept cheap so sampling itself does not disturb what it measures: psutil reads /proc, and
Redis is asked INFO plus one SCAN pass (COUNT 1000 a call) whose keys are grouped by
prefix; the TTL of at most `ttl_probe` of them is checked in one pipeline (a key with no
TTL is one that nothing will ever remove, but for the few meant to stay: PERMANENT_KEYS).
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil
import redis
from prometheus_client.parser import text_string_to_metric_families

from authcore.keystore import RING_KEY
from authcore.pushlist import STREAM_KEY

SCAN_COUNT = 1000
# Keys that live for ever on purpose: the shared signing keys (authcore.keystore) and
# the revocation stream of jwt+pushlist (authcore.pushlist; bounded by PUSHLIST_MAXLEN,
# its memory is in used_memory's slope).
PERMANENT_KEYS = frozenset({RING_KEY, STREAM_KEY})
AUTH_EVENT_ROUTES = ("/auth/login", "/auth/refresh", "/auth/logout")
_REQUESTS_COUNT = "authbench_http_request_duration_seconds_count"


def auth_events(auth_url: str, timeout_s: float = 5.0) -> int | None:
    """Logins, refreshes and logouts the auth service has answered so far (any status),
    from its own /metrics: exact at the moment of the sample. None when unreachable."""
    try:
        with urllib.request.urlopen(f"{auth_url}/metrics", timeout=timeout_s) as resp:  # noqa: S310
            text = resp.read().decode()
    except (OSError, ValueError):
        return None
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == _REQUESTS_COUNT and sample.labels.get("route") in AUTH_EVENT_ROUTES:
                total += sample.value
    return int(total)


def key_prefix(key: str) -> str:
    """The prefix a key's family shares: `s:<hash>` -> `s:`, `lf:u:user1` -> `lf:u:`.
    Leading segments of at most 3 characters are the prefix; the rest is the id."""
    parts = key.split(":")
    taken: list[str] = []
    for part in parts[:-1]:
        if len(part) > 3:
            break
        taken.append(part)
    return ":".join(taken) + ":" if taken else "(none)"


@dataclass(frozen=True)
class ProcessReading:
    rss_mb: float  # resident memory of the process and the workers it forked
    fds: int  # open file descriptors of the same tree


def read_process(pid: int) -> ProcessReading | None:
    """RSS and open descriptors of a process tree; None when it is gone."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    rss = 0
    fds = 0
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            rss += proc.memory_info().rss
            fds += proc.num_fds()
    return ProcessReading(rss / 1e6, fds)


@dataclass(frozen=True)
class RedisReading:
    used_memory_mb: float
    keys_total: int  # INFO keyspace, db0
    keys_by_prefix: dict[str, int]
    keys_without_ttl: int  # among the probed keys
    ttl_probed: int


def read_redis(client: redis.Redis, ttl_probe: int = 200) -> RedisReading:
    info: dict[str, Any] = client.info("memory")
    keyspace: dict[str, Any] = client.info("keyspace")
    db0 = keyspace.get("db0", {})
    by_prefix: Counter[str] = Counter()
    probe: list[Any] = []
    for raw in client.scan_iter(count=SCAN_COUNT):
        key = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        by_prefix[key_prefix(key)] += 1
        if len(probe) < ttl_probe and key not in PERMANENT_KEYS:
            probe.append(raw)
    without_ttl = 0
    if probe:
        pipe = client.pipeline(transaction=False)
        for probed in probe:
            pipe.ttl(probed)
        # -1: the key exists and has no expiry; -2: gone since the scan.
        without_ttl = sum(1 for ttl in pipe.execute() if ttl == -1)
    return RedisReading(
        used_memory_mb=int(info["used_memory"]) / 1e6,
        keys_total=int(db0.get("keys", 0)) if isinstance(db0, Mapping) else 0,
        keys_by_prefix=dict(sorted(by_prefix.items())),
        keys_without_ttl=without_ttl,
        ttl_probed=len(probe),
    )


@dataclass
class Sample:
    t_s: float  # seconds since the load started
    at_utc: float  # wall time
    processes: dict[str, ProcessReading] = field(default_factory=dict)
    redis: RedisReading | None = None
    auth_events: int = 0  # logins + refreshes + logouts the load has sent so far

    def as_dict(self) -> dict[str, Any]:
        return {
            "t_s": round(self.t_s, 2),
            "at_utc": round(self.at_utc, 3),
            "auth_events": self.auth_events,
            "processes": {
                name: {"rss_mb": round(r.rss_mb, 3), "fds": r.fds}
                for name, r in self.processes.items()
            },
            "redis": None
            if self.redis is None
            else {
                "used_memory_mb": round(self.redis.used_memory_mb, 4),
                "keys_total": self.redis.keys_total,
                "keys_by_prefix": self.redis.keys_by_prefix,
                "keys_without_ttl": self.redis.keys_without_ttl,
                "ttl_probed": self.redis.ttl_probed,
            },
        }


def take_sample(
    t0: float, pids: Mapping[str, int | None], client: redis.Redis, auth_url: str, last_events: int
) -> Sample:
    events = auth_events(auth_url)
    sample = Sample(
        t_s=time.monotonic() - t0,
        at_utc=time.time(),
        auth_events=last_events if events is None else events,
    )
    for name, pid in pids.items():
        if pid is not None and (reading := read_process(pid)) is not None:
            sample.processes[name] = reading
    with contextlib.suppress(redis.RedisError):
        sample.redis = read_redis(client)
    return sample
