"""`authbench model RUN_DIR [RUN_DIR...]`: fit, validate and project the capacity model.

Writes `model.json` and `projection.png` into the first run folder and prints the report
section "What this predicts beyond this machine" (every validation error included).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from authbench.model import capacity, chart, redis_capacity
from authbench.model.report import section_text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "model",
        help="fit a queueing model to bench runs, validate it here, project to 64 replicas",
        description="Read the bench runs' summary.csv (and manifest.json), compute each "
        "component's service demand per cell (utilisation law: CPU / throughput) and the "
        "Redis commands per request, fit per-mode demands, predict this machine's own cells "
        "(exact MVA for closed-loop cells, bottleneck bounds for paced ones; errors over "
        f"{capacity.FLAG_PCT:g}% flagged) and project throughput and mean latency at 1..64 "
        "replicas on a core each with one Redis core, at store RTT 0 and 1 ms. Writes "
        "model.json and projection.png into the first RUN_DIR; nothing is measured.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="results/<run-id> of `authbench bench`; demands are fitted "
        "over all of them, outputs go to the first",
    )
    parser.add_argument(
        "--redis-capacity",
        type=Path,
        default=None,
        help="JSON from `python -m authbench.model.redis_capacity` (Redis CPU per command "
        "measured with redis-benchmark); default: the run folder's redis_capacity.json if "
        "present, else the Redis CPU the bench cells measured",
    )
    parser.add_argument(
        "--users-per-replica", type=int, default=48, help="projected closed-loop users per replica"
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=20.0,
        help="projected think time between a user's requests",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for model.json and projection.png (default: first RUN_DIR)",
    )
    parser.set_defaults(func=main)


def _command_line(args: argparse.Namespace) -> list[str]:
    """The invocation, recorded in model.json so the outputs say what made them."""
    line = ["authbench", "model", *(str(r) for r in args.runs)]
    if args.redis_capacity is not None:
        line += ["--redis-capacity", str(args.redis_capacity)]
    line += ["--users-per-replica", str(args.users_per_replica), "--think-ms", f"{args.think_ms:g}"]
    if args.out is not None:
        line += ["--out", str(args.out)]
    return line


def main(args: argparse.Namespace) -> int:
    prog = "authbench model"
    if args.users_per_replica < 1:
        print(f"{prog}: --users-per-replica must be >= 1", file=sys.stderr)
        return 2
    if args.think_ms < 0:
        print(f"{prog}: --think-ms must be >= 0", file=sys.stderr)
        return 2
    for run in args.runs:
        if not (run / "summary.csv").is_file():
            print(f"{prog}: {run} has no summary.csv (not a bench run folder)", file=sys.stderr)
            return 2
    out_dir: Path = args.out or args.runs[0]
    cap_path: Path | None = args.redis_capacity
    if cap_path is None and (args.runs[0] / "redis_capacity.json").is_file():
        cap_path = args.runs[0] / "redis_capacity.json"
    cap = None
    if cap_path is not None:
        try:
            cap = redis_capacity.load(cap_path)
        except (OSError, ValueError, KeyError) as err:
            print(f"{prog}: --redis-capacity {cap_path}: {err}", file=sys.stderr)
            return 2
    workload = capacity.Workload(args.users_per_replica, args.think_ms / 1000.0)
    try:
        model = capacity.build(args.runs, cap, str(cap_path or ""), workload)
    except (OSError, ValueError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    doc = capacity.to_json(model)
    doc["command"] = _command_line(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.json").write_text(json.dumps(doc, indent=2) + "\n")
    chart.draw(model, out_dir / "projection.png")
    print(section_text(doc))
    print(f"\nwrote {out_dir / 'model.json'} and {out_dir / 'projection.png'}")
    return 0
