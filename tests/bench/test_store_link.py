"""The store link (authbench.store_link): the exact tc commands netem is made of, which
link a run uses and why, and netem itself where the kernel has it.

This machine's kernel has no sch_netem (nor sch_prio), so `auto` must fall back to the
proxy with the probe's reason and `--store-link netem` must be refused; the real netem test
runs only where `probe()` finds netem usable, in a private network namespace of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from authbench import store_link
from authbench.bench.axes import CellAxes, StoreLink
from authbench.bench.matrix import Load, Matrix
from authbench.process import PROJECT_ROOT
from authbench.store_link import NETEM, PROXY, LinkChoice, NetemError, NetemLink
from authbench.targets.base import Deployment, DeploymentError

PRIOMAP = "1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1".split()


def test_the_tc_commands_delay_only_the_port_half_the_rtt_each_way() -> None:
    assert store_link.install_commands(28005, 5.0) == [
        ["tc", "qdisc", "add", "dev", "lo", "root", "handle", "ab1:", "prio", "bands", "4",
         "priomap", *PRIOMAP],
        ["tc", "qdisc", "add", "dev", "lo", "parent", "ab1:4", "handle", "ab2:", "netem",
         "delay", "2500us", "limit", "10000"],
        ["tc", "filter", "add", "dev", "lo", "parent", "ab1:", "protocol", "ip", "prio", "1",
         "u32", "match", "ip", "dport", "28005", "0xffff", "flowid", "ab1:4"],
        ["tc", "filter", "add", "dev", "lo", "parent", "ab1:", "protocol", "ip", "prio", "1",
         "u32", "match", "ip", "sport", "28005", "0xffff", "flowid", "ab1:4"],
    ]  # fmt: skip
    assert store_link.install_commands(6390, 1.0)[1][11] == "500us"  # 0.5 ms each way
    assert store_link.install_commands(6390, 0.0)[1][11] == "0us"  # the control cell
    assert store_link.change_command(0.3) == [
        "tc", "qdisc", "change", "dev", "lo", "parent", "ab1:4", "handle", "ab2:", "netem",
        "delay", "150us", "limit", "10000",
    ]  # fmt: skip
    # Removal names our handle: the kernel refuses to delete a root qdisc that is not ours.
    assert store_link.remove_command() == ["tc", "qdisc", "del", "dev", "lo", "root",
                                           "handle", "ab1:"]  # fmt: skip
    for bad in (0, 65536):
        with pytest.raises(ValueError, match="port"):
            store_link.install_commands(bad, 1.0)
    with pytest.raises(ValueError, match="round trip"):
        store_link.install_commands(6390, -1.0)


def test_only_the_kernels_default_root_qdisc_is_replaced() -> None:
    assert store_link.root_qdisc("qdisc noqueue 0: root refcnt 2 \n") == ("noqueue", "0:")
    shown = "qdisc prio ab1: root refcnt 2 bands 4\nqdisc netem ab2: parent ab1:4 limit 10000\n"
    assert store_link.root_qdisc(shown) == ("prio", "ab1:")
    assert store_link.foreign_root_qdisc(run=lambda _argv: "qdisc noqueue 0: root refcnt 2") is None
    busy = store_link.foreign_root_qdisc(run=lambda _argv: "qdisc htb 1: root refcnt 2 r2q 10")
    assert busy is not None and "htb 1:" in busy


class Tc:
    """Records the tc commands a NetemLink runs (tc itself cannot run here: no netem)."""

    def __init__(self, root: str = "qdisc noqueue 0: root refcnt 2", fail_on: str = "") -> None:
        self.ran: list[list[str]] = []
        self.root = root
        self.fail_on = fail_on

    def __call__(self, argv: list[str]) -> str:
        self.ran.append(argv)
        if self.fail_on and self.fail_on in argv:
            raise NetemError(f"{' '.join(argv)}: Specified qdisc kind is unknown.")
        return self.root if argv[2] == "show" else ""


def test_the_link_is_installed_once_changed_per_cell_and_removed_once() -> None:
    tc = Tc()
    with NetemLink(28005, run=tc) as link:
        link.set_rtt(0.0)
        link.set_rtt(5.0)
    link.remove()  # idempotent: nothing more runs
    assert tc.ran == [
        ["tc", "qdisc", "show", "dev", "lo"],
        *store_link.install_commands(28005, 0.0),
        store_link.change_command(5.0),
        store_link.remove_command(),
    ]


def test_a_failed_install_takes_away_what_it_added_and_a_busy_lo_is_left_alone() -> None:
    tc = Tc(fail_on="netem")
    link = NetemLink(28005, run=tc)
    with pytest.raises(NetemError, match="unknown"):
        link.set_rtt(1.0)
    assert tc.ran[-1] == store_link.remove_command() and link.rtt_ms is None
    busy = Tc(root="qdisc htb 1: root refcnt 2 r2q 10")
    with pytest.raises(NetemError, match="--store-link netem: lo already has a root qdisc"):
        NetemLink(28005, run=busy).set_rtt(1.0)
    assert busy.ran == [["tc", "qdisc", "show", "dev", "lo"]]  # nothing added, nothing deleted


def test_bench_cells_install_change_and_remove_netem_on_their_group() -> None:
    """CellAxes, the bench's side: the first distant cell installs, the next changes, the
    group's close() removes, and a failure becomes the cell's DeploymentError."""

    class NoGateway:
        gateway_url = "http://127.0.0.1:9"  # refused at once: no credential size, no wait

    tc = Tc()
    axes = CellAxes(cast(Deployment, NoGateway()), None, netem=NetemLink(28005, run=tc))
    matrix = Matrix(("jwt",), (1,), (Load(5),), ("EdDSA",), store_links=(
        StoreLink(True, 0.0), StoreLink(True, 4.0))).with_link(NETEM)  # fmt: skip
    cells = sorted(matrix.configs(), key=lambda c: c.store.rtt_ms)
    assert [c.store.kind for c in cells] == [NETEM, NETEM]
    for cell in cells:
        axes.before(cell)
        row = SimpleNamespace()
        axes.annotate(row, cell)
        assert (row.store_link, row.store_rtt_ms) == (NETEM, cell.store.rtt_ms)  # the row says
    axes.close()
    assert tc.ran[1:] == [
        *store_link.install_commands(28005, 0.0),
        store_link.change_command(4.0),
        store_link.remove_command(),
    ]
    broken = CellAxes(cast(Deployment, NoGateway()), None,
                      netem=NetemLink(28005, run=Tc(fail_on="prio")))  # fmt: skip
    with pytest.raises(DeploymentError, match="unknown"):
        broken.before(cells[0])


def test_netem_cells_start_no_proxy_and_proxy_cells_do() -> None:
    from authbench.bench.protocol import Protocol
    from authbench.bench.runner import BenchConfig, deployment_for
    from authbench.targets.local import LocalCluster

    base = Matrix(("session",), (1,), (Load(5),), ("EdDSA",), store_links=(StoreLink(True, 2),))
    for via, delay in ((NETEM, None), (PROXY, 1.0)):
        config = BenchConfig(base.with_link(via), Protocol(), store_link=LinkChoice(via, "test"))
        cell = config.matrix.configs()[0]
        assert cell.store.kind == via and cell.cell_id.endswith("-rtt2ms")  # same id either way
        deployment = deployment_for(config, cell)
        assert isinstance(deployment, LocalCluster) and deployment.redis_delay_ms == delay


def test_auto_picks_what_the_probe_found_and_netem_is_refused_where_it_fails() -> None:
    found = store_link.probe()
    auto = store_link.choose("auto", "local")
    if found is None:
        assert auto.via == NETEM
    else:  # this machine: no netem in the kernel
        assert auto.via == PROXY and found in auto.reason and "no netem here" in auto.reason
        with pytest.raises(ValueError, match=r"^--store-link netem: not usable here: ") as err:
            store_link.choose("netem", "local")
        assert found in str(err.value)
    # Not the local target: the proxy, whatever the kernel; netem refused, naming the flag.
    compose = store_link.choose("auto", "compose", probed=lambda: None)
    assert compose.via == PROXY and "local target" in compose.reason
    with pytest.raises(ValueError, match="--store-link netem"):
        store_link.choose("netem", "compose", probed=lambda: None)
    assert store_link.choose("netem", "local", probed=lambda: None).via == NETEM
    assert store_link.choose("proxy", "local", probed=lambda: None).via == PROXY
    with pytest.raises(ValueError, match="--store-link: choose from auto, proxy, netem"):
        store_link.choose("tc", "local")


def test_the_bench_records_the_link_and_why_in_its_manifest() -> None:
    from authbench.bench.runner import build_manifest
    from authbench.cli import build_parser
    from authbench.commands.bench import build_config

    args = build_parser().parse_args(["bench", "--modes", "jwt", "--store-rtt", "1"])
    config = build_config(args)
    settings = build_manifest(config, config.matrix.schedule())["settings"]
    found = store_link.probe()
    via = NETEM if found is None else PROXY
    assert settings["store_link_via"] == via == config.store_link.via
    assert found is None or found in settings["store_link"]
    assert {c.store.kind for c in config.matrix.configs()} == {"direct", via}


def test_asking_for_netem_where_it_fails_is_one_line_naming_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from authbench import cli

    found = store_link.probe()
    if found is None:
        pytest.skip("netem works here: the refusal cannot be shown")
    assert cli.main(["bench", "--store-link", "netem", "--store-rtt", "1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"authbench bench: --store-link netem: not usable here: {found}"]


def test_chaos_slow_uses_the_same_choice(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The chaos `slow` scenario takes its link from the same `choose`: no proxy in a
    netem cluster, the proxy otherwise; `--store-link netem` refused before anything runs."""
    from authbench import cli
    from authbench.chaos.run import build_manifest
    from authbench.chaos.scenarios import ALL_SCENARIOS, ChaosOptions, fresh_cluster
    from authbench.targets.local import LocalCluster

    slow = ALL_SCENARIOS["slow"]
    for via, delay in ((NETEM, None), (PROXY, 5.0)):
        options = ChaosOptions(store_link=LinkChoice(via, "test"))
        with fresh_cluster(slow, options, tmp_path) as cluster:  # made, never started
            assert isinstance(cluster, LocalCluster) and cluster.redis_delay_ms == delay
        settings = build_manifest("x", options, [slow], "local")["settings"]
        assert (settings["store_link_via"], settings["store_link"]) == (via, "test")
    found = store_link.probe()
    if found is not None:
        assert cli.main(["chaos", "--scenarios", "slow", "--store-link", "netem"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"authbench chaos: --store-link netem: not usable here: {found}"]


# --- netem for real, where the kernel has it --------------------------------------------
_REAL = r"""
import json, shutil, statistics, subprocess, sys, time
import redis
from authbench.store_link import NetemLink, run_tc

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
servers = [subprocess.Popen([shutil.which("redis-server"), "--port", str(p), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
           for p in (26101, 26102)]
def ping_ms(port):
    c = redis.Redis(port=port, socket_timeout=5)
    for _ in range(100):
        try:
            c.ping(); break
        except redis.ConnectionError:
            time.sleep(0.05)
    samples = []
    for _ in range(15):
        t = time.perf_counter(); c.ping(); samples.append((time.perf_counter() - t) * 1e3)
    c.close()
    return statistics.median(samples)
out = {"before": ping_ms(26101)}
try:
    with NetemLink(26101) as link:
        link.set_rtt(20.0)
        out["at20"], out["other_port"] = ping_ms(26101), ping_ms(26102)
        link.set_rtt(6.0)
        out["at6"] = ping_ms(26101)
    out["after"] = ping_ms(26101)
    out["root"] = run_tc(["tc", "qdisc", "show", "dev", "lo"])
finally:
    for s in servers:
        s.terminate()
print(json.dumps(out))
"""


def test_netem_delays_only_redis_port_and_is_removed_for_real() -> None:
    """Runs where netem works (root, sch_netem/sch_prio/cls_u32), in a private network
    namespace, so no other traffic on this host's loopback is ever delayed by the test."""
    found = store_link.probe()
    if found is not None:
        pytest.skip(f"no netem here: {found}")
    if shutil.which("redis-server") is None or shutil.which("ip") is None:
        pytest.skip("redis-server or ip missing")
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", _REAL],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert 19.0 <= got["at20"] <= 40.0, got  # 10 ms each way
    assert 5.5 <= got["at6"] <= 20.0, got  # changed in place
    assert got["other_port"] < 5.0, got  # another port on lo is not delayed
    assert got["after"] < 5.0, got  # removed
    assert store_link.root_qdisc(got["root"]) == ("noqueue", "0:"), got  # lo's own qdisc back
