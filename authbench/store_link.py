"""How the store distance is made: netem on loopback where it works, else the userspace
delay proxy (authbench.delay_proxy). Chosen once per run here (`choose`), used by the
bench's store-distance axis (authbench.bench.axes) and the chaos `slow` scenario.

netem: a `prio` root qdisc on `lo` with a fourth band that no packet priority maps to, a
`netem delay` child on that band, and two u32 filters sending into it only the IPv4
packets to and from Redis's port (`ip dport PORT`, `ip sport PORT`). So a request to Redis
waits half the round trip on the way in, its answer the other half on the way out, and
every other packet on `lo` (other agents' too) goes through the ordinary bands undelayed.
The qdisc tree is installed only when `lo`'s root qdisc is the kernel's default (handle
`0:`), and removed by its own handle, which brings that default back:

    tc qdisc del dev lo root handle ab1:

is the manual clean-up if a run was killed (SIGKILL) before it could remove it.

Where netem cannot be used (no `sch_netem`, `sch_prio` or `cls_u32`, not root, another
root qdisc on `lo`, or a target whose Redis is not on this host's loopback), `auto` falls
back to the proxy and says why; `--store-link netem` refuses to start, naming the flag.
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

NETEM = "netem"  # tc netem on lo, only Redis's port
PROXY = "proxy"  # the userspace delay proxy
AUTO = "auto"
CHOICES = (AUTO, PROXY, NETEM)
FLAG = "--store-link"

DEV = "lo"
ROOT_HANDLE = "ab1:"  # ours, so removal never deletes a qdisc somebody else installed
BAND = "ab1:4"  # prio's 4th band: the default priomap uses bands 1-3 only
NETEM_HANDLE = "ab2:"
# prio's default priomap (tc-prio(8)), spelled out so no priority lands in our band.
PRIOMAP = ("1", "2", "2", "2", "1", "2", "0", "0", "1", "1", "1", "1", "1", "1", "1", "1")
NETEM_LIMIT = "10000"  # packets held at once (netem's default, 1000, could drop at µs RTTs)
PROBE_PORT = 6399  # only ever used inside the probe's private network namespace


class NetemError(RuntimeError):
    """A tc command failed; the message names it and what tc said."""


def _delay(one_way_ms: float) -> str:
    return f"{round(one_way_ms * 1000)}us"


def install_commands(port: int, rtt_ms: float, dev: str = DEV) -> list[list[str]]:
    """The tc commands delaying TCP/IPv4 to and from `port` on `dev` by `rtt_ms` / 2 each
    way (a pure function: what `NetemLink` runs, and what the probe tries)."""
    if not 0 < port < 65536:
        raise ValueError(f"a TCP port is 1 to 65535, not {port}")
    if rtt_ms < 0:
        raise ValueError(f"a round trip is 0 ms or more, not {rtt_ms}")
    match = ["u32", "match", "ip"]
    return [
        ["tc", "qdisc", "add", "dev", dev, "root", "handle", ROOT_HANDLE, "prio",
         "bands", "4", "priomap", *PRIOMAP],
        ["tc", "qdisc", "add", "dev", dev, "parent", BAND, "handle", NETEM_HANDLE, "netem",
         "delay", _delay(rtt_ms / 2), "limit", NETEM_LIMIT],
        ["tc", "filter", "add", "dev", dev, "parent", ROOT_HANDLE, "protocol", "ip", "prio",
         "1", *match, "dport", str(port), "0xffff", "flowid", BAND],
        ["tc", "filter", "add", "dev", dev, "parent", ROOT_HANDLE, "protocol", "ip", "prio",
         "1", *match, "sport", str(port), "0xffff", "flowid", BAND],
    ]  # fmt: skip


def change_command(rtt_ms: float, dev: str = DEV) -> list[str]:
    """Set another round trip on the installed link (filters untouched)."""
    if rtt_ms < 0:
        raise ValueError(f"a round trip is 0 ms or more, not {rtt_ms}")
    return ["tc", "qdisc", "change", "dev", dev, "parent", BAND, "handle", NETEM_HANDLE,
            "netem", "delay", _delay(rtt_ms / 2), "limit", NETEM_LIMIT]  # fmt: skip


def remove_command(dev: str = DEV) -> list[str]:
    """Delete our root qdisc (only ours: the kernel checks the handle) with its child and
    filters; `dev` gets its default qdisc back."""
    return ["tc", "qdisc", "del", "dev", dev, "root", "handle", ROOT_HANDLE]


def run_tc(argv: list[str]) -> str:
    """Run one tc command; NetemError with tc's own message when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise NetemError(f"{shlex.join(argv)}: {err}") from err
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[:160]
        raise NetemError(f"{shlex.join(argv)}: {said or f'exit {done.returncode}'}")
    return done.stdout


