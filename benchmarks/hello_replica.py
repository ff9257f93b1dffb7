"""A hello-world aiohttp replica on uvloop: the upstream both proxies are measured against.

It answers every GET under /api/ (and /auth/) with a small JSON body, as cheaply as
aiohttp allows, so the benchmark measures the proxy in front of it and nothing else.
`python benchmarks/hello_replica.py PORT [BODY_BYTES]`
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


def create_app(body_bytes: int) -> web.Application:
    body = b'{"hello":"' + b"x" * max(0, body_bytes - 12) + b'"}'

    async def hello(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read(), content_type="application/octet-stream")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/healthz", hello)
    app.router.add_get("/api/{tail:.*}", hello)
    app.router.add_get("/auth/{tail:.*}", hello)
    app.router.add_post("/api/{tail:.*}", echo)
    return app


def main() -> None:
    port = int(sys.argv[1])
    body_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(create_app(body_bytes), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
