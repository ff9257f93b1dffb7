"""The modes a reader compares, each defined once: the one registry of the harness.

A *mode* is a way of authenticating that the bench, the chaos scenarios, the charts and
README name: how the load user logs in (`login`), what the deployment must run with
(`deployment`: settings such as `JWT_REVOCATION`), which Locust user class plays it in the
bench and in chaos, its colour on every chart, and the replica group chaos serves it from.
Adding a mode is one `Mode(...)` entry below plus its behaviour (server settings, a Locust
user class); everything else (matrix, topology, reports, locustfiles) reads it from here.
`tests/authbench/test_modes.py` fails when a mode's key or label is written as a literal elsewhere.

Locust user classes without importing Locust. A locustfile imports gevent-patched Locust,
which must never be imported by the harness (it runs asyncio, and gevent's monkey
patching breaks it). So a record holds a `UserClass`: the locustfile's module and the
class's name, which is what `locust -f FILE CLASS` needs, and `UserClass.load()` imports
the class itself, in a process where that is allowed (Locust's own, or a test, which
checks that every record resolves to a real class bound back to the same mode). Each
user class says which mode it plays (`mode = modes.SESSION`), so the binding is checked
in both directions. This module itself imports only the standard library, `authcore.config`
and `authcore.modes` (no aiohttp, no redis.asyncio), so locustfiles can import it too.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from authcore.config import ALGORITHMS, documented_settings
from authcore.modes import Login as Login  # what a load user logs in for (the contract's)

JWT_ALGORITHMS: tuple[str, ...] = ALGORITHMS  # the one list: what the services accept


@dataclass(frozen=True, slots=True)
class UserClass:
    """A Locust user class, named by its locustfile's module and its class name."""

    module: str  # e.g. "loadtests.locustfile"
    name: str

    @property
    def locustfile(self) -> Path:
        """The file to pass to `locust -f` (found without importing it)."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise LookupError(f"no module {self.module} for Locust user {self.name}")
        return Path(spec.origin)

    def load(self) -> type:
        """Import the class itself. This imports Locust (and gevent's patching): call it
        only in a Locust process or a test, never in the harness."""
        found = getattr(importlib.import_module(self.module), self.name, None)
        if not isinstance(found, type):
            raise LookupError(f"{self.module} has no class {self.name}")
        return found


BENCH_LOCUSTFILE = "loadtests.locustfile"
CHAOS_LOCUSTFILE = "loadtests.chaos_locustfile"


@dataclass(frozen=True, slots=True)
class Mode:
    """One mode. `key` names it in commands, file names and CSV columns; `label` in charts."""

    key: str
    label: str
    checks: str  # what a replica checks on each read, in a few words (reports)
    login: Login
    # Settings the deployment needs for this mode (on top of the defaults); {}: any.
    deployment: Mapping[str, str]
    color: str  # on every chart and in every report
    chaos_user: UserClass
    chaos_group: str  # chaos: the replica group (own gateway and replicas) serving it
    bench_user: UserClass | None = None  # None: not in the bench matrix (a chaos variant)
    store_on_read: bool = False  # every authenticated read asks the central store (Redis)
    store_role: str = ""  # what the store is to this mode, in a finding: "sessions"
    read_command: str = ""  # the Redis command each authenticated read sends ("": none)
    former_keys: tuple[str, ...] = ()  # its name in earlier runs' files, read back as this
    requires: tuple[str, ...] = ()  # settings a deployment must set (non-empty) to serve it
    bench_default: bool = True  # in `authbench bench`'s default modes (else: by --modes)
    settings: Mapping[str, str] = field(init=False)  # deployment over the defaults

    def __post_init__(self) -> None:
        object.__setattr__(self, "deployment", MappingProxyType(dict(self.deployment)))
        object.__setattr__(
            self, "settings", MappingProxyType({**DEPLOYMENT_DEFAULTS, **self.deployment})
        )

    @property
    def slug(self) -> str:
        """The key where `+` and friends cannot go: file names (`jwt-denylist`)."""
        return re.sub(r"[^a-z0-9]+", "-", self.key.lower()).strip("-")

    @property
    def env_name(self) -> str:
        """The key in an environment variable's name (`JWT_DENYLIST`)."""
        return self.slug.replace("-", "_").upper()

    @property
    def revocation(self) -> str:
        """`JWT_REVOCATION` of its deployment (a summary.csv column)."""
        return self.settings["JWT_REVOCATION"]

    def served_by(self, env: Mapping[str, str]) -> bool:
        """Whether a deployment running with `env` (over the defaults) serves this mode."""
        return all(
            env.get(k, DEPLOYMENT_DEFAULTS.get(k)) == v for k, v in self.deployment.items()
        ) and all(env.get(k) for k in self.requires)


# The settings a mode may ask for, with the services' own defaults (authcore.config).
_DEPLOYMENT_SETTINGS = ("JWT_REVOCATION", "DENYLIST_FAIL", "SESSION_CACHE", "JWT_TTL_S")
DEPLOYMENT_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {env: default for env, default, _doc in documented_settings() if env in _DEPLOYMENT_SETTINGS}
)

