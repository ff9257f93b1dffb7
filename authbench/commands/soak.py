"""`authbench soak`: hours of steady mixed load with memory, key and descriptor sampling."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from authbench.chaos.load import LoadError
from authbench.process import PROJECT_ROOT
from authbench.soak.criteria import Bounds, failed
from authbench.soak.run import SoakConfig, run
from authbench.targets.base import DeploymentError

_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"\s*(?:{_NUMBER}h)?\s*(?:{_NUMBER}m)?\s*(?:{_NUMBER}s?)?\s*")


def duration(text: str) -> float:
    """Seconds from `90`, `90s`, `30m`, `2h` or `1h30m`."""
    match = _DURATION.fullmatch(text)
    if not text.strip() or match is None or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise argparse.ArgumentTypeError("a duration must be positive")
    return total


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    defaults = SoakConfig()
    bounds = Bounds()
    parser = subparsers.add_parser(
        "soak",
        help="long steady mixed load of every mode, sampling memory, keys and descriptors",
        description="Start a local cluster serving every mode side by side, run steady "
        "load (reads, logins, refreshes, logouts) for --duration, and sample every process's "
        "RSS and open descriptors, Redis used_memory and its key count per prefix every "
        "--interval. Writes samples (JSON, CSV), charts and a manifest to results/<run>/. "
        "Exits 1 when a pass criterion fails (each is printed with its bound): after the "
        "warm-up, the slope of each series is within its bound, every key has a TTL, and "
        "the key count stays within what the live credentials can hold.",
    )
    parser.add_argument("--duration", type=duration, default=duration("30m"),
                        help="how long the load runs: 90s, 30m, 2h (default 30m)")  # fmt: skip
    parser.add_argument("--interval", type=duration, default=defaults.interval_s,
                        help="time between samples (default 60s)")  # fmt: skip
    parser.add_argument("--warmup", type=duration, default=None,
                        help="samples before this are not held to the bounds "
                        "(default: a third of the run, at most 5m)")  # fmt: skip
    parser.add_argument("--lifetime", type=int, default=defaults.lifetime_s,
                        help="session idle timeout and access-token lifetime in seconds; "
                        "refresh tokens live twice, absolute lifetimes four times as long "
                        f"(default {defaults.lifetime_s})")  # fmt: skip
    parser.add_argument("--users-per-mode", type=int, default=defaults.users_per_mode)
    parser.add_argument("--user-rps", type=float, default=defaults.user_rps,
                        help="requests per second of each user (constant pacing)")  # fmt: skip
    parser.add_argument("--relogin-prob", type=float, default=defaults.relogin_prob,
                        help="chance per request of logout + login")  # fmt: skip
    parser.add_argument("--refresh-prob", type=float, default=defaults.refresh_prob,
                        help="chance per request that a JWT user refreshes")  # fmt: skip
    parser.add_argument("--max-rss-mb-per-h", type=float, default=bounds.max_rss_mb_per_h,
                        help="bound on each process's RSS slope after warm-up")  # fmt: skip
    parser.add_argument("--max-fds-per-h", type=float, default=bounds.max_fds_per_h,
                        help="bound on each process's open-descriptor slope")  # fmt: skip
    parser.add_argument("--max-redis-mb-per-h", type=float, default=bounds.max_redis_mb_per_h,
                        help="bound on Redis used_memory's slope")  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=PROJECT_ROOT / "results")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    if args.users_per_mode < 1 or args.user_rps <= 0 or args.lifetime < 2:
        print("soak: --users-per-mode >= 1, --user-rps > 0, --lifetime >= 2", file=sys.stderr)
        return 2
    if not 0 <= args.relogin_prob <= 1 or not 0 <= args.refresh_prob <= 1:
        print("soak: probabilities are between 0 and 1", file=sys.stderr)
        return 2
    if args.interval > args.duration / 3:
        print("soak: --interval must allow at least 3 samples in --duration", file=sys.stderr)
        return 2
    config = SoakConfig(
        duration_s=args.duration,
        interval_s=args.interval,
        warmup_s=args.warmup,
        lifetime_s=args.lifetime,
        users_per_mode=args.users_per_mode,
        user_rps=args.user_rps,
        relogin_prob=args.relogin_prob,
        refresh_prob=args.refresh_prob,
        bounds=Bounds(args.max_rss_mb_per_h, args.max_fds_per_h, args.max_redis_mb_per_h),
        results_dir=args.results_dir,
    )
    try:
        run_dir, checks = run(config, say=lambda msg: print(msg, flush=True))
    except (DeploymentError, LoadError, OSError) as err:
        print(f"soak: {err}", file=sys.stderr)
        return 1
    print((run_dir / "summary.txt").read_text(), end="")
    bad = failed(checks)
    if bad:
        print("soak FAILED: " + "; ".join(c.line().removeprefix("FAIL ") for c in bad),
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"soak passed; results in {run_dir}")
    return 0