_ROOT_QDISC = re.compile(r"^qdisc (\S+) (\S+) root", re.MULTILINE)


def root_qdisc(show_output: str) -> tuple[str, str] | None:
    """(kind, handle) of the root qdisc in `tc qdisc show dev X` output."""
    found = _ROOT_QDISC.search(show_output)
    return (found.group(1), found.group(2)) if found else None


def foreign_root_qdisc(dev: str = DEV, run: Callable[[list[str]], str] = run_tc) -> str | None:
    """What stands in the way of installing ours: a root qdisc on `dev` that is not the
    kernel's default (handle 0:), described; None when `dev` has the default."""
    root = root_qdisc(run(["tc", "qdisc", "show", "dev", dev]))
    if root is None or root[1] == "0:":
        return None
    return f"{dev} already has a root qdisc ({root[0]} {root[1]}); it is left alone"


@dataclass(eq=False)  # identity: atexit.unregister must find this link's own remove
class NetemLink:
    """netem on `dev` for Redis's `port`: `set_rtt(ms)` installs it (first call) or
    changes its delay; `remove()` takes it away (idempotent; also at interpreter exit)."""

    port: int
    dev: str = DEV
    run: Callable[[list[str]], str] = run_tc
    rtt_ms: float | None = field(default=None, init=False)

    def set_rtt(self, rtt_ms: float) -> None:
        if self.rtt_ms is not None:
            self.run(change_command(rtt_ms, self.dev))
            self.rtt_ms = rtt_ms
            return
        if busy := foreign_root_qdisc(self.dev, self.run):
            raise NetemError(f"{FLAG} netem: {busy}")
        commands = install_commands(self.port, rtt_ms, self.dev)
        self.run(commands[0])
        self.rtt_ms = rtt_ms  # the root is ours from here: remove() must take it away
        atexit.register(self.remove)
        try:
            for argv in commands[1:]:
                self.run(argv)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        if self.rtt_ms is None:
            return
        self.rtt_ms = None
        atexit.unregister(self.remove)
        self.run(remove_command(self.dev))

    def __enter__(self) -> NetemLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class HasRedis(Protocol):
    @property
    def redis_address(self) -> str | None: ...


def redis_port(deployment: HasRedis) -> int:
    """The port netem delays: the Redis the services talk to (host:port on loopback)."""
    address = deployment.redis_address
    if address is None:
        raise NetemError(f"{FLAG} netem: this deployment's Redis is not on this host")
    return int(address.rpartition(":")[2])


# --- which link this run uses ------------------------------------------------------------
def probe() -> str | None:
    """None when netem works here for our use; else why not. The very commands of
    `install_commands` are tried on the loopback of a private network namespace, so
    nobody's traffic is touched by the probe."""
    if shutil.which("tc") is None or shutil.which("unshare") is None:
        return "tc or unshare missing"
    if os.geteuid() != 0:
        return "not root (tc needs CAP_NET_ADMIN)"
    script = " && ".join(shlex.join(argv) for argv in install_commands(PROBE_PORT, 1.0))
    try:
        done = subprocess.run(
            ["unshare", "-n", "sh", "-c", script],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"probe failed ({err})"
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout).split())[:120]
        return f"tc netem fails on this kernel: {said or f'exit {done.returncode}'}"
    try:
        return foreign_root_qdisc()
    except NetemError as err:
        return str(err)


@dataclass(frozen=True)
class LinkChoice:
    """The store link of a run: `via` (netem or proxy) and why, for the manifest."""

    via: str
    reason: str

    def describe(self) -> str:
        return f"{self.via}: {self.reason}"


PROXY_LINK = LinkChoice(PROXY, "userspace delay proxy")  # what a config made in code uses


def choose(requested: str, target: str, probed: Callable[[], str | None] = probe) -> LinkChoice:
    """The one place the store link is chosen. `auto`: netem where it works (local target,
    root, the kernel has it, lo free), else the proxy with the reason; `netem`: ValueError
    naming the flag where it does not work; `proxy`: the proxy."""
    if requested not in CHOICES:
        raise ValueError(f"{FLAG}: choose from {', '.join(CHOICES)}, not {requested!r}")
    if requested == PROXY:
        return LinkChoice(PROXY, f"userspace delay proxy, as asked ({FLAG} proxy)")
    if target != "local":
        why: str | None = f"netem is only applied on the local target's loopback, not {target}"
    else:
        why = probed()
    if why is None:
        return LinkChoice(
            NETEM, f"tc netem on {DEV}, only Redis's port, half the round trip each way"
        )
    if requested == NETEM:
        raise ValueError(f"{FLAG} netem: not usable here: {why}")
    return LinkChoice(PROXY, f"userspace delay proxy, no netem here ({why})")
