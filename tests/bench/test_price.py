"""The hybrids' price studies' shared counting (authbench/bench/price.py), against a real
redis-server: the commands between two INFOs are exactly the ones sent, the second INFO
left out, and a read window's figures follow from them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from authbench.bench.price import command_calls, commands_sent, read_window, rss_kib


@pytest.fixture
def client(redis_port: int) -> Iterator[redis.Redis]:
    r = redis.Redis(port=redis_port)
    yield r
    r.close()


def test_commands_between_two_infos_are_the_ones_sent(client: redis.Redis) -> None:
    before = command_calls(client)
    for i in range(7):
        client.get(f"k{i}")
    client.set("k", "v")
    sent = commands_sent(before, command_calls(client))
    assert sent == {"get": 7, "set": 1}  # neither INFO counted


def test_a_read_window_gives_commands_per_read() -> None:
    figures = read_window(reads=400, seconds=2.0, failures=1, sent={"get": 2, "ping": 2})
    assert figures["reads_per_s"] == 200.0
    assert figures["redis_commands"] == 4
    assert figures["redis_commands_per_read"] == 0.01
    assert read_window(0, 1.0, 0, {})["redis_commands_per_read"] is None


def test_rss_is_this_process_resident_memory() -> None:
    status = Path("/proc/self/status").read_text()
    vmrss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    assert abs(rss_kib(os.getpid()) - vmrss) < 0.2 * vmrss
