"""Issue 11 (item 3): slow bodies and connection floods cost the gateway little and bounded.

Thousands of connections from one address (127.0.0.2) send a request head and then
trickle its body a byte a second, steadily enough that no idle timer would ever fire.
The gateway admits GATEWAY_MAX_CONNECTIONS_PER_CLIENT of them (the rest get 429 at
once), ends the admitted ones with 408 when CLIENT_BODY_TIMEOUT_S has passed since their
head, and meanwhile a client on 127.0.0.1 is served at its normal latency. With a small
open-files limit the total cap and the descriptor reserve keep the upstream connections
and the health checks going: nothing is ejected, clients already connected are served.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import resource
import socket
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.client import request
from tests.gateway.conftest import GatewayRig, start_rig, stop_rig

pytestmark = pytest.mark.slow  # thousands of slow sockets and a body timeout to wait out

ATTACKER = "127.0.0.2"  # every slow connection comes from here; the normal client is .1
HEAD = (
    b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 60000\r\n\r\n{"
)


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    """This test process holds thousands of sockets itself."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 8192:
        pytest.skip(f"open-files hard limit {hard} < 8192")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def slow_body(port: int, give_up_s: float) -> tuple[str, float]:
    """One slow-body connection from ATTACKER: its ending (the status the gateway sent,
    `closed` without one, or `open` if still held after `give_up_s`) and when it came."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(ATTACKER, 0))
    try:
        try:  # a refused connection is answered before it sends a byte
            first = await asyncio.wait_for(reader.read(4096), 0.3)
        except TimeoutError:
            first = None
        if first is None:
            writer.write(HEAD)
            read = asyncio.ensure_future(reader.read(4096))
            while loop.time() - started < give_up_s:
                done, _ = await asyncio.wait({read}, timeout=1.0)
                if done:
                    break
                writer.write(b" ")  # one byte a second: never idle, never finished
            if not read.done():
                read.cancel()
                return "open", loop.time() - started
            first = read.result()
        if not first:
            return "closed", loop.time() - started
        return first.split(b" ", 2)[1].decode(), loop.time() - started
    except (ConnectionResetError, BrokenPipeError):
        return "closed", loop.time() - started
    finally:
        writer.close()


async def flood(port: int, count: int, give_up_s: float) -> list[asyncio.Task[tuple[str, float]]]:
    """Start `count` slow connections (in batches, as the accept queue allows)."""
    tasks = []
    for start in range(0, count, 250):
        batch = [
            asyncio.ensure_future(slow_body(port, give_up_s))
            for _ in range(min(250, count - start))
        ]
        tasks += batch
        await asyncio.sleep(0.05)
    return tasks


def latencies(rig: GatewayRig, n: int) -> list[float]:
    """`n` requests of a normal client on 127.0.0.1, each on a new connection."""
    took = []
    for _ in range(n):
        started = time.perf_counter()
        answer = request(rig.url, "GET", "/api/echo", timeout=5)
        took.append(time.perf_counter() - started)
        assert answer.status == 200, answer.body[:200]
    return took


async def test_thousands_of_slow_bodies_from_one_address_leave_others_served(
    tmp_path: Path,
) -> None:
    body_timeout_s, slow, per_client = 4, 2000, 1024
    give_up_s = body_timeout_s + 8  # what a slow body still open then is reported as
    rig = start_rig(tmp_path, env={"CLIENT_BODY_TIMEOUT_S": str(body_timeout_s)})
    try:
        before = await asyncio.to_thread(latencies, rig, 40)
        tasks = await flood(rig.port, slow, give_up_s=give_up_s)
        await asyncio.sleep(1.0)  # every slow connection is open and trickling now
        during = await asyncio.to_thread(latencies, rig, 40)
        outcomes = await asyncio.gather(*tasks)
    finally:
        stop_rig(rig.processes)
    endings = Counter(status for status, _ in outcomes)
    # The per-address cap: the first `per_client` are held, the rest refused at once.
    assert endings["429"] == slow - per_client, endings
    assert endings["408"] == per_client, endings
    held = [took for status, took in outcomes if status == "408"]
    # Ended by the body timeout: not before it, and (with a sweep a second and this
    # process's own 2,000 tasks on a loaded machine) well before the slow client gives up.
    assert min(held) > body_timeout_s - 0.5, min(held)
    assert max(held) < give_up_s - 1, max(held)
    # The normal client's latency is what it was without the flood.
    assert statistics.median(during) < 5 * statistics.median(before) + 0.02, (before, during)
    assert max(during) < 2.0, max(during)


def _keep_alive_clients(rig: GatewayRig, n: int) -> list[http.client.HTTPConnection]:
    clients = []
    for _ in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", rig.port, timeout=10)
        conn.request("GET", "/api/echo")
        assert conn.getresponse().read()
        clients.append(conn)
    return clients


def _refusal(port: int) -> tuple[int, dict[str, str], dict[str, str]] | None:
    """What a new connection from 127.0.0.1 is told before it sends anything: status,
    headers and JSON body, or None when the gateway says nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def _use(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    answer = conn.getresponse()
    answer.read()
    return answer.status


async def test_at_the_total_cap_the_reserve_keeps_upstreams_and_health_checks_going(
    tmp_path: Path,
) -> None:
    # 256 descriptors, 64 kept back: at most (256 - 64) // 2 = 96 client connections.
    rig = start_rig(
        tmp_path,
        env={"GATEWAY_FD_RESERVE": "64", "CLIENT_BODY_TIMEOUT_S": "4", "HEALTH_INTERVAL_S": "0.3"},
        upstreams=1,
        nofile=256,
    )
    try:
        clients = await asyncio.to_thread(_keep_alive_clients, rig, 8)
        tasks = await flood(rig.port, 400, give_up_s=12)
        await asyncio.sleep(1.5)  # several health rounds while the gateway is full
        # Clients already connected: each request needs an upstream connection at once.
        statuses = await asyncio.gather(
            *(asyncio.to_thread(_use, conn, "/api/slow?s=0.3") for conn in clients)
        )
        ready = await asyncio.to_thread(_use, clients[0], "/readyz")
        full = await asyncio.to_thread(_refusal, rig.port)
        outcomes = await asyncio.gather(*tasks)
        after = await asyncio.to_thread(request, rig.url, "GET", "/api/echo")
        for conn in clients:
            conn.close()
    finally:
        stop_rig(rig.processes)
    assert statuses == [200] * 8
    assert ready == 200  # no upstream ejected: health checks had their descriptors
    assert full is not None and full[0] == 503, full
    assert full[2]["error"] == "too_many_connections" and "retry-after" in full[1]
    endings = Counter(status for status, _ in outcomes)
    assert endings["408"] == 96 - 8 and endings["503"] == 400 - 88, endings
    assert after.status == 200  # the slow ones are gone: room again
    log = rig.log.read_text(errors="replace")
    assert "Too many open files" not in log and "ejected" not in log, log[-3000:]
