"""`authbench up`: run the whole system on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from authbench.targets.base import (
    REDIS_PERSISTENCE,
    STORE_METAVAR,
    STORES,
    StoreTopology,
    store_argument,
)
from authbench.targets.local import ClusterError, LocalCluster, Ports
from authbench.targets.nginx import GATEWAYS
from authcore.config import ALGORITHMS, REVOCATION_MODES, VALIDATION_PLACES, Settings

MAX_AUTH_REPLICAS = 8  # ports 8081..8088: below Locust's 8089
DEFAULTS = Settings()  # the services' own defaults, so `up` starts what they would


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start Redis, auth, replicas and the gateway on loopback",
        description="Start redis-server, the auth service, N resource replicas and the "
        "gateway as local processes; wait until all are ready; keep them running until "
        "Ctrl-C or SIGTERM, then stop everything that was started. A child that dies "
        "(Redis killed on purpose, say) is reported and the rest keep running.",
    )
    parser.add_argument("--replicas", type=int, default=3, help="resource replicas (default 3)")
    parser.add_argument(
        "--auth-replicas", type=int, default=1,
        help=f"auth processes behind the gateway, sharing their signing keys through the key "
        f"store in Redis (default 1, at most {MAX_AUTH_REPLICAS}; ports 8081, then 8082 up)",
    )  # fmt: skip
    parser.add_argument(
        "--jwt-revocation",
        choices=REVOCATION_MODES,
        default=DEFAULTS.jwt_revocation,
        help="none: a logged-out JWT works until it expires; denylist: replicas check its jti; "
        "pushlist: revocations are pushed to every replica through a Redis Stream",
    )
    parser.add_argument(
        "--jwt-alg", choices=ALGORITHMS, default=DEFAULTS.jwt_algorithm,
        help=f"access-token signature algorithm (default {DEFAULTS.jwt_algorithm})",
    )  # fmt: skip
    parser.add_argument(
        "--redis-persistence", choices=REDIS_PERSISTENCE, default=REDIS_PERSISTENCE[0],
        help="none, or an append-only file fsynced every second",
    )  # fmt: skip
    parser.add_argument(
        "--store", type=store_argument, metavar=STORE_METAVAR, default=STORES[0],
        help="single: one redis-server; sentinel: a primary, one replica and three Sentinels "
        "(replica on --redis-port + 2, Sentinels on the three ports after it); cluster:N: "
        "N Redis Cluster primaries, the first on --redis-port, the others from --redis-port + 2; "
        "replicas:N: a primary on --redis-port and N read replicas from --redis-port + 2 that "
        "serve session reads (with SESSION_RENEW_INTERVAL_S=60)",
    )  # fmt: skip
    parser.add_argument(
        "--validate-at", choices=VALIDATION_PLACES, default=DEFAULTS.validate_at,
        help="replica: every replica checks the credential; gateway: the gateway checks it "
        "once and forwards a signed identity assertion (a fresh key pair per start)",
    )  # fmt: skip
    parser.add_argument(
        "--gateway", choices=GATEWAYS, default=GATEWAYS[0],
        help="what answers at the gateway port: ours, or Debian's nginx in its place "
        "(same routes; no operator port; with --validate-at gateway its auth_request asks "
        "the auth service, which signs the assertion)",
    )  # fmt: skip
    parser.add_argument("--gateway-port", type=int, default=Ports.gateway)
    parser.add_argument("--redis-port", type=int, default=Ports.redis)
    parser.add_argument(
        "--target", choices=(LocalCluster.target,), default=LocalCluster.target,
        help="`up` runs the local cluster; for containers use `docker compose up`",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.replicas < 1:
        print("--replicas must be at least 1", file=sys.stderr)
        return 2
    if not 1 <= args.auth_replicas <= MAX_AUTH_REPLICAS:
        print(f"--auth-replicas must be between 1 and {MAX_AUTH_REPLICAS}", file=sys.stderr)
        return 2
    cluster = LocalCluster(
        replicas=args.replicas,
        auth_replicas=args.auth_replicas,
        ports=Ports(
            gateway=args.gateway_port, redis=args.redis_port, store_extra=args.redis_port + 2
        ),
        settings_env={
            "JWT_REVOCATION": args.jwt_revocation,
            "JWT_ALG": args.jwt_alg,
            "VALIDATE_AT": args.validate_at,
        },
        redis_persistence=args.redis_persistence,
        store=StoreTopology.parse(args.store),
        gateway_impl=args.gateway,
    )
    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        cluster.start(progress=lambda msg: print(f"  {msg}", flush=True))
    except ClusterError as err:
        print(f"authbench up: {err}", file=sys.stderr)
        return 1
    auth = ", ".join(cluster.auth_urls())
    print(
        f"\nauthbench is up: gateway {cluster.gateway_url}  (auth {auth}, "
        f"{args.replicas} replicas from :{cluster.ports.resource_base})\n"
        f"metrics (operator port): {cluster.gateway_admin_url}/metrics\n"
        f"Redis: {cluster.redis_address}   logs: {cluster.workdir / 'logs'}\n"
        f"JWT revocation: {args.jwt_revocation}   algorithm: {args.jwt_alg}\n"
        "Press Ctrl-C to stop everything.",
        flush=True,
    )
    if cluster.sentinel_set is not None:
        print(
            f"Sentinels: {cluster.sentinel_set.sentinel_addresses} (master name "
            f"{cluster.sentinel_set.master_name}); the Redis address above is the primary now.",
            flush=True,
        )
    if cluster.cluster_store is not None:
        print(
            f"Redis Cluster nodes: {cluster.cluster_store.nodes_setting} (no replicas); "
            "the Redis address above is shard 1.",
            flush=True,
        )
    if cluster.replica_store is not None:
        replicas = cluster.replica_store.replicas_setting or "none"
        print(f"Read replicas: {replicas}; the Redis address above is the primary.", flush=True)
    reported: set[str] = set()
    try:
        while not stopping:
            for child in cluster.all_children():
                if not child.alive() and child.name not in reported:
                    code = child.process.returncode if child.process else None
                    print(
                        f"! {child.name} (pid {child.pid}) exited with code {code}; "
                        "the rest keep running",
                        flush=True,
                    )
                    reported.add(child.name)
                elif child.alive():
                    reported.discard(child.name)
            time.sleep(0.2)
    finally:
        print("stopping…", flush=True)
        cluster.stop()
        print("stopped; no process left behind.", flush=True)
    return 0
