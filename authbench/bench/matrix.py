"""The experiment matrix: which cells a run measures, grouped by deployment, in what order.

A *mode* is what a reader compares (authbench.modes: its Locust user and the deployment
settings it needs). Two modes may share a Locust user and differ only in the deployment
(`JWT_REVOCATION`). Cells that share a deployment (the mode's settings, replicas, JWT
algorithm) share one cluster, so a run starts one cluster per *group*, not per cell.
Between repeats the order of groups and of cells inside each group is shuffled by a seeded
RNG (recorded in the manifest), so slow drift on a shared machine spreads over all modes
instead of favouring one.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from authbench import modes
from authbench.bench.axes import NO_PROXY, StoreLink
from authbench.modes import JWT_ALGORITHMS, Login, Mode, UserClass

# The bench's default modes; every bench mode may be asked for by name (--modes).
MODE_ORDER: tuple[str, ...] = tuple(modes.keys(m for m in modes.BENCH_MODES if m.bench_default))
BENCH_CHOICES: tuple[str, ...] = tuple(modes.keys(modes.BENCH_MODES))
JWT_ALGS = JWT_ALGORITHMS  # kept as the bench's name for the one list
Group = tuple[tuple[tuple[str, str], ...], int, str, bool, int, str, str]


@dataclass(frozen=True)
class Load:
    """A load level: `users` each starting a task every 1/rate s, or back to back (rate 0)."""

    users: int
    rate: float = 0.0  # tasks per second per user; 0 = closed loop

    @property
    def pacing_s(self) -> float:
        return 1.0 / self.rate if self.rate > 0 else 0.0

    @property
    def offered_rps(self) -> float:
        """Reads per second asked for (0 when closed loop: as many as the system gives)."""
        return self.users * self.rate

    @property
    def label(self) -> str:
        return f"{self.users}@{self.rate:g}" if self.rate > 0 else f"{self.users}"

    @classmethod
    def parse(cls, text: str) -> Load:
        """`20` (closed loop) or `20@15` (20 users, 15 tasks/s each: 300 reads/s offered)."""
        users_text, _, rate_text = text.strip().partition("@")
        users = int(users_text)
        rate = float(rate_text) if rate_text else 0.0
        if users < 1 or rate < 0:
            raise ValueError(f"bad load level {text!r}: users >= 1, rate >= 0")
        return cls(users, rate)


@dataclass(frozen=True)
class Cell:
    mode: str
    replicas: int
    load: Load
    jwt_alg: str
    repeat: int = 0
    # The store axes (authbench.bench.axes): how far Redis is, how much CPU it may use,
    # and how many bytes of padding an access token carries. Defaults: today's system.
    store: StoreLink = NO_PROXY
    redis_cpus: float | None = None  # cores; None = uncapped
    token_bytes: int = 0
    jwt_ttl_s: int | None = None  # --jwt-ttl: JWT_TTL_S of this cell (None: the mode's own)
    validate_at: str = "replica"  # --validate-at: VALIDATE_AT of this cell's deployment
    topology: str = "single"  # --store: the store topology (single, sentinel, cluster:N)
    gateway: str = "ours"  # --gateway: what answers at the gateway's address (ours, nginx)

    @property
    def spec(self) -> Mode:
        """The mode's registry record."""
        return modes.get(self.mode)

    @property
    def user_class(self) -> UserClass:
        user = self.spec.bench_user
        if user is None:
            raise ValueError(f"mode {self.mode} has no bench user")
        return user

    @property
    def revocation(self) -> str:
        return self.spec.revocation

    @property
    def deployment(self) -> dict[str, str]:
        """The settings the cluster of this cell runs with (the mode's, over the defaults;
        the cell's access-token lifetime on the --jwt-ttl axis)."""
        settings = dict(self.spec.settings)
        if self.jwt_ttl_s is not None:
            settings[modes.TTL_SETTING] = str(self.jwt_ttl_s)
        if self.validate_at != "replica":
            settings["VALIDATE_AT"] = self.validate_at  # edge validation (issue 15)
        return settings

    @property
    def ttl_s(self) -> int:
        """The access-token lifetime the cell's deployment issues (JWT_TTL_S)."""
        return int(self.deployment[modes.TTL_SETTING])

    @property
    def group(self) -> Group:
        """The deployment this cell needs: cells with the same group share a cluster. The
        Redis CPU quota and the proxy's delay are not part of it: both change on a running
        deployment, cell by cell; whether there is a proxy at all is."""
        return (
            tuple(sorted(self.deployment.items())),
            self.replicas,
            self.jwt_alg,
            self.store.proxied,
            self.token_bytes,
            self.topology,
            self.gateway,
        )

    @property
    def cell_id(self) -> str:
        """`r1-session-x1-u30at15-EdDSA`, plus a suffix per store axis away from its
        default: `-rtt5ms` (through the proxy), `-cpu0.05` (Redis quota), `-pad1000`,
        `-cluster3` (store topology), `-nginx` (the gateway)."""
        axes = ""
        if self.store.proxied:
            axes += f"-rtt{self.store.rtt_ms:g}ms"
        if self.redis_cpus is not None:
            axes += f"-cpu{self.redis_cpus:g}"
        if self.token_bytes:
            axes += f"-pad{self.token_bytes}"
        if self.jwt_ttl_s is not None:
            axes += f"-ttl{self.jwt_ttl_s}s"
        if self.validate_at != "replica":
            axes += f"-at-{self.validate_at}"
        if self.topology != "single":
            axes += f"-{self.topology.replace(':', '')}"
        if self.gateway != "ours":
            axes += f"-{self.gateway}"
        return (
            f"r{self.repeat + 1}-{self.spec.slug}-x{self.replicas}-"
            f"u{self.load.label.replace('@', 'at')}-{self.jwt_alg}{axes}"
        )

    def again(self, repeat: int) -> Cell:
        """The same configuration in another repeat."""
        return replace(self, repeat=repeat)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["load"] = self.load.label
        data["store"] = self.store.kind
        data["store_rtt_ms"] = self.store.rtt_ms
        data["cell_id"] = self.cell_id
        return data


