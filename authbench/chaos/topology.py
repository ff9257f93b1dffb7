"""ChaosCluster: every mode side by side on one Redis, so one fault hits them all at once.

JWT revocation is a deployment setting (`JWT_REVOCATION`), and so is the denylist's
policy when Redis is down (`DENYLIST_FAIL`). Running the scenario once per setting would
compare faults injected at different moments on different Redis instances; instead one
cluster holds a replica group (its own gateway and replicas) per setting, all sharing the
one Redis and the one auth service (which issues every token and writes the denylist on
logout):

| mode                 | gateway of group | replicas check                      |
| -------------------- | ---------------- | ----------------------------------- |
| `session`            | main             | the session in Redis                |
| `jwt`                | stateless        | the signature only                  |
| `jwt+denylist`       | main             | signature + jti, DENYLIST_FAIL=closed |
| `jwt+denylist(open)` | open             | signature + jti, DENYLIST_FAIL=open   |

The main group is LocalCluster's own (auth service with the denylist on, so logout
denylists the jti); the two extra groups are added to its plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authbench.cluster import Child, LocalCluster, Ports, free_port_base

BLOCK = 50  # ports of one chaos cluster, laid out below
MAX_REPLICAS = 10


@dataclass(frozen=True, slots=True)
class Mode:
    """One way of authenticating, and the group whose gateway serves it."""

    key: str  # used in file names and CSV columns
    label: str  # used in charts and tables
    group: str
    credential: str  # "session" or "jwt": what the load user logs in for


MODES: tuple[Mode, ...] = (
    Mode("session", "session", "main", "session"),
    Mode("jwt", "jwt", "stateless", "jwt"),
    Mode("denylist", "jwt+denylist", "main", "jwt"),
    Mode("denylist_open", "jwt+denylist(open)", "open", "jwt"),
)
MODE_BY_KEY = {mode.key: mode for mode in MODES}

# Settings of each extra group; the main group runs the cluster's own settings.
GROUP_ENV: dict[str, dict[str, str]] = {
    "stateless": {"JWT_REVOCATION": "none"},
    "open": {"JWT_REVOCATION": "denylist", "DENYLIST_FAIL": "open"},
}


@dataclass(frozen=True, slots=True)
class ChaosPorts:
    """The port layout of a block starting at `base` (see BLOCK)."""

    base: int

    @property
    def cluster(self) -> Ports:
        return Ports(
            gateway=self.base, auth=self.base + 1, resource_base=self.base + 10, redis=self.base + 2
        )

    @property
    def proxy(self) -> int:
        return self.base + 3

    def group_gateway(self, index: int) -> int:
        return self.base + 4 + index

    def group_resource_base(self, index: int) -> int:
        return self.base + 20 + 10 * index


@dataclass
class ChaosCluster(LocalCluster):
    """LocalCluster (the main group, denylist closed) plus the stateless and open groups.

    With `via_proxy`, every service reaches Redis through the delay proxy's port instead
    of Redis's own (the slow scenario); the proxy itself is started by the scenario.
    """

    chaos_ports: ChaosPorts = field(default_factory=lambda: ChaosPorts(free_port_base(BLOCK)))
    via_proxy: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be between 1 and {MAX_REPLICAS}")
        self.ports = self.chaos_ports.cluster
        self.settings_env = {
            **self.settings_env,
            "JWT_REVOCATION": "denylist",
            "DENYLIST_FAIL": "closed",
        }

    @property
    def services_redis_url(self) -> str:
        if self.via_proxy:
            return f"redis://127.0.0.1:{self.chaos_ports.proxy}/0"
        return self.redis_url

    def group_names(self) -> list[str]:
        return ["main", *GROUP_ENV]

    def group_gateway_url(self, group: str) -> str:
        if group == "main":
            return self.gateway_url
        index = list(GROUP_ENV).index(group)
        return f"http://127.0.0.1:{self.chaos_ports.group_gateway(index)}"

    def group_replica_urls(self, group: str) -> list[str]:
        if group == "main":
            return self.replica_urls()
        base = self.chaos_ports.group_resource_base(list(GROUP_ENV).index(group))
        return [f"http://127.0.0.1:{base + i}" for i in range(self.replicas)]

    def mode_gateway_url(self, mode: Mode) -> str:
        return self.group_gateway_url(mode.group)

    def plan(self) -> list[Child]:
        children = super().plan()
        for index, (group, env) in enumerate(GROUP_ENV.items()):
            urls = self.group_replica_urls(group)
            base = self.chaos_ports.group_resource_base(index)
            for i in range(self.replicas):
                children.append(
                    self._python_child(
                        f"{group}-resource-{i + 1}",
                        "resource_service",
                        base + i,
                        {**env, "REPLICA_ID": f"{group}-replica-{i + 1}"},
                    )
                )
            children.append(
                self._python_child(
                    f"{group}-gateway",
                    "gateway",
                    self.chaos_ports.group_gateway(index),
                    {**env, "RESOURCE_URLS": ",".join(urls)},
                )
            )
        for child in children:
            child.env["REDIS_URL"] = self.services_redis_url
        return children
