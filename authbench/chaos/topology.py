"""ChaosCluster: every mode side by side on one Redis, so one fault hits them all at once.

JWT revocation is a deployment setting (`JWT_REVOCATION`), and so is the denylist's
policy when Redis is down (`DENYLIST_FAIL`). Running the scenario once per setting would
compare faults injected at different moments on different Redis instances; instead one
cluster holds a replica group (its own gateway and replicas) per deployment, all sharing
the one Redis and the one auth service (which issues every token and writes the denylist
on logout). Each mode of the registry (authbench.modes) names its group (`chaos_group`)
and the settings it needs (`deployment`); a group runs the settings of its modes:

| mode                 | group     | replicas check                        |
| -------------------- | --------- | ------------------------------------- |
| `session`            | main      | the session in Redis                  |
| `jwt`                | stateless | the signature only                    |
| `jwt+denylist`       | main      | signature + jti, DENYLIST_FAIL=closed |
| `jwt+denylist(open)` | open      | signature + jti, DENYLIST_FAIL=open   |

(and the hybrids' groups: see each mode's `chaos_group`). A group whose modes set what the
auth service reads when it issues a token (AUTH_SETTINGS: jwt-short's JWT_TTL_S) has an
auth service of its own as well, behind its own gateway.

The main group is LocalCluster's own (auth service with the denylist on, so logout
denylists the jti); the other groups are added to its plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authbench.modes import CHAOS_MODES
from authbench.process import free_port_block
from authbench.targets.local import Child, LocalCluster, Ports

MAX_REPLICAS = 10
MAIN_GROUP = "main"  # the group LocalCluster itself runs


def _group_settings() -> dict[str, dict[str, str]]:
    """Each group's settings: the union of what its modes need (a conflict is a bug)."""
    groups: dict[str, dict[str, str]] = {}
    for mode in CHAOS_MODES:
        env = groups.setdefault(mode.chaos_group, {})
        for name, value in mode.deployment.items():
            if env.setdefault(name, value) != value:
                raise ValueError(f"chaos group {mode.chaos_group}: modes disagree on {name}")
    return groups


GROUP_SETTINGS = _group_settings()
# One auth service serves every group: when a group's replicas read the pushed revocation
# set (jwt+pushlist), that auth service must append to its stream whatever its own
# JWT_REVOCATION is (authcore/pushlist.py).
if any(mode.revocation == "pushlist" for mode in CHAOS_MODES):
    GROUP_SETTINGS[MAIN_GROUP]["PUSHLIST_PUBLISH"] = "1"
# Settings of each extra group; the main group runs the cluster's own settings.
GROUP_ENV: dict[str, dict[str, str]] = {
    group: env for group, env in GROUP_SETTINGS.items() if group != MAIN_GROUP
}
# Settings the auth service itself reads when it issues a token. A group whose modes set
# one (jwt-short's JWT_TTL_S) gets an auth service of its own with them, behind its own
# gateway, so its tokens really live that long; the signing keys are the shared ring in
# Redis (authcore/keystore.py), so every replica of every group verifies every token.
AUTH_SETTINGS = ("JWT_TTL_S",)
OWN_AUTH = [group for group, env in GROUP_ENV.items() if any(k in env for k in AUTH_SETTINGS)]


@dataclass(frozen=True, slots=True)
class ChaosPorts:
    """The port layout of a block (authbench.process.PORT_BLOCK ports) from `base`."""

    base: int

    @property
    def cluster(self) -> Ports:
        return Ports(
            gateway=self.base,
            auth=self.base + 1,
            resource_base=self.base + 10,
            redis=self.base + 2,
            redis_proxy=self.proxy,
            gateway_admin=self.base + 9,  # group gateways take base+4…, at most 5 groups
        )

    @property
    def proxy(self) -> int:
        return self.base + 3

    def group_gateway(self, index: int) -> int:
        return self.base + 4 + index

    def group_resource_base(self, index: int) -> int:
        return self.base + 20 + 10 * index

    def group_auth(self, index: int) -> int:
        """The auth service of a group with its own (OWN_AUTH), after the groups' replicas."""
        return self.base + 20 + 10 * len(GROUP_ENV) + index


@dataclass
class ChaosCluster(LocalCluster):
    """LocalCluster (the main group, denylist closed) plus the stateless and open groups.

    With `redis_delay_ms` (LocalCluster's), every service of every group reaches Redis
    through the delay proxy (the slow scenario).
    """

    chaos_ports: ChaosPorts = field(
        # the main group's ports and replicas (20), 10 ports per extra group, then one
        # per group auth service
        default_factory=lambda: ChaosPorts(
            free_port_block(20 + 10 * len(GROUP_ENV) + len(OWN_AUTH))
        )
    )

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ValueError(f"replicas must be between 1 and {MAX_REPLICAS}")
        self.ports = self.chaos_ports.cluster
        self.settings_env = {**self.settings_env, **GROUP_SETTINGS[MAIN_GROUP]}

    def group_replica_urls(self, group: str) -> list[str]:
        if group == MAIN_GROUP:
            return self.replica_urls()
        base = self.chaos_ports.group_resource_base(list(GROUP_ENV).index(group))
        return [f"http://127.0.0.1:{base + i}" for i in range(self.replicas)]

    def plan(self) -> list[Child]:
        children = super().plan()
        for index, (group, env) in enumerate(GROUP_ENV.items()):
            urls = self.group_replica_urls(group)
            base = self.chaos_ports.group_resource_base(index)
            if group in OWN_AUTH:
                auth_port = self.chaos_ports.group_auth(OWN_AUTH.index(group))
                children.append(self._python_child(f"{group}-auth", "auth_service", auth_port, env))
                env = {**env, "AUTH_URL": f"http://127.0.0.1:{auth_port}"}
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
        return children