@dataclass(frozen=True)
class Matrix:
    modes: tuple[str, ...]
    replicas: tuple[int, ...]
    loads: tuple[Load, ...]
    jwt_algs: tuple[str, ...]
    repeats: int = 1
    seed: int = 1
    store_links: tuple[StoreLink, ...] = (NO_PROXY,)
    redis_cpus: tuple[float | None, ...] = (None,)
    token_bytes: tuple[int, ...] = (0,)
    jwt_ttls: tuple[int, ...] = ()  # --jwt-ttl, for modes that set JWT_TTL_S (jwt-short)
    validate_at: tuple[str, ...] = ("replica",)  # --validate-at: VALIDATE_AT values
    stores: tuple[str, ...] = ("single",)  # --store: store topologies, side by side
    gateways: tuple[str, ...] = ("ours",)  # --gateway: ours and/or nginx, side by side
    # More matrices whose cells join this one's (a study of several axes that are not
    # crossed with each other, e.g. the `scaling` preset); repeats and seed are ours.
    also: tuple[Matrix, ...] = ()

    def configs(self) -> list[Cell]:
        """One cell per configuration (repeat 0). Sessions ignore the JWT algorithm and the
        token padding (a session cookie has a fixed size)."""
        cells: list[Cell] = []
        for mode in self.modes:
            signs = modes.get(mode).login is not Login.SESSION
            algs = self.jwt_algs if signs else self.jwt_algs[:1]
            pads = self.token_bytes if signs else self.token_bytes[:1]
            has_ttl = modes.TTL_SETTING in modes.get(mode).deployment
            ttls: tuple[int | None, ...] = self.jwt_ttls if has_ttl and self.jwt_ttls else (None,)
            for replicas in self.replicas:
                for load in self.loads:
                    for alg in algs:
                        for store in self.store_links:
                            for cpus in self.redis_cpus:
                                for pad in pads:
                                    for ttl in ttls:
                                        for place in self.validate_at:
                                            for topology in self.stores:
                                                for gateway in self.gateways:
                                                    cells.append(
                                                        Cell(
                                                            mode, replicas, load, alg, 0,
                                                            store, cpus, pad, ttl, place,
                                                            topology, gateway,
                                                        )
                                                    )  # fmt: skip
        for part in self.also:
            cells += part.configs()
        return list(dict.fromkeys(cells))  # a cell two parts share is measured once

    def with_stores(self, stores: tuple[str, ...]) -> Matrix:
        """This matrix (and each of its parts) on the store topologies `stores`."""
        parts = tuple(part.with_stores(stores) for part in self.also)
        return replace(self, stores=stores, also=parts)

    def with_gateways(self, gateways: tuple[str, ...]) -> Matrix:
        """This matrix (and each of its parts) through the gateways `gateways`."""
        parts = tuple(part.with_gateways(gateways) for part in self.also)
        return replace(self, gateways=gateways, also=parts)

    def with_link(self, via: str) -> Matrix:
        """This matrix (and each part) with its store distances made by `via` (netem or
        the proxy: the run's choice, authbench.store_link.choose); direct cells stay so."""
        links = tuple(replace(link, via=via) if link.proxied else link for link in self.store_links)
        parts = tuple(part.with_link(via) for part in self.also)
        return replace(self, store_links=links, also=parts)

    def schedule(self) -> list[list[Cell]]:
        """Groups of cells in run order: each inner list runs on one cluster."""
        rng = random.Random(self.seed)
        configs = self.configs()
        order: list[list[Cell]] = []
        for repeat in range(self.repeats):
            groups: dict[Group, list[Cell]] = {}
            for config in configs:
                cell = config.again(repeat)
                groups.setdefault(cell.group, []).append(cell)
            batch = list(groups.values())
            rng.shuffle(batch)
            for cells in batch:
                rng.shuffle(cells)
            order.extend(batch)
        return order

    @property
    def cell_count(self) -> int:
        return len(self.configs()) * self.repeats

    def as_dict(self) -> dict[str, Any]:
        return {
            "modes": list(self.modes),
            "replicas": list(self.replicas),
            "loads": [load.label for load in self.loads],
            "jwt_algs": list(self.jwt_algs),
            "store_rtt_ms": [link.label for link in self.store_links],
            "redis_cpus": [cpus if cpus is not None else "none" for cpus in self.redis_cpus],
            "token_bytes": list(self.token_bytes),
            "jwt_ttls": list(self.jwt_ttls),
            "validate_at": list(self.validate_at),
            "stores": list(self.stores),
            "gateways": list(self.gateways),
            "also": [part.as_dict() for part in self.also],
            "repeats": self.repeats,
            "seed": self.seed,
        }


def parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


ALL_MODES = "all"  # --modes all: every mode the bench can play, in report order


def validate_modes(names: Sequence[str]) -> tuple[str, ...]:
    if list(names) == [ALL_MODES]:
        return BENCH_CHOICES
    unknown = [m for m in names if m not in BENCH_CHOICES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {list(BENCH_CHOICES)}")
    return tuple(names)
