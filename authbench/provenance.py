"""Where a run's numbers came from: the head every results manifest starts with.

One definition for `bench` and `chaos` runs alike: the git commit (and whether the tree
was dirty), the versions of what was measured, and the machine it ran on.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from authbench.process import PROJECT_ROOT

PACKAGES = ("authbench", "locust", "aiohttp", "redis", "hiredis", "PyJWT", "matplotlib")
RUN_ID_TIME = "%Y%m%dT%H%M%SZ"


def new_run_id(kind: str, now: dt.datetime | None = None) -> str:
    """The folder name of a new run, for every kind: `<kind>-<UTC yyyymmddThhmmssZ>`
    (`bench-20261201T132100Z`). Runs committed before this scheme keep their names
    (`20261130-062753-bench`); results/README.md lists both."""
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{kind}-{when.strftime(RUN_ID_TIME)}"


def run_head(kind: str, run_id: str) -> dict[str, Any]:
    """The first keys of a manifest: kind, id, start time, command, git, versions, machine."""
    return {
        "kind": kind,
        "run_id": run_id,
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "git": {
            "commit": _git("rev-parse", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        },
        "versions": {
            "python": platform.python_version(),
            "redis_server": redis_server_version(),
            **{name: package_version(name) for name in PACKAGES},
        },
        "machine": machine_facts(),
    }


def package_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def redis_server_version() -> str:
    server = shutil.which("redis-server")
    if not server:
        return "not found"
    out = subprocess.run([server, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def machine_facts() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": list(os.getloadavg()),
    }


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
