"""Overload (issue 16): bounded in-flight requests, fast 503 + Retry-After past them, and
no slow upstream taking every connection of the gateway.

Against a real gateway in front of real echo upstreams; a "slow replica" is one frozen
with SIGSTOP, the way a replica stuck in a GC pause or a swap storm looks from outside.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from authcore.config import Settings
from authcore.errors import ConfigError
from authcore.http import base_app
from authcore.overload import InFlightLimit
from tests.gateway.conftest import GatewayRig, start_rig, stop_rig


def _get(port: int, path: str, timeout: float = 15.0) -> tuple[int, float, dict[str, str], bytes]:
    """(status, seconds, headers, body) of one GET on a fresh connection; 0 = no answer."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, time.monotonic() - started, dict(resp.getheaders()), body
    except OSError:
        return 0, time.monotonic() - started, {}, b""
    finally:
        conn.close()


def _burst(
    port: int, paths: list[str], clients: int = 0
) -> list[tuple[int, float, dict[str, str], bytes]]:
    """GET every path, `clients` at a time (default: all at once)."""
    with ThreadPoolExecutor(clients or len(paths)) as pool:
        return list(pool.map(lambda p: _get(port, p), paths))


RigFactory = Callable[[dict[str, str]], GatewayRig]


@pytest.fixture
def rig_with(tmp_path: Path) -> Iterator[RigFactory]:
    started: list[GatewayRig] = []

    def _make(env: dict[str, str]) -> GatewayRig:
        workdir = tmp_path / f"rig{len(started)}"
        workdir.mkdir()
        rig = start_rig(workdir, env)
        started.append(rig)
        return rig

    yield _make
    for rig in started:
        for proc in rig.processes.values():  # a test may leave an upstream stopped
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        stop_rig(rig.processes)


def test_a_frozen_upstream_takes_only_its_share_of_connections(rig_with: RigFactory) -> None:
    rig = rig_with(
        {
            "GATEWAY_MAX_INFLIGHT_PER_UPSTREAM": "10",
            "UPSTREAM_TIMEOUT_S": "3",
            "HEALTH_INTERVAL_S": "60",  # no ejection during the test: only the cap helps
        }
    )
    frozen = rig.processes[f"echo-{rig.upstream_ports[0]}"]
    os.kill(frozen.pid, signal.SIGSTOP)
    # 20 clients, 60 requests: the healthy upstream never holds more than the 10 clients
    # that are not stuck, so it never reaches its cap of 10.
    answers = _burst(rig.port, [f"/api/n{i}" for i in range(60)], clients=20)
    # "Fast": before the 3 s that a request stuck at the frozen upstream waits for its 504
    # (a busy CI machine makes healthy answers slow too, but not that slow).
    fast_ok = [a for a in answers if a[0] == 200 and a[1] < 2.8]
    stuck = [a for a in answers if a[0] != 200]
    # At most 10 ever wait for the frozen one (then 504 at UPSTREAM_TIMEOUT_S); round robin
    # without the cap sends it every other request, until all 20 clients are stuck there.
    assert len(stuck) <= 10, [a[:2] for a in stuck]
    assert len(fast_ok) >= 50, sorted(a[:2] for a in answers)
    assert all(a[0] == 504 for a in stuck)
    served_by = {json.loads(a[3])["port"] for a in fast_ok}
    assert served_by == {rig.upstream_ports[1]}


def test_over_the_in_flight_cap_requests_get_a_fast_503_with_retry_after(
    rig_with: RigFactory,
) -> None:
    rig = rig_with({"GATEWAY_MAX_INFLIGHT": "5", "UPSTREAM_TIMEOUT_S": "5"})
    answers = _burst(rig.port, ["/api/slow?s=2"] * 12)
    admitted = [a for a in answers if a[0] == 200]
    shed = [a for a in answers if a[0] == 503]
    assert len(admitted) == 5 and len(shed) == 7, sorted(a[:2] for a in answers)
    for _status, seconds, headers, body in shed:
        assert seconds < 1.0, seconds  # answered at once, not after the slow ones
        assert headers.get("Retry-After") == "1"
        assert json.loads(body)["error"] == "overloaded"
    assert all(a[1] >= 1.9 for a in admitted)
    # The cap is in-flight, not a budget: once they are done, requests pass again.
    assert _get(rig.port, "/api/again")[0] == 200


def test_every_upstream_at_its_cap_is_a_fast_503_not_a_queue(rig_with: RigFactory) -> None:
    rig = rig_with({"GATEWAY_MAX_INFLIGHT_PER_UPSTREAM": "2", "UPSTREAM_TIMEOUT_S": "5"})
    answers = _burst(rig.port, ["/api/slow?s=2"] * 7)
    shed = [a for a in answers if a[0] == 503]
    assert sum(a[0] == 200 for a in answers) == 4 and len(shed) == 3
    assert all(a[1] < 1.0 and a[2].get("Retry-After") == "1" for a in shed)


async def test_a_replica_sheds_api_requests_past_its_cap_but_always_answers_probes() -> None:
    limit = InFlightLimit(2, 3, "replica")
    release = asyncio.Event()
    both_in = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        if limit.inflight == 2:
            both_in.set()
        await release.wait()
        return web.json_response({"ok": True})

    app = base_app("resource")
    app.middlewares.append(limit.middleware())
    app.router.add_get("/api/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as client:
            first = [asyncio.create_task(client.get(base + "/api/slow")) for _ in range(2)]
            await asyncio.wait_for(both_in.wait(), 10)
            started = time.monotonic()
            async with client.get(base + "/api/slow") as shed:
                assert shed.status == 503
                assert shed.headers["Retry-After"] == "3"
                assert (await shed.json())["error"] == "overloaded"
            assert time.monotonic() - started < 1.0
            async with client.get(base + "/healthz") as probe:
                assert probe.status == 200  # busy, not dead: never ejected for shedding
            release.set()
            for task in first:
                async with await task as resp:
                    assert resp.status == 200
            assert limit.inflight == 0
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "name", ["GATEWAY_MAX_INFLIGHT", "GATEWAY_MAX_INFLIGHT_PER_UPSTREAM", "REPLICA_MAX_INFLIGHT"]
)
@pytest.mark.parametrize("value", ["0", "-3", "lots"])
def test_bad_in_flight_limits_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
