"""`python -m gateway`: serve the gateway; GATEWAY_WORKERS processes share the port."""

from __future__ import annotations

import os

from authcore.config import Settings
from authcore.http import run
from gateway.app import create_app, serve

DEFAULT_PORT = 8080


def main() -> None:
    settings = Settings.from_env_or_exit("gateway")
    workers = settings.gateway_workers or os.cpu_count() or 1
    port = settings.port or DEFAULT_PORT
    # Extra workers are forked before any event loop exists; each serves the same port
    # through SO_REUSEPORT and the kernel spreads connections between them.
    children: list[int] = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            children = []
            break
        children.append(pid)
    try:
        run(
            lambda: serve(create_app(settings), settings.host, port, reuse_port=workers > 1),
            settings.log_level,
        )
    finally:
        for pid in children:
            _stop(pid)


def _stop(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


if __name__ == "__main__":
    main()
