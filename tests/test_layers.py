"""The layers, read from the imports: the services' runtime never imports the harness.

`authcore` is what runs on the request path; `auth_service`, `resource_service` and
`gateway` are the services, and they import only `authcore` (and each other never).
`authbench` (the harness: CLI, bench, chaos, targets), `loadtests` and `benchmarks`
may import the runtime; the runtime and the services must not import them, or the slim
service image (which ships without the harness) would break at start-up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("auth_service", "resource_service", "gateway")
HARNESS = ("authbench", "loadtests", "benchmarks", "tests")
HARNESS_ONLY_LIBRARIES = ("locust", "matplotlib", "numpy", "gevent", "hdrh", "psutil")


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module that `path` imports, at any depth of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", ["authcore", *SERVICES])
def test_runtime_and_services_never_import_the_harness(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & set(HARNESS))
        for path in python_files(package)
        if imported_modules(path) & set(HARNESS)
    }
    assert offenders == {}


@pytest.mark.parametrize("package", ["authcore", *SERVICES])
def test_runtime_and_services_need_no_harness_library(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & set(HARNESS_ONLY_LIBRARIES))
        for path in python_files(package)
        if imported_modules(path) & set(HARNESS_ONLY_LIBRARIES)
    }
    assert offenders == {}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_no_other_service(service: str) -> None:
    others = set(SERVICES) - {service}
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_modules(path) & others)
        for path in python_files(service)
        if imported_modules(path) & others
    }
    assert offenders == {}


def test_the_layer_check_sees_imports() -> None:
    """Guard against a vacuous pass: the scan finds the imports a service really has."""
    assert "authcore" in imported_modules(ROOT / "resource_service" / "app.py")
    assert "authcore" in imported_modules(ROOT / "authbench" / "chaos" / "run.py")
