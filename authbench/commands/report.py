"""`authbench report DIR`: redraw the charts and report.html of a results directory.

The directory's `manifest.json` says what made it ("kind": "bench", "chaos" or "compare");
each kind has its own renderer (`authbench.bench.report.render`, `authbench.chaos.report.render`,
`authbench.bench.compare.render`, which reads the compared runs' folders again),
imported only when needed (matplotlib is slow to import). A renderer that cannot be
imported is a packaging bug: it raises, it is never skipped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RENDERERS = {
    "bench": "authbench.bench.report",
    "chaos": "authbench.chaos.report",
    "compare": "authbench.bench.compare",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "report",
        help="(re)draw the charts and report.html of a results directory",
        description="Read a results directory written by `authbench bench`, `authbench "
        "chaos` or `authbench compare` (manifest.json, summary.csv, raw CSVs) and draw its "
        "PNG charts and its self-contained report.html again. Nothing is measured; the files "
        "are the only input.",
    )
    parser.add_argument("dir", type=Path, help="results/<run-id> directory")
    parser.set_defaults(func=main)


def kind_of(run_dir: Path) -> str:
    manifest: dict[str, Any] = json.loads((run_dir / "manifest.json").read_text())
    return str(manifest.get("kind", "bench"))


def main(args: argparse.Namespace) -> int:
    run_dir: Path = args.dir
    try:
        kind = kind_of(run_dir)
    except (OSError, ValueError) as err:
        print(f"authbench report: {run_dir} has no readable manifest.json ({err})", file=sys.stderr)
        return 2
    module_name = RENDERERS.get(kind)
    if module_name is None:
        print(
            f"authbench report: unknown kind {kind!r} in {run_dir}/manifest.json", file=sys.stderr
        )
        return 2
    out = renderer(kind)(run_dir)
    print(out)
    return 0


def renderer(kind: str) -> Callable[[Path], Path]:
    """The `render(run_dir)` of a kind of run; raises when its module is missing."""
    render: Callable[[Path], Path] = importlib.import_module(RENDERERS[kind]).render
    return render
