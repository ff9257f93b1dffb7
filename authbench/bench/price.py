"""What the price studies of the hybrids share (bench/pushlist_price.py and
bench/session_cache_price.py): Redis's commands counted around a window of steady reads,
and a process's resident memory.

    before = command_calls(client); ...reads...; after = command_calls(client)
    figures = read_window(reads, seconds, failures, commands_sent(before, after))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psutil
import redis


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls so far per command (INFO commandstats), e.g. {"get": 12, "info": 3}."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def commands_sent(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """The commands Redis served between two `command_calls`, the second INFO left out."""
    sent = {k: after[k] - before.get(k, 0) for k in after}
    sent["info"] = sent.get("info", 0) - 1  # the `after` INFO itself
    return {k: v for k, v in sorted(sent.items()) if v}


def read_window(
    reads: int, seconds: float, failures: int, sent: Mapping[str, int]
) -> dict[str, Any]:
    """The figures of one window of steady reads: rate, failures, Redis commands per read."""
    total = sum(sent.values())
    return {
        "reads": reads,
        "seconds": round(seconds, 2),
        "reads_per_s": round(reads / seconds, 1),
        "read_failures": failures,
        "redis_commands": total,
        "redis_commands_by_name": dict(sent),
        "redis_commands_per_read": round(total / reads, 5) if reads else None,
    }


def rss_kib(pid: int) -> int:
    """A process's resident memory in KiB (VmRSS)."""
    return int(psutil.Process(pid).memory_info().rss // 1024)
