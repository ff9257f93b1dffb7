"""`authbench compare RUN RUN [RUN...]`: bench runs side by side, one line style per run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from authbench.process import PROJECT_ROOT


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare bench runs: the same charts, one line style per run, and the differences",
        description="Read two or more results/<run-id> folders of `authbench bench` (their "
        "summary.csv and manifest.json; nothing is measured) and write "
        "results/compare-<UTC time>/: the throughput, latency and Redis charts with one line "
        "style per run (colour per mode), compare.csv with each figure's median, min-max over "
        "the repeats and difference from the first run, and report.html. Only the "
        "configurations (mode, replicas, load, JWT algorithm, store axes) every run measured "
        "are compared; runs that share none are refused with what differs. Use it for local "
        "against compose, before and after a change, two machines, two Redis versions.",
    )
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="bench run folders; the first is the baseline the differences are taken from",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=PROJECT_ROOT / "results",
        help="where the compare-<time>/ folder is written (default: the project's results/)",
    )
    parser.add_argument(
        "--run-id", default="", help="name of the compare folder (default: compare-<UTC time>)"
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from authbench.bench import compare  # matplotlib: imported only when used

    if len(args.runs) < 2:
        print("authbench compare: give at least two run folders", file=sys.stderr)
        return 2
    try:
        report = compare.compare(args.runs, args.results_dir, args.run_id)
    except compare.NoOverlap as err:
        print(f"authbench compare: nothing to compare, {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"authbench compare: {err}", file=sys.stderr)
        return 2
    except FileExistsError as err:
        print(f"authbench compare: {err.filename} exists; choose another --run-id", file=sys.stderr)
        return 2
    print(report)
    return 0
