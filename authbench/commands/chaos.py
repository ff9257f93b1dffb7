"""`authbench chaos`: break Redis under load, measure what each mode loses, write a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from authbench import store_link
from authbench.chaos.load import LoadShape
from authbench.chaos.scenarios import (
    ALL_SCENARIOS,
    SCENARIOS,
    ChaosOptions,
    Timing,
    cannot_run,
)
from authbench.chaos.topology import MAX_REPLICAS
from authbench.modes import CHAOS_MODES
from authbench.process import PROJECT_ROOT
from authbench.targets import TARGETS
from authbench.targets.base import Deployment


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scenario_help = "; ".join(f"{s.name}: {s.what}" for s in ALL_SCENARIOS.values())
    parser = subparsers.add_parser(
        "chaos",
        help="kill, pause, restart and slow down Redis under load; report what each mode loses",
        description="Run Redis fault scenarios under steady Locust load of every mode at once "
        f"({', '.join(m.label for m in CHAOS_MODES)}, side by side on one Redis), and write "
        "results/<run-id>/ with raw CSVs, 1-second timelines, charts and report.html. "
        "Scenarios: " + scenario_help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS),
        help="comma-separated scenarios to run, in this order (failover, failover-wait, "
        "failover-partition and failover-partition-wait, on a primary/replica/3-Sentinel "
        "store, replica-crash, shard-kill, on a three-shard Redis Cluster, and "
        "read-replica-kill and read-replica-pause, on a primary with two read replicas, "
        "run only when named)",
    )  # fmt: skip
    parser.add_argument(
        "--target", choices=TARGETS, default="local",
        help="local: a fresh loopback cluster per scenario; compose: the running docker "
        "stack (the modes its settings serve: session, its JWT mode, opaque when it has an "
        "INTROSPECT_SECRET; kill, pause, the restart matching its REDIS_APPENDONLY, the "
        "auth-service faults; on its `sentinel` profile, failover, or failover-wait when it "
        "runs REDIS_WAIT_REPLICAS=1; on its `replicas` profile, read-replica-pause); "
        "swarm: the stack below (kill, pause, restart-none, auth-pause)",
    )  # fmt: skip
    parser.add_argument(
        "--swarm-stack", default="authbench",
        help="swarm: the stack deployed from docker-compose.yml (`docker stack deploy`), "
        "updated to --replicas and left running; its faults go through the engine",
    )  # fmt: skip
    parser.add_argument("--replicas", type=int, default=2, help="resource replicas per group")
    parser.add_argument("--users-per-mode", type=int, default=4, help="Locust users per mode")
    parser.add_argument("--user-rps", type=float, default=5.0, help="requests/s of each user")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before a fault")
    parser.add_argument(
        "--outage", type=float, default=5.0, help="seconds Redis stays killed, paused or slow"
    )
    parser.add_argument(
        "--after", type=float, default=10.0, help="seconds measured after Redis is back"
    )
    parser.add_argument(
        "--aof-margin", type=float, default=2.0,
        help="seconds between the last acknowledged write and the fault (AOF everysec "
        "may lose up to 1 s by design; keep this above 1)",
    )  # fmt: skip
    parser.add_argument(
        "--slow-ms", type=float, default=5.0,
        help="slow scenario: one-way delay added on the Redis link (see --store-link)",
    )  # fmt: skip
    parser.add_argument(
        "--store-link", choices=store_link.CHOICES, default=store_link.AUTO,
        help="slow scenario: what delays the Redis link: netem (tc on lo, only Redis's "
        "port; local target, root, a kernel with sch_netem/sch_prio/cls_u32), proxy (the "
        "userspace delay proxy), or auto: netem where it works, else the proxy; the "
        "manifest says which and why",
    )  # fmt: skip
    parser.add_argument(
        "--partition", type=float, default=3.0,
        help="failover-partition scenarios: seconds the writers go on with the replica's "
        "link cut before the primary is killed (at most 8: a Sentinel re-points a replica "
        "it sees replicating from another address after ~10 s)",
    )  # fmt: skip
    parser.add_argument(
        "--hang-ms", type=float, default=1000.0, help="a request slower than this counts as hung"
    )
    parser.add_argument(
        "--planted", type=int, default=10,
        help="sessions, refresh tokens and revoked JWTs planted to check for losses",
    )  # fmt: skip
    parser.add_argument(
        "--revocation-observe", type=float, default=3.0,
        help="seconds to keep asking replicas whether a logged-out credential still works",
    )  # fmt: skip
    parser.add_argument(
        "--results", type=Path, default=PROJECT_ROOT / "results", help="where run dirs go"
    )
    parser.add_argument("--run-id", default=None, help="name of the run directory")
    parser.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> ChaosOptions:
    """The run's options; ValueError naming the flag (--store-link netem where it fails)."""
    return ChaosOptions(
        replicas=args.replicas,
        shape=LoadShape(users_per_mode=args.users_per_mode, user_rps=args.user_rps),
        timing=Timing(
            warmup_s=args.warmup,
            outage_s=args.outage,
            after_s=args.after,
            aof_margin_s=args.aof_margin,
            revocation_observe_s=args.revocation_observe,
            hang_ms=args.hang_ms,
            slow_ms=args.slow_ms,
            partition_s=args.partition,
        ),
        planted_each=args.planted,
        store_link=store_link.choose(args.store_link, args.target),
    )


