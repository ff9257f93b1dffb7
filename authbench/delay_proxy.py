"""A userspace TCP proxy that delays every byte on the Redis link: store distance, the
slow-Redis fault, and a cut (partitioned) replication link.

`tc qdisc ... netem` is the usual tool, and authbench.store_link uses it where it works
(`--store-link`); this machine's kernel has no netem module, and Toxiproxy cannot be
installed here, so this proxy is the fallback. A LocalCluster started with
`redis_delay_ms` puts this proxy between the services and Redis for its whole life, and
`slow_redis(ms)` switches that delay on and off (the chaos `slow` scenario):

    python -m authbench.delay_proxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT \
        --delay-ms 5

SIGUSR1 switches the delay on, SIGUSR2 off (it starts off); with `--control-file`, SIGUSR1
first reads the delay in ms from that file, so one proxy serves several store distances
(`DelayProxy.set_delay`, the bench's store-distance axis). The word `cut` in that file
instead cuts the link (`DelayProxy.cut`, the failover-partition scenarios): nothing
passes either way, every byte read is held, as a network partition holds TCP segments;
SIGUSR2 heals it and the held bytes follow in order. A connection one end of which closes
while the link is cut is dropped with what it held (the other end never hears of it),
which is what a peer that dies during a partition leaves behind. Each switch prints a
line (`link cut`, `delay on: ...`, `delay off: ...`) to the proxy's log, which
`DelayProxy` waits for. Each chunk read from either
side is held until `delay` after it arrived, then written in order; so a Redis round trip
gains 2 x delay, while throughput is not capped (chunks in flight overlap), which is what
netem's `delay` does. Unlike netem it adds no jitter and does not slow the TCP handshake.
The proxy itself costs a little latency even with the delay off; the slow scenario
compares against its own delay-off period, never against a run without the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from authbench import process

CUT = "cut"  # the control file's word for a cut link


class DelayLink:
    """The delay currently applied, and whether the link is cut, switched by signals."""

    def __init__(self, delay_s: float, control_file: Path | None = None) -> None:
        self.configured_s = delay_s
        self.delay_s = 0.0
        self.control_file = control_file
        self.cut = False
        self._flowing: asyncio.Event | None = None  # set while not cut (made in the loop)

    @property
    def flowing(self) -> asyncio.Event:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            if not self.cut:
                self._flowing.set()
        return self._flowing

    def switch(self, on: bool) -> None:
        text = ""
        if on and self.control_file is not None:
            with contextlib.suppress(OSError):
                text = self.control_file.read_text().strip()
        self.cut = on and text == CUT
        if self.cut:
            self.flowing.clear()
            print("link cut: nothing passes", flush=True)
            return
        if text:
            with contextlib.suppress(ValueError):
                self.configured_s = max(0.0, float(text) / 1000)
        self.delay_s = self.configured_s if on else 0.0
        self.flowing.set()
        print(f"delay {'on' if on else 'off'}: {self.delay_s * 1000:.1f} ms", flush=True)


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    link: DelayLink,
    drop: Callable[[], None],
) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read_side() -> None:
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + link.delay_s, data))
        except (ConnectionError, OSError):
            pass
        if link.cut:
            drop()  # an end closed during the cut: what the link held is lost
        queue.put_nowait((0.0, b""))

    async def write_side() -> None:
        try:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await link.flowing.wait()  # held while the link is cut
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    await asyncio.gather(read_side(), write_side())


async def serve(listen: tuple[str, int], upstream: tuple[str, int], link: DelayLink) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*upstream)
        except OSError:
            client_w.close()  # Redis is down: the client sees a closed connection
            return
        pumps: list[asyncio.Future[None]] = []

        def drop() -> None:
            for writer in (client_w, server_w):
                writer.transport.abort()
            for pump in pumps:
                pump.cancel()

        pumps += [
            asyncio.ensure_future(_pump(client_r, server_w, link, drop)),
            asyncio.ensure_future(_pump(server_r, client_w, link, drop)),
        ]
        await asyncio.gather(*pumps, return_exceptions=True)

    server = await asyncio.start_server(handle, *listen)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, link.switch, True)
    loop.add_signal_handler(signal.SIGUSR2, link.switch, False)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"listening on {listen[0]}:{listen[1]} -> {upstream[0]}:{upstream[1]}", flush=True)
    async with server:
        await stop.wait()


class DelayProxy:
    """The delay proxy as a child process (authbench.process.spawn)."""

    def __init__(self, listen: int, upstream: int, delay_ms: float, log_path: Path) -> None:
        self.listen = listen
        self.delay_ms = delay_ms
        self._log_path = log_path
        self._argv = [
            sys.executable, "-m", "authbench.delay_proxy",
            "--listen", f"127.0.0.1:{listen}", "--upstream", f"127.0.0.1:{upstream}",
            "--delay-ms", str(delay_ms), "--control-file", str(log_path.with_suffix(".delay")),
        ]  # fmt: skip
        self.control_file = log_path.with_suffix(".delay")
        self.control_file.unlink(missing_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        """Start the proxy and wait until it accepts connections."""
        self.process = process.spawn(self._argv, self._log_path, env=process.python_env())
        self.wait_listening()

    def wait_listening(self, timeout_s: float = 10.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the delay proxy exited at start")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.listen)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the delay proxy did not listen in time")

    def delay(self, on: bool) -> None:
        """Switch the configured delay on or off."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def cut(self, timeout_s: float = 10.0) -> None:
        """Cut the link (nothing passes either way, bytes are held) and return once the
        proxy has done so; `delay(False)` or `set_delay(0)` heals it."""
        assert self.process is not None
        before = self._log_text().count("link cut")
        self.control_file.write_text(CUT)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while self._log_text().count("link cut") == before:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the proxy did not cut its link; see {self._log_path}")
            time.sleep(0.01)

    def _log_text(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def set_delay(self, delay_ms: float) -> None:
        """Switch the delay on at `delay_ms` each way (0: off), whatever was configured."""
        if delay_ms <= 0:
            self.delay(False)
            return
        self.control_file.write_text(f"{delay_ms:g}")
        self.delay_ms = delay_ms
        self.delay(True)

    def stop(self) -> None:
        if self.process is not None:
            process.stop([self.process])


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1") and not _in_container():
        # The proxy only ever relays between loopback processes the project started, or,
        # inside a container (compose's redis-proxy), on that stack's own network.
        raise argparse.ArgumentTypeError("only loopback addresses are allowed")
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT") from None


def _in_container() -> bool:
    """Whether this process runs in a Docker container (the engine writes /.dockerenv)."""
    return Path("/.dockerenv").exists()


def _precise_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authbench.delay_proxy",
        description="Relay TCP between loopback ports, adding a fixed delay to each direction "
        "while switched on (SIGUSR1 on, SIGUSR2 off; starts off). With --control-file, "
        "SIGUSR1 reads the delay in ms from it, or the word 'cut': the link then passes "
        "nothing (bytes held) until SIGUSR2.",
    )
    parser.add_argument("--listen", type=_address, required=True, help="127.0.0.1:PORT")
    parser.add_argument("--upstream", type=_address, required=True, help="127.0.0.1:PORT")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="one-way delay (default 5)")
    parser.add_argument(
        "--control-file",
        type=Path,
        default=None,
        help="on SIGUSR1, read the one-way delay in ms (or 'cut') from this file when it exists",
    )
    args = parser.parse_args(argv)
    link = DelayLink(args.delay_ms / 1000, args.control_file)
    with contextlib.suppress(KeyboardInterrupt):
        # select(), not epoll: its timeout has µs resolution, where epoll rounds every
        # wait up to a whole ms (a 0.5 ms delay would become 1 ms, and 1 ms RTT over 2).
        with asyncio.Runner(loop_factory=_precise_loop) as runner:
            runner.run(serve(args.listen, args.upstream, link))
    return 0


if __name__ == "__main__":
    sys.exit(main())
