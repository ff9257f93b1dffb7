"""A real upstream for the gateway's tests: `python -m tests.gateway.echo_upstream PORT`.

It reports what the gateway sent it (method, path, headers, body) and can answer in the
ways a proxy must cope with: chunked and large bodies, slowness, a drop mid-answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from aiohttp import web


async def echo(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            "headers": [[k.decode(), v.decode()] for k, v in request.raw_headers],
            "body_length": len(body),
            "body_sha": hashlib.sha256(body).hexdigest(),
            "port": request.app["port"],
        },
        headers={"X-Upstream": "echo", "X-Request-Id": "upstream-made-this-up"},
    )


async def big(request: web.Request) -> web.StreamResponse:
    """`n` bytes, chunked (no Content-Length) unless ?length=1."""
    n = int(request.query.get("n", "1000000"))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    if request.query.get("length"):
        response.content_length = n
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    block = b"0123456789abcdef" * 4096
    sent = 0
    while sent < n:
        piece = block[: min(len(block), n - sent)]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def slow(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(float(request.query.get("s", "2")))
    return web.json_response({"slow": True})


async def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (a replica dying mid-request)."""
    request.app["drops"] += 1
    assert request.transport is not None
    request.transport.abort()
    await asyncio.sleep(0.1)
    raise ConnectionResetError()


async def cut(request: web.Request) -> web.StreamResponse:
    """Start a 1 MB answer, send part of it, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = 1_000_000
    await response.prepare(request)
    await response.write(b"x" * 10_000)
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()
    return response


async def drops(request: web.Request) -> web.Response:
    return web.json_response({"drops": request.app["drops"]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(port: int) -> web.Application:
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app["port"] = port
    app["drops"] = 0
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/big", big)
    app.router.add_get("/api/slow", slow)
    app.router.add_route("*", "/api/drop", drop)
    app.router.add_get("/api/cut", cut)
    app.router.add_get("/api/drops", drops)
    app.router.add_route("*", "/api/{tail:.*}", echo)
    app.router.add_route("*", "/auth/{tail:.*}", echo)
    return app


if __name__ == "__main__":
    port = int(sys.argv[1])
    web.run_app(create_app(port), host="127.0.0.1", port=port, access_log=None, print=None)