def run(args: argparse.Namespace) -> int:
    from authbench.chaos.run import run_chaos

    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    known = ALL_SCENARIOS
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        print(
            f"authbench chaos: unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    if not 1 <= args.replicas <= MAX_REPLICAS:
        print(f"authbench chaos: --replicas must be 1..{MAX_REPLICAS}", file=sys.stderr)
        return 2
    if not 0 < args.partition <= 8:
        print("authbench chaos: --partition must be in (0, 8] seconds", file=sys.stderr)
        return 2
    if args.aof_margin <= 1.0:
        print("authbench chaos: --aof-margin must exceed 1 s (AOF everysec)", file=sys.stderr)
        return 2
    if min(args.users_per_mode, args.user_rps, args.outage, args.after, args.planted) <= 0:
        print("authbench chaos: counts and durations must be positive", file=sys.stderr)
        return 2
    if args.target == "external":
        print(
            "authbench chaos: --target external: the harness cannot break a deployment "
            "something else runs (no Redis faults); measure it with `authbench bench "
            "--target external`",
            file=sys.stderr,
        )
        return 2
    try:
        options = options_from(args)
    except ValueError as err:
        print(f"authbench chaos: {err}", file=sys.stderr)
        return 2
    scenarios = [known[n] for n in names]
    target: Deployment | None = None  # local: a fresh cluster per scenario
    if args.target == "compose":
        from authbench.targets.compose import ComposeTarget

        problem = ComposeTarget.engine_problem()
        if problem is not None:
            print(f"authbench chaos: --target compose: {problem}", file=sys.stderr)
            return 1
        target = ComposeTarget()  # the running stack, as it is
        try:
            target.start()  # attaches: reads the store and settings the services run with
        except RuntimeError as err:  # DeploymentError
            print(f"authbench chaos: --target compose: {err}", file=sys.stderr)
            return 1
    if args.target == "swarm":
        from authbench.targets.swarm import SwarmTarget, swarm_state

        if swarm_state() != "active":
            print(
                "authbench chaos: --target swarm: this engine is not a swarm manager; run "
                "`docker swarm init --advertise-addr 127.0.0.1` first",
                file=sys.stderr,
            )
            return 1
        # The compose file's stack, deployed (or updated) with --replicas and left running.
        target = SwarmTarget(stack=args.swarm_stack, replicas=args.replicas)
    if target is not None:
        runnable = []
        for scenario in scenarios:
            why = cannot_run(scenario, target)
            if why is None:
                runnable.append(scenario)
            else:
                print(f"skipping {scenario.name}: {why}", flush=True)
        scenarios = runnable
        if not scenarios:
            print("authbench chaos: nothing to run on this target", file=sys.stderr)
            return 2
    try:
        out = run_chaos(
            options,
            scenarios,
            args.results,
            args.run_id,
            say=lambda msg: print(msg, flush=True),
            target=target,
        )
    except (RuntimeError, FileExistsError) as err:  # DeploymentError is a RuntimeError
        print(f"authbench chaos: {err}", file=sys.stderr)
        return 1
    print(f"results: {out}")
    return 0
