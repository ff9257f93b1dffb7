"""The one place authcore leans on aiohttp internals, and the test that breaks loudly if an
upgrade moves them.

aiohttp answers errors found by its HTTP parser (a header line too long, a request line
that is not HTTP) in `RequestHandler.handle_error`, before routing, so no middleware
sees them; it offers no public hook to change that answer (3.14: `web.Server.__call__`
builds a plain `RequestHandler`, and `AppRunner` takes no handler class). authcore.http
therefore overrides `AppRunner._make_server` and gives the server a subclass whose
factory builds `JsonErrorRequestHandler`. If aiohttp renames any of that, parser errors
would silently turn into text/plain answers: these tests say so by name first.
"""

from __future__ import annotations

import inspect
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from authbench.process import free_port_block
from authbench.targets.local import LocalCluster, Ports
from authcore.http import JsonErrorAppRunner, JsonErrorRequestHandler, _JsonErrorServer

BROKEN = "aiohttp changed the internals authcore.http relies on (see its JsonErrorAppRunner)"


def test_the_aiohttp_internals_the_hook_uses_are_still_there() -> None:
    assert inspect.iscoroutinefunction(getattr(web.AppRunner, "_make_server", None)), BROKEN
    assert issubclass(JsonErrorAppRunner, web.AppRunner), BROKEN
    parameters = list(inspect.signature(RequestHandler.handle_error).parameters)
    assert parameters == ["self", "request", "status", "exc", "message"], (BROKEN, parameters)
    init = inspect.signature(web.Server.__init__).parameters
    assert "request_factory" in init and "loop" in init, (BROKEN, list(init))
    # The factory the server installs for each connection is ours.
    source = inspect.getsource(web.Server.__call__)
    assert "RequestHandler(self" in source and "self._kwargs" in source, (BROKEN, source)
    assert _JsonErrorServer.__call__ is not web.Server.__call__


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        replicas=1,
        ports=Ports.block(free_port_block()),
        settings_env={"AUTH_SEED_USERS": "5"},
        workdir=Path(tmp_path_factory.mktemp("parser-errors")),
    )
    cluster.start()
    yield cluster
    cluster.stop()


def _raw(url: str, payload: bytes) -> tuple[bytes, bytes]:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"\x16\x03\x01 not http at all\r\n\r\n", b"400", "bad_request"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", b"431",
         "headers_too_large"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414", "uri_too_long"),
    ],
    ids=["not-http", "header-too-long", "url-too-long"],
)  # fmt: skip
@pytest.mark.parametrize("service", ["auth", "replica"])
def test_parser_errors_of_the_services_are_answered_in_json(
    services: LocalCluster, service: str, payload: bytes, status: bytes, code: str
) -> None:
    url = services.auth_url if service == "auth" else services.replica_urls()[0]
    head, body = _raw(url, payload)
    assert head.split(b" ")[1] == status, (BROKEN, head[:200])
    assert b"content-type: application/json" in head.lower(), (BROKEN, head[:300])
    assert json.loads(body)["error"] == code


def test_the_handler_class_in_use_is_ours() -> None:
    assert issubclass(JsonErrorRequestHandler, RequestHandler)
    assert JsonErrorRequestHandler.handle_error is not RequestHandler.handle_error
