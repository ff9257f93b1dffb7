"""The mode registry: each mode defined once, its Locust users real, its names nowhere else."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from authbench import modes
from authbench.bench.matrix import JWT_ALGS, Cell, Load
from authbench.process import PROJECT_ROOT

# Where a mode's name may be written as a literal: the registry itself. Tests and docs are
# not scanned (they say what the names are, on purpose).
SCANNED = ("authbench", "loadtests")
ALLOWED = {Path("authbench/modes.py")}


def _names() -> set[str]:
    """Keys and labels. Former keys are not scanned: `denylist` is also a value of the
    JWT_REVOCATION setting, which is not a mode."""
    return {name for m in modes.MODES for name in (m.key, m.label)}


def literals(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, text) of every string constant in `source` that is one of `names`."""
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
    ]


def test_no_mode_name_is_written_as_a_literal_outside_the_registry() -> None:
    names = _names()
    found = []
    for root in SCANNED:
        for path in sorted((PROJECT_ROOT / root).rglob("*.py")):
            relative = path.relative_to(PROJECT_ROOT)
            if relative in ALLOWED:
                continue
            found += [
                f"{relative}:{line}: {text!r}" for line, text in literals(path.read_text(), names)
            ]
    assert not found, "mode names written outside authbench/modes.py:\n" + "\n".join(found)


def test_the_literal_scan_sees_keys_and_labels_wherever_they_are() -> None:
    names = _names()
    source = 'A = "jwt+denylist"\nB = {"session": 1}\nC = f(m="jwt+denylist(open)")\nD = "jwt x"\n'
    assert [line for line, _ in literals(source, names)] == [1, 2, 3]


def test_records_are_distinct_and_complete() -> None:
    for attribute in ("key", "label", "checks", "color", "slug", "env_name"):
        values = [getattr(m, attribute) for m in modes.MODES]
        assert len(set(values)) == len(values), attribute
    all_names = [name for m in modes.MODES for name in (m.key, *m.former_keys)]
    assert len(set(all_names)) == len(all_names)
    for mode in modes.MODES:
        assert modes.get(mode.key) is mode
        assert all(modes.get(old) is mode for old in mode.former_keys)
        assert set(mode.deployment) <= set(modes.DEPLOYMENT_DEFAULTS)
        assert mode.store_on_read == bool(mode.store_role) == bool(mode.read_command)
    with pytest.raises(KeyError, match="unknown mode"):
        modes.get("no-such-mode")


def test_login_modes_are_the_services_own() -> None:
    from authcore import credentials
    from authcore.modes import Login

    assert modes.Login is Login  # one definition, not a mirror
    services = (
        credentials.MODE_SESSION,
        credentials.MODE_JWT,
        credentials.MODE_JWT_COOKIE,
        credentials.MODE_OPAQUE,
    )
    assert services == tuple(Login)


def test_one_list_of_jwt_algorithms() -> None:
    from authcore.config import ALGORITHMS

    assert modes.JWT_ALGORITHMS is ALGORITHMS
    assert JWT_ALGS is ALGORITHMS


def test_a_deployment_serves_the_modes_its_settings_fit() -> None:
    served = [m.key for m in modes.MODES if m.served_by({"JWT_REVOCATION": "denylist"})]
    assert served == [modes.SESSION.key, modes.JWT_DENYLIST.key]
    served = [m.key for m in modes.MODES if m.served_by({})]
    assert served == [modes.SESSION.key, modes.JWT.key]
    # opaque needs no JWT setting, only the introspection credential (LocalCluster sets one).
    secret = {"INTROSPECT_SECRET": "s" * 32}
    served = [m.key for m in modes.MODES if m.served_by(secret)]
    assert served == [modes.SESSION.key, modes.JWT.key, modes.OPAQUE.key]
    open_env = {"JWT_REVOCATION": "denylist", "DENYLIST_FAIL": "open"}
    assert [m.key for m in modes.MODES if m.served_by(open_env)] == [
        modes.SESSION.key,
        modes.JWT_DENYLIST_OPEN.key,
    ]


def test_bench_cells_take_their_deployment_and_user_from_the_record() -> None:
    cell = Cell(modes.JWT_DENYLIST.key, 2, Load(5), "EdDSA")
    assert cell.deployment["JWT_REVOCATION"] == "denylist"
    assert cell.user_class == modes.JWT_DENYLIST.bench_user
    assert cell.cell_id == "r1-jwt-denylist-x2-u5-EdDSA"  # the committed runs' cell ids
    assert (
        Cell(modes.SESSION.key, 2, Load(5), "EdDSA").group
        == Cell(modes.JWT.key, 2, Load(5), "EdDSA").group
    )


# Run in a subprocess: importing a locustfile monkey-patches with gevent, which must never
# happen in the pytest process (asyncio tests run there).
_RESOLVE = """
import json, sys
from locust import User
from authbench import modes
out = {}
for m in modes.MODES:
    bench = m.bench_user.load() if m.bench_user else None
    chaos = m.chaos_user.load()
    out[m.key] = {
        "bench_is_user": bench is None or issubclass(bench, User),
        "bench_login": None if bench is None else str(bench.login_mode),
        "chaos_is_user": issubclass(chaos, User),
        "chaos_mode": chaos.mode.key,
        "chaos_login": str(chaos.login_mode),
        "files_exist": all(
            u.locustfile.is_file() for u in (m.bench_user, m.chaos_user) if u is not None
        ),
    }
json.dump(out, sys.stdout)
"""


def test_every_record_names_a_real_locust_user_that_plays_it() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RESOLVE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert set(found) == {m.key for m in modes.MODES}
    for mode in modes.MODES:
        got = found[mode.key]
        assert got["bench_is_user"] and got["chaos_is_user"] and got["files_exist"], mode.key
        assert got["chaos_mode"] == mode.key  # the class says it plays this mode
        assert got["chaos_login"] == str(mode.login)
        if mode.bench_user is not None:
            assert got["bench_login"] == str(mode.login)


def test_the_registry_imports_neither_locust_nor_asyncio_libraries() -> None:
    """The locustfiles import the registry (gevent-patched), the harness too (asyncio)."""
    probe = (
        "import sys, authbench.modes; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'locust', 'gevent', 'aiohttp', 'redis', 'matplotlib'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
