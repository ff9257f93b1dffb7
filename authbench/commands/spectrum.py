"""`authbench spectrum`: the revocation window against store work per read, from runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from authbench.process import PROJECT_ROOT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "spectrum",
        help="draw the spectrum chart (revocation window vs store calls per read) from runs",
        description="Read committed bench runs (cell.json's Redis commandstats delta and "
        "Locust's reads per cell) and revocation-window runs (p99 per mode) and write "
        "results/spectrum-<time>/: spectrum.png (x: revocation window, log; y: Redis commands "
        "per authenticated read, and read p50 at --store-rtt 1 when the runs have such cells; "
        "one point per mode, per TTL for modes revoked only by expiry), refresh_cost.png "
        "(jwt-short's refresh cost per user-hour against its TTL), the CSVs and a README. "
        "Nothing is measured; modes come from the registry.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("bench", nargs="+", type=Path, help="bench run folders (results/bench-...)")
    parser.add_argument(
        "--windows",
        nargs="+",
        type=Path,
        default=[],
        help="revocation-window run folders (results/revocation-window-...)",
    )
    parser.add_argument(
        "--results-dir", default=str(PROJECT_ROOT / "results"), help="where the folder goes"
    )
    parser.add_argument("--run-id", default="", help="name of the folder (default: time)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from authbench.bench import spectrum
    from authbench.provenance import new_run_id, run_head

    for folder in (*args.bench, *args.windows):
        if not (folder / "manifest.json").is_file():
            print(f"authbench spectrum: {folder} has no manifest.json", file=sys.stderr)
            return 2
    run_id = args.run_id or new_run_id("spectrum")
    out_dir = Path(args.results_dir) / run_id
    try:
        done = spectrum.build(args.bench, args.windows, out_dir, run_head("spectrum", run_id))
    except FileExistsError:
        print(f"authbench spectrum: {out_dir} exists; choose another --run-id", file=sys.stderr)
        return 2
    except (ValueError, KeyError, OSError) as err:
        print(f"authbench spectrum: {err}", file=sys.stderr)
        return 2
    print(done / "README.md")
    return 0
