"""`authbench bench`: run the session / jwt / jwt+denylist matrix and write a report."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from types import FrameType
from typing import Any

from authbench import store_link
from authbench.bench import axes, presets
from authbench.bench.matrix import (
    BENCH_CHOICES,
    JWT_ALGS,
    MODE_ORDER,
    Load,
    Matrix,
    parse_list,
    validate_modes,
)
from authbench.bench.protocol import Protocol
from authbench.bench.runner import BenchConfig, run
from authbench.process import PORT_BLOCK, PROJECT_ROOT, PortsError
from authbench.targets import TARGETS
from authbench.targets.base import (
    STORE_METAVAR,
    STORES,
    DeploymentError,
    StoreTopology,
)
from authbench.targets.external import Endpoints, check_modes, split_address
from authbench.targets.nginx import GATEWAYS
from authcore.config import Settings
from authcore.errors import ConfigError

# The default run's two load levels: a paced one (30 users x 15 tasks/s = 450 reads/s
# offered, constant arrival: latency without coordinated omission) and a closed-loop one
# (32 users as fast as answers come: each mode's ceiling). Two levels also spread Redis's
# load over two throughputs, so its cost per request is a slope, not one point.
DEFAULT_LOADS = "30@15,32"
# Short cells keep the default run near 5 minutes with both levels: the µs histograms
# make 8 s of capture enough at these rates (3600 paced reads, over 10000 in closed loop).
DEFAULT_WARMUP_S, DEFAULT_CAPTURE_S, DEFAULT_REST_S = 3.0, 8.0, 1.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the load-test matrix and write results/<run-id>/ with a report",
        description="Measure session vs JWT vs JWT+denylist as replicas grow. For each "
        "(JWT_REVOCATION, replicas, JWT algorithm) it starts a private cluster on loopback "
        "(never the ports of `authbench up`), runs Locust headless per cell (health check, "
        "warm-up excluded, fixed capture window, rest), samples Redis INFO, process CPU and "
        "the replicas' /metrics, and ends with the path of report.html. Defaults: 3 modes x "
        "replicas 1,2,4 x loads 30@15 (30 users, 15 tasks/s each: 450 reads/s offered) and 32 "
        "(closed loop: each mode's ceiling), 1 repeat: 18 cells in 6 cluster groups, about 5 "
        "minutes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    matrix = parser.add_argument_group("matrix")
    matrix.add_argument(
        "--modes",
        default=",".join(MODE_ORDER),
        help=f"comma-separated, from: {', '.join(BENCH_CHOICES)}; or 'all' (every one of them)",
    )
    matrix.add_argument("--replicas", default="1,2,4", help="comma-separated replica counts")
    matrix.add_argument(
        "--loads",
        default=DEFAULT_LOADS,
        help="comma-separated load levels: USERS (closed loop, as fast as "
        "answers come) or USERS@RATE (each user starts RATE tasks/s: "
        "constant arrival, so latency is not hidden by coordinated omission)",
    )
    matrix.add_argument(
        "--jwt-algs",
        default="EdDSA",
        help=f"comma-separated JWT algorithms, an optional axis: {', '.join(JWT_ALGS)}",
    )
    matrix.add_argument(
        "--store-rtt",
        default="0",
        help="store distance, an axis: comma-separated round trips in ms added between every "
        "service and Redis (half each way) by the link --store-link chooses. 0 alone: Redis "
        "direct, as always. Any RTT > 0 adds its control pair: `direct` (nothing in the "
        "path) and the link at 0 ms",
    )
    matrix.add_argument(
        "--store-link",
        choices=store_link.CHOICES,
        default=store_link.AUTO,
        help="what makes the store distance: netem (tc on lo, only Redis's port, half the "
        "RTT each way; local target, root, a kernel with sch_netem/sch_prio/cls_u32, lo on "
        "its default qdisc; removed after each group), proxy (the userspace delay proxy), "
        "or auto: netem where it works, else the proxy; the manifest says which and why",
    )
    matrix.add_argument(
        "--redis-cpus",
        default="none",
        help="store capacity, an axis: comma-separated CPU quotas for redis-server in cores "
        "(e.g. 0.05,none; `none`: uncapped). Local: a cgroup (v1 cpu.cfs_quota_us or v2 "
        "cpu.max, needs root); compose: `docker update --cpus` on the redis container",
    )
    matrix.add_argument(
        "--token-bytes",
        default="0",
        help="token size, an axis: comma-separated bytes of padding claim in every access "
        "token (ACCESS_TOKEN_PAD_BYTES); sessions keep their fixed cookie",
    )
    matrix.add_argument(
        "--validate-at",
        default="replica",
        help="validation placement, an axis: replica (every replica checks the credential) "
        "and/or gateway (the gateway checks it once and forwards a signed identity "
        "assertion; VALIDATE_AT), e.g. replica,gateway",
    )
    matrix.add_argument(
        "--jwt-ttl",
        default="",
        help="access-token lifetime, an axis: comma-separated JWT_TTL_S in seconds (e.g. "
        "30,300,3600) for the modes that set one (jwt-short, whose users refresh before "
        "expiry: its revocation window and its refresh cost); empty: the mode's own",
    )
    matrix.add_argument(
        "--introspect-cache",
        type=float,
        default=None,
        metavar="S",
        help="mode opaque: each replica caches active introspection answers S seconds "
        "(INTROSPECT_CACHE_S; never past the token's exp), so a logged-out token may pass "
        "that long; absent: the services' default, 0 = off",
    )
    matrix.add_argument(
        "--preset",
        choices=sorted(presets.PRESETS),
        default=None,
        help="a whole study: `scaling` = store distance (direct, proxy 0/1/5 ms at 30@15) and "
        "store capacity (Redis 0.02 core vs uncapped, closed loop, 1 and 4 replicas), 3 "
        "shuffled repeats, about 14 minutes; it sets the matrix, the repeats and the "
        "cell timings (--seed, --target, --pin, --processes still apply)",
    )
    matrix.add_argument(
        "--repeats", type=int, default=1, help="repeats of every cell; the spread is reported"
    )
    matrix.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the shuffled cell order (recorded in the manifest)",
    )
    protocol = parser.add_argument_group("protocol")
    protocol.add_argument(
        "--warmup", type=float, default=DEFAULT_WARMUP_S, help="seconds excluded per cell"
    )
    protocol.add_argument(
        "--capture", type=float, default=DEFAULT_CAPTURE_S, help="seconds measured per cell"
    )
    protocol.add_argument(
        "--rest", type=float, default=DEFAULT_REST_S, help="seconds of quiet between cells"
    )
    protocol.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Locust generator processes (--processes); raise it when a cell "
        "is flagged generator-saturated and cores are free",
    )
    protocol.add_argument(
        "--expect-workers",
        type=int,
        default=0,
        metavar="K",
        help="distributed load: each cell's Locust master also waits for K workers that join "
        "it by address, e.g. on other hosts: `authbench loadgen --master HOST:PORT` (they "
        "rejoin cell after cell); each sends the master its own CPU and µs histograms "
        "(cpu_workers_pct, loadgen_workers)",
    )
    protocol.add_argument(
        "--master-bind",
        default="127.0.0.1:5557",
        metavar="HOST:PORT",
        help="with --expect-workers: where the master listens (0.0.0.0:5557 for workers on "
        "other hosts; Locust's protocol has no authentication, so only on a trusted network)",
    )
    protocol.add_argument(
        "--worker-wait",
        type=float,
        default=120.0,
        help="with --expect-workers: seconds a cell waits for its workers before it fails",
    )
    protocol.add_argument(
        "--pin",
        action="store_true",
        help="generator placement: Locust on the last CPU, the system under test (Redis, "
        "proxy, services) on the others (sched_setaffinity; local target); recorded in the "
        "manifest and the `pinned` column",
    )
    protocol.add_argument(
        "--accounts",
        type=int,
        default=200,
        help="seeded accounts users are spread over (AUTH_SEED_USERS; each costs an argon2id "
        "hash at cluster start, so keep it near the number of users)",
    )
    protocol.add_argument(
        "--relogin-prob", type=float, default=0.005, help="chance per task of logout + login again"
    )
    protocol.add_argument(
        "--refresh-prob",
        type=float,
        default=0.01,
        help="chance per task that a JWT user refreshes its token",
    )
    where = parser.add_argument_group("target and output")
    where.add_argument(
        "--store", metavar=STORE_METAVAR, default=STORES[0],
        help="single: one redis-server; sentinel: a primary, one replica and three Sentinels "
        "(the services find the primary through them; --target local or compose: its profile "
        "sentinel); cluster:N: N Redis Cluster primaries, no replicas (--redis-cpus then caps "
        "each shard; --target compose: its profile cluster, N = 3); replicas:N: one primary and "
        "N read replicas that serve session reads "
        "(SESSION_RENEW_INTERVAL_S, default 60 here; --redis-cpus caps each redis-server). "
        "An axis: comma-separated topologies run side by side, e.g. cluster:1,cluster:3",
    )  # fmt: skip
    where.add_argument(
        "--target",
        choices=TARGETS,
        default="local",
        help="local: private clusters started here; compose: the docker compose stack, "
        "reconfigured per group (`up -d --scale resource=N` with JWT_REVOCATION and JWT_ALG) "
        "and left running; CPU from the containers' cgroups, INFO through redis-cli; external: "
        "a deployment something else runs, at --gateway-url (measured, never changed); swarm: "
        "the compose file's stack on this swarm manager (`docker stack deploy` per group, "
        "gateway on GATEWAY_PORT in host mode), left running",
    )
    where.add_argument(
        "--gateway",
        default=GATEWAYS[0],
        metavar="{" + ",".join(GATEWAYS) + "}",
        help="what answers at the gateway's address: ours, or Debian's nginx in its place "
        "(same routes, upstream keep-alive, passive health; with --validate-at gateway, "
        "auth_request to the auth service's edge check; --target local, or compose: its "
        "service gateway-nginx, profile nginx). An axis: ours,nginx runs both side by side",
    )
    where.add_argument(
        "--port-base",
        type=int,
        default=28000,
        help=f"first port of the private block of the local clusters ({PORT_BLOCK} ports)",
    )
    where.add_argument(
        "--compose-project",
        default="authbench",
        help="compose: the project to (re)configure per group (JWT_REVOCATION, JWT_ALG, "
        "--scale resource=N); build its images first with `docker compose build`; swarm: "
        "the stack's name",
    )
    external = parser.add_argument_group(
        "target external (a deployment something else runs: measured, never changed)"
    )
    external.add_argument(
        "--gateway-url",
        default=None,
        help="external: the deployment's gateway, e.g. http://127.0.0.1:8080 (a kubectl "
        "port-forward, a load balancer); --replicas is then what you state it runs",
    )
    external.add_argument(
        "--auth-url", default=None, help="external: the auth API if not behind the gateway"
    )
    external.add_argument(
        "--redis",
        default=None,
        metavar="HOST:PORT",
        help="external: its Redis, reachable from here, for INFO sampling (ops/s, Redis CPU); "
        "without it those columns stay empty",
    )
    where.add_argument(
        "--results-dir",
        default=str(PROJECT_ROOT / "results"),
        help="where results/<run-id>/ is written",
    )
    where.add_argument("--run-id", default="", help="name of the run folder (default: time)")
    where.add_argument("--no-report", action="store_true", help="skip drawing the report")
    where.add_argument(
        "--no-locust-html", action="store_true",
        help="skip Locust's own HTML report per cell (about 1 MB each); CSVs are always kept",
    )  # fmt: skip
    where.add_argument(
        "--live", nargs="?", type=int, const=8089, default=None, metavar="PORT",
        help="watch each cell in Locust's web UI at http://127.0.0.1:PORT (default 8089) "
        "while the matrix runs; the cells start and end by themselves as without it",
    )  # fmt: skip
    parser.set_defaults(func=main)  # fmt: skip


def build_config(args: argparse.Namespace) -> BenchConfig:
    modes = validate_modes(parse_list(args.modes))
    replicas = tuple(int(r) for r in parse_list(args.replicas))
    if not replicas or min(replicas) < 1 or max(replicas) > 19:
        raise ValueError("--replicas: counts from 1 to 19")
    loads = tuple(Load.parse(text) for text in parse_list(args.loads))
    algs = tuple(parse_list(args.jwt_algs))
    unknown = [a for a in algs if a not in JWT_ALGS]
    if unknown or not algs:
        raise ValueError(f"--jwt-algs: choose from {', '.join(JWT_ALGS)}")
    if args.repeats < 1 or args.capture <= 0 or args.warmup < 0 or args.rest < 0:
        raise ValueError("--repeats >= 1, --capture > 0, --warmup and --rest >= 0")
    from pathlib import Path

    if args.live is not None and not 1024 <= args.live <= 65535:
        raise ValueError(f"--live: a port from 1024 to 65535, not {args.live}")
    links = axes.parse_store_rtts(args.store_rtt)
    caps = axes.parse_redis_cpus(args.redis_cpus)
    pads = axes.parse_token_bytes(args.token_bytes)
    ttls = axes.parse_jwt_ttls(args.jwt_ttl)
    places = axes.parse_validate_at(args.validate_at)
    gateways = axes.parse_gateways(args.gateway)
    stores = tuple(dict.fromkeys(parse_list(args.store)))
    if not stores:
        raise ValueError("--store: at least one topology")
    for text in stores:
        try:
            StoreTopology.parse(text)
        except ValueError as err:
            raise ValueError(f"--store: {err}") from None
    protocol = Protocol(
        warmup_s=args.warmup,
        capture_s=args.capture,
        rest_s=args.rest,
        processes=max(1, args.processes),
        accounts=max(1, args.accounts),
        relogin_prob=args.relogin_prob,
        refresh_prob=args.refresh_prob,
        locust_html=not args.no_locust_html,
        live_port=args.live,
        **distributed_options(args),
    )
    matrix = Matrix(
        modes, replicas, loads, algs, args.repeats, args.seed,
        store_links=links, redis_cpus=caps, token_bytes=pads, jwt_ttls=ttls,
        validate_at=places, stores=stores, gateways=gateways,
    )  # fmt: skip
    if args.preset:
        quotas = tuple(c for c in caps if c is not None)  # --redis-cpus, if given
        preset = (
            presets.PRESETS[args.preset](seed=args.seed, jwt_alg=algs[0], redis_cpus=quotas)
            if quotas
            else presets.PRESETS[args.preset](seed=args.seed, jwt_alg=algs[0])
        )
        matrix = preset.matrix.with_stores(stores).with_gateways(gateways)
        protocol = dataclasses.replace(protocol, **preset.protocol)
    link = store_link.choose(args.store_link, args.target)
    matrix = matrix.with_link(link.via)
    if link.via == store_link.NETEM and any(
        cell.store.proxied and cell.topology != "single" for cell in matrix.configs()
    ):
        raise ValueError("--store-link netem: a store distance only with --store single")
    every_cap = {cell.redis_cpus for cell in matrix.configs()}
    axes.check_redis_cpus_possible(args.target, sorted(every_cap, key=lambda c: c or 0))
    if args.target not in ("local", "compose") and any(
        cell.store.proxied for cell in matrix.configs()
    ):
        raise ValueError(
            f"--store-rtt: only with --target local or compose (the delay proxy must sit "
            f"between the services and Redis, which target {args.target} does not start)"
        )
    if args.pin and args.target != "local":
        raise ValueError("--pin: only with --target local")
    if matrix.gateways != (GATEWAYS[0],) and args.target not in ("local", "compose"):
        raise ValueError(f"--gateway {args.gateway}: only with --target local or compose")
    endpoints = external_endpoints(args, matrix)

    return BenchConfig(
        settings_env=introspection_settings(args.introspect_cache),
        matrix=matrix,
        protocol=protocol,
        placement=axes.Placement.split() if args.pin else None,
        target=args.target,
        port_base=args.port_base,
        compose_project=args.compose_project,
        results_dir=Path(args.results_dir),
        run_id=args.run_id,
        render_report=not args.no_report,
        external=endpoints,
        store_link=link,
    )


def introspection_settings(cache_s: float | None) -> dict[str, str]:
    """--introspect-cache as the services' INTROSPECT_CACHE_S, checked by the services' own
    rule (authcore.config), so a bad value fails here naming the setting, not mid-run."""
    if cache_s is None:
        return {}
    env = {"INTROSPECT_CACHE_S": repr(cache_s)}
    try:
        Settings.from_env(env)
    except ConfigError as err:
        raise ValueError(f"--introspect-cache: {err.detail}") from None
    return env


def distributed_options(args: argparse.Namespace) -> dict[str, Any]:
    """--expect-workers, --master-bind, --worker-wait as Protocol fields; ValueError."""
    if args.expect_workers < 0 or args.worker_wait <= 0:
        raise ValueError("--expect-workers >= 0 and --worker-wait > 0")
    split_address(args.master_bind)  # ValueError names the form
    return {
        "expect_workers": args.expect_workers,
        "master_bind": args.master_bind,
        "worker_wait_s": args.worker_wait,
    }


def external_endpoints(args: argparse.Namespace, matrix: Matrix) -> Endpoints | None:
    """--target external's addresses; ValueError for what it cannot do (or a lone flag)."""
    given = [f for f in ("gateway_url", "auth_url", "redis") if getattr(args, f, None)]
    if args.target != "external":
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')}: only with --target external")
        return None
    if not args.gateway_url:
        raise ValueError("--target external needs --gateway-url")
    if len(matrix.replicas) != 1:
        raise ValueError(
            "--target external: the harness cannot scale it; give the one --replicas count "
            "it runs (recorded as stated, not controlled)"
        )
    endpoints = Endpoints(args.gateway_url, args.auth_url, args.redis)
    check_modes(endpoints, sorted({cell.mode for cell in matrix.configs()}))
    return endpoints


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
    except ValueError as err:
        print(f"authbench bench: {err}", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM unwind the run (stopping Locust and the clusters) and keep the
    # cells measured so far; set explicitly, since a shell may start us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.live is not None:
        print(f"live: Locust's web UI at http://127.0.0.1:{args.live} during each cell")
    try:
        run_dir = run(config, say=lambda msg: print(msg, flush=True))
    except KeyboardInterrupt:
        print("authbench bench: interrupted; partial results are kept", file=sys.stderr)
        return 130
    except (DeploymentError, PortsError) as err:
        print(f"authbench bench: {err}", file=sys.stderr)
        return 1
    except FileExistsError as err:
        print(f"authbench bench: {err.filename} exists; choose another --run-id", file=sys.stderr)
        return 2
    report = run_dir / "report.html"
    print(f"\nresults: {run_dir}")
    print(report if report.exists() else run_dir / "summary.csv")
    return 0
