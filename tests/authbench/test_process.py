"""authbench.process: children die with the harness, stop() ends their whole group, ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from authbench import process
from authbench.process import PROJECT_ROOT, free_port_block, port_block_free


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_spawned_child_dies_when_its_parent_is_sigkilled(tmp_path: Path) -> None:
    # A stand-in for the harness: it spawns a long sleep, says its PID, then waits.
    script = (
        "import sys, time; from pathlib import Path; from authbench import process; "
        f"p = process.spawn(['sleep', '60'], Path({str(tmp_path / 'sleep.log')!r})); "
        "print(p.pid, flush=True); time.sleep(60)"
    )
    harness = subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert harness.stdout is not None
        child = int(harness.stdout.readline())
        assert psutil.Process(child).is_running()
        harness.kill()  # no cleanup code runs: only the kernel can end the child now
        harness.wait()
        assert _gone(child, 5.0), "the child outlived its SIGKILLed parent"
    finally:
        if harness.poll() is None:
            harness.kill()
        harness.wait()
        assert harness.stdout is not None
        harness.stdout.close()


def test_stop_ends_what_a_child_forked_too(tmp_path: Path) -> None:
    # The shell forks a sleep of its own (as Locust forks --processes workers); stopping
    # the shell alone would leave that sleep running.
    shell = process.spawn(["sh", "-c", "sleep 60 & echo $!; wait"], tmp_path / "sh.log")
    deadline = time.monotonic() + 5
    while not (tmp_path / "sh.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int((tmp_path / "sh.log").read_text().split()[0])
    assert os.getpgid(grandchild) == shell.pid  # the child leads a group of its own
    process.stop([shell], grace_s=5.0)
    assert shell.returncode is not None
    assert _gone(grandchild, 5.0), "the forked sleep survived stop()"


def test_stop_ends_a_paused_child_and_kills_one_that_ignores_sigterm(tmp_path: Path) -> None:
    paused = process.spawn(["sleep", "60"], tmp_path / "a.log")
    stubborn = process.spawn(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
        tmp_path / "b.log",
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while "ready" not in (tmp_path / "b.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(paused.pid, signal.SIGSTOP)
    started = time.monotonic()
    process.stop([paused, stubborn], grace_s=1.0)
    assert paused.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_port_blocks_are_free_until_something_listens_in_them() -> None:
    base = free_port_block()
    assert port_block_free(base)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", base + process.PORT_BLOCK - 1))  # the block's last port
        listener.listen()
        assert not port_block_free(base)
        assert port_block_free(base, process.PORT_BLOCK - 1)