SESSION = Mode(
    key="session",
    label="session",
    checks="the session lives in Redis",
    login=Login.SESSION,
    deployment={},
    color="#1f77b4",
    bench_user=UserClass(BENCH_LOCUSTFILE, "SessionUser"),
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "SessionChaosUser"),
    chaos_group="main",
    store_on_read=True,
    store_role="sessions",
    read_command="GETEX",  # authcore.sessions: exactly one GETEX
)
JWT = Mode(
    key="jwt",
    label="jwt",
    checks="signature only",
    login=Login.JWT,
    deployment={"JWT_REVOCATION": "none"},
    color="#2ca02c",
    bench_user=UserClass(BENCH_LOCUSTFILE, "JwtUser"),
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "JwtChaosUser"),
    chaos_group="stateless",
)
JWT_DENYLIST = Mode(
    key="jwt+denylist",
    label="jwt+denylist",
    checks="signature plus a jti lookup, DENYLIST_FAIL=closed",
    login=Login.JWT,
    deployment={"JWT_REVOCATION": "denylist", "DENYLIST_FAIL": "closed"},
    color="#d62728",
    bench_user=UserClass(BENCH_LOCUSTFILE, "JwtUser"),
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "DenylistChaosUser"),
    chaos_group="main",
    store_on_read=True,
    store_role="a denylist",
    read_command="EXISTS",  # authcore.revocation: one EXISTS per check
    former_keys=("denylist",),
)
# Chaos only: the denylist failing open when Redis is down (the bench measures the
# denylist's cost, which is the same either way). The same login and store use as
# JWT_DENYLIST; only its failure policy, its name and where chaos serves it differ.
JWT_DENYLIST_OPEN = replace(
    JWT_DENYLIST,
    key="jwt+denylist-open",
    label="jwt+denylist(open)",
    checks="the same with DENYLIST_FAIL=open",
    deployment={**JWT_DENYLIST.deployment, "DENYLIST_FAIL": "open"},
    color="#ff7f0e",
    bench_user=None,
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "DenylistOpenChaosUser"),
    chaos_group="open",
    former_keys=("denylist_open",),
)

# Opaque tokens (RFC 7662): every read asks the auth service, which reads its Redis; the
# central hop moves from Redis to the auth service. Any deployment with an
# INTROSPECT_SECRET serves it (LocalCluster sets one); INTROSPECT_CACHE_S is its axis.
OPAQUE = Mode(
    key="opaque",
    label="opaque",
    checks="introspection at the auth service (RFC 7662)",
    login=Login.OPAQUE,
    deployment={},
    color="#9467bd",
    bench_user=UserClass(BENCH_LOCUSTFILE, "OpaqueUser"),
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "OpaqueChaosUser"),
    chaos_group="main",
    store_on_read=True,
    store_role="opaque tokens behind the auth service",
    read_command="GET",  # auth_service.introspection: one GET per introspection
    requires=("INTROSPECT_SECRET",),  # the replicas' client credential (compose: .env)
    bench_default=False,  # `authbench bench --modes all` or by name (README)
)

