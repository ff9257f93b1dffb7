"""`authbench revocation-window`: logout to the last replica's first 401, per mode."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from authbench import modes
from authbench.bench import axes
from authbench.bench import revocation_window as rw
from authbench.bench.matrix import parse_list
from authbench.process import PROJECT_ROOT
from authbench.targets.base import STORE_METAVAR, DeploymentError, StoreTopology


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "revocation-window",
        help="measure how long a logged-out credential still works, per mode",
        description="For each mode: start a private local cluster with the mode's settings "
        "(modes that share them share it), then LOGOUTS times: log in, present the credential "
        "to every replica directly, log out, and ask every replica until each answers 401. "
        "The window is logout's response to the last replica's first 401 (one polling round "
        "included); p50/p99/max in ms per mode go to results/revocation-window-<time>/ "
        "(windows.csv, summary.json, README.md). A mode whose replicas never refuse within "
        "--timeout for --give-up-after logouts in a row is reported as 'never, until exp' "
        "with the token's remaining lifetime from its exp claim.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    every = modes.keys(modes.MODES)
    parser.add_argument(
        "--modes",
        "--mode",
        dest="modes",
        default=",".join(every),
        help=f"comma-separated, from: {', '.join(every)}",
    )
    parser.add_argument(
        "--logouts", type=int, default=rw.DEFAULT_LOGOUTS, help="logouts measured per mode"
    )
    parser.add_argument("--replicas", type=int, default=3, help="resource replicas per cluster")
    parser.add_argument(
        "--timeout",
        type=float,
        default=rw.DEFAULT_TIMEOUT_S,
        help="seconds a logout's polling may last before it counts as not revoked",
    )
    parser.add_argument(
        "--give-up-after",
        type=int,
        default=rw.DEFAULT_GIVE_UP_AFTER,
        help="stop a mode after this many first logouts that no replica refused",
    )
    parser.add_argument(
        "--accounts", type=int, default=20, help="seeded accounts the logins rotate over"
    )
    parser.add_argument(
        "--port-base", type=int, default=None, help="first port of each cluster (default: free)"
    )
    parser.add_argument(
        "--results-dir", default=str(PROJECT_ROOT / "results"), help="where the run folder goes"
    )
    parser.add_argument("--run-id", default="", help="name of the run folder (default: time)")
    parser.add_argument(
        "--store",
        default="single",
        metavar="STORE[,STORE...]",
        help=f"store topologies {STORE_METAVAR}, comma-separated: every mode is measured on "
        "each in turn, in one run (e.g. single,replicas:2: the replication lag a read replica "
        "adds to the window)",
    )
    parser.add_argument(
        "--validate-at",
        default="replica",
        metavar="{replica,gateway}",
        help="where credentials are checked (VALIDATE_AT), comma-separated: replica (each "
        "replica is asked directly, as by default) and/or gateway (the gateway checks every "
        "request once and the replicas trust its signed assertion, so the gateway is asked)",
    )
    parser.set_defaults(func=main)


def build_config(args: argparse.Namespace) -> rw.RunConfig:
    names = parse_list(args.modes)
    if not names:
        raise ValueError("--modes: give at least one mode")
    chosen: list[modes.Mode] = []
    for name in names:
        try:
            mode = modes.get(name)
        except KeyError as err:
            raise ValueError(f"--modes: {err.args[0]}") from None
        if mode not in chosen:
            chosen.append(mode)
    if args.logouts < 1:
        raise ValueError(f"--logouts: at least 1, got {args.logouts}")
    if not 1 <= args.replicas <= 19:
        raise ValueError(f"--replicas: 1 to 19, got {args.replicas}")
    if not 0 < args.timeout <= 600:
        raise ValueError(f"--timeout: more than 0 and at most 600 s, got {args.timeout:g}")
    if args.give_up_after < 0:
        raise ValueError(f"--give-up-after: 0 (never) or more, got {args.give_up_after}")
    if args.accounts < 1:
        raise ValueError(f"--accounts: at least 1, got {args.accounts}")
    stores: list[StoreTopology] = []
    for text in parse_list(args.store) or ["single"]:
        try:
            store = StoreTopology.parse(text)
        except ValueError as err:
            raise ValueError(f"--store: {err}") from None
        if store not in stores:
            stores.append(store)
    return rw.RunConfig(
        modes=tuple(chosen),
        logouts=args.logouts,
        replicas=args.replicas,
        timeout_s=args.timeout,
        give_up_after=args.give_up_after,
        accounts=args.accounts,
        port_base=args.port_base,
        results_dir=Path(args.results_dir),
        run_id=args.run_id,
        stores=tuple(stores),
        places=axes.parse_validate_at(args.validate_at),
    )


def main(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ValueError as err:
        print(f"authbench revocation-window: {err}", file=sys.stderr)
        return 2
    try:
        run_dir = rw.run(config, say=lambda msg: print(msg, flush=True))
    except FileExistsError as err:
        print(
            f"authbench revocation-window: {err} exists; choose another --run-id", file=sys.stderr
        )
        return 2
    except (DeploymentError, rw.WindowError, OSError) as err:
        print(f"authbench revocation-window: {err}", file=sys.stderr)
        return 1
    print(f"\nresults: {run_dir}")
    print((run_dir / "README.md").read_text())
    return 0
