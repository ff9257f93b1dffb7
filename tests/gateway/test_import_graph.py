"""Issue 10: the gateway's modules import each other in one direction only.

Every import counts, those under `if TYPE_CHECKING:` too: a cycle there is still a
cycle for a reader and for mypy. The two sides meet in `gateway.exchange` (a request
and the `ClientSide`/`UpstreamRelay` protocols), errors live in `gateway.errors`.
"""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def gateway_imports() -> dict[str, set[str]]:
    """module -> the gateway modules it imports, read from the source."""
    graph: dict[str, set[str]] = {}
    for path in sorted(GATEWAY.glob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found.update(name for name in names if name.startswith("gateway."))
        graph[f"gateway.{path.stem}"] = found
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the path that closes it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_import_graph_sees_every_module_and_finds_a_planted_cycle() -> None:
    graph = gateway_imports()
    assert {"gateway.app", "gateway.server", "gateway.proxy"} <= set(graph)
    planted = {**graph, "gateway.upstreams": graph["gateway.upstreams"] | {"gateway.app"}}
    assert find_cycle(planted) is not None


def test_gateway_modules_import_each_other_without_cycles() -> None:
    assert find_cycle(gateway_imports()) is None