# Short-lived access tokens (issue 14): no store on the read path; the load user refreshes
# its token before it expires (POST /auth/refresh, rotating refresh token), so the price is
# refresh traffic on the auth service and Redis, and the revocation window is the TTL.
# JWT_TTL_S here is the default; the bench's `--jwt-ttl` axis sets it per cell.
JWT_SHORT = Mode(
    key="jwt-short",
    label="jwt-short",
    checks="signature only; the client refreshes before exp",
    login=Login.JWT,
    deployment={"JWT_REVOCATION": "none", "JWT_TTL_S": "30"},
    color="#17becf",
    bench_user=UserClass(BENCH_LOCUSTFILE, "JwtShortUser"),
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "JwtShortChaosUser"),
    chaos_group="short",  # its own auth service: tokens that live JWT_TTL_S, not 300 s
    bench_default=False,  # needs captures longer than its TTL: `--modes jwt-short --jwt-ttl`
)
TTL_SETTING = "JWT_TTL_S"  # the access-token lifetime: jwt's revocation window, the axis

# JWTs whose revocations are pushed to every replica (issue 14): the auth service appends
# each to a Redis Stream, every replica tails it into an in-memory set, so a read asks
# Redis nothing; past PUSHLIST_MAX_SILENCE_S without the stream it fails closed
# (authcore/pushlist.py).
JWT_PUSHLIST = Mode(
    key="jwt+pushlist",
    label="jwt+pushlist",
    checks="signature plus an in-memory revocation set pushed from a Redis Stream",
    login=Login.JWT,
    deployment={"JWT_REVOCATION": "pushlist"},
    color="#8c564b",
    bench_user=UserClass(BENCH_LOCUSTFILE, "PushlistUser"),
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "PushlistChaosUser"),
    chaos_group="pushlist",
    bench_default=False,  # `authbench bench --modes all` or by name (README)
)

# Sessions with a near cache on each replica (issue 14): a hit asks Redis nothing; Redis
# pushes every change of a session key to every replica (CLIENT TRACKING BCAST), and a
# replica whose channel drops flushes and asks Redis directly (authcore/session_cache.py).
SESSION_CACHE = Mode(
    key="session+cache",
    label="session+cache",
    checks="the session in a near cache, Redis pushes invalidations",
    login=Login.SESSION,
    deployment={"SESSION_CACHE": "1"},
    color="#6baed6",
    bench_user=UserClass(BENCH_LOCUSTFILE, "SessionCacheUser"),
    chaos_user=UserClass(CHAOS_LOCUSTFILE, "SessionCacheChaosUser"),
    chaos_group="cache",
    bench_default=False,  # `authbench bench --modes session,session+cache,...` (README)
)

MODES: tuple[Mode, ...] = (  # report order
    SESSION,
    SESSION_CACHE,
    JWT,
    JWT_DENYLIST,
    JWT_DENYLIST_OPEN,
    JWT_PUSHLIST,
    JWT_SHORT,
    OPAQUE,
)
BENCH_MODES: tuple[Mode, ...] = tuple(m for m in MODES if m.bench_user is not None)
CHAOS_MODES: tuple[Mode, ...] = MODES
_BY_NAME: dict[str, Mode] = {name: m for m in MODES for name in (m.key, *m.former_keys)}


def get(name: str) -> Mode:
    """The mode of a key (or of a former key, as written in earlier runs' files)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown mode {name!r}; known: {', '.join(keys(MODES))}") from None


def find(name: str) -> Mode | None:
    return _BY_NAME.get(name)


def keys(modes: Iterable[Mode]) -> list[str]:
    return [m.key for m in modes]


def rank(name: str) -> int:
    """Position in the report order; unknown names last."""
    mode = find(name)
    return MODES.index(mode) if mode is not None else len(MODES)


def color(name: str, default: str = "#7f7f7f") -> str:
    mode = find(name)
    return mode.color if mode is not None else default


def label(name: str) -> str:
    mode = find(name)
    return mode.label if mode is not None else name
