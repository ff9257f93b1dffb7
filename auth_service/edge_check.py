"""Edge validation behind nginx (`--gateway nginx --validate-at gateway`, issue 15).

nginx cannot check a session in Redis or sign an identity assertion itself; its
`auth_request` asks another service instead, and that service is this endpoint: for each
/api request nginx sends a body-less subrequest, `GET /auth/edge-check`, carrying the
client's own credential headers (Cookie, Authorization) and, in headers nginx sets, the
original request's method (`X-Original-Method`), target (`X-Original-URI`) and request ID
(`X-Request-Id`, the one nginx also forwards to the replica). This endpoint checks the
credential with the auth service's CredentialChecker (session GETEX, JWT signature,
denylist or pushed set, opaque token) and answers 204 with the assertion for that request
line in ASSERTION_HEADER, which nginx copies into the proxied request
(`auth_request_set`), the "phantom token" pattern: the auth service, not nginx, holds the
signing key. A refused credential is the checker's own 401/403; nginx keeps an answer's
headers but not its body, so the machine code goes along in `X-Authbench-Error` too.

Like introspection it is internal: it exists only when this auth service holds
EDGE_ASSERTION_KEY, and a request that came through a gateway (X-Forwarded-For or
Forwarded present; nginx's subrequest is told to send neither) is a 404.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aiohttp import web
from multidict import CIMultiDictProxy

from auth_service.introspection import FORWARDING_HEADERS
from authcore.assertion import ASSERTION_HEADER, AssertionSigner
from authcore.credentials import CredentialChecker
from authcore.errors import AuthbenchError, InvalidField, NotFound
from authcore.http import error_response

EDGE_CHECK_PATH = "/auth/edge-check"
ORIGINAL_METHOD = "X-Original-Method"
ORIGINAL_URI = "X-Original-URI"
REQUEST_ID = "X-Request-Id"
ERROR_HEADER = "X-Authbench-Error"  # the refusal's machine code, for nginx's JSON answer
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_TARGET = 8192


class _OriginalRequest:
    """What CredentialChecker.authenticate reads, with the original request's method (a
    cookie-authenticated state change is checked for CSRF against it, not against GET)."""

    def __init__(self, request: web.Request, method: str) -> None:
        self.method = method
        self.headers: CIMultiDictProxy[str] = request.headers
        self.cookies: Mapping[str, str] = request.cookies


def _original(request: web.Request) -> tuple[str, str, str]:
    headers = request.headers
    method = headers.get(ORIGINAL_METHOD, "")
    target = headers.get(ORIGINAL_URI, "")
    rid = headers.get(REQUEST_ID, "")
    if method not in _METHODS:
        raise InvalidField(f"{ORIGINAL_METHOD} must name the original request's method")
    if not target.startswith("/") or len(target) > _MAX_TARGET or not target.isascii():
        raise InvalidField(f"{ORIGINAL_URI} must be the original request's target")
    if not rid or len(rid) > 200 or not rid.isascii() or not rid.isprintable():
        raise InvalidField(f"{REQUEST_ID} must be the original request's ID")
    return method, target, rid


async def edge_check(
    request: web.Request, checker: CredentialChecker, signer: AssertionSigner | None
) -> web.Response:
    """The answer to one auth_request subrequest (see the module)."""
    if signer is None or any(h in request.headers for h in FORWARDING_HEADERS):
        raise NotFound()
    method, target, rid = _original(request)
    try:
        principal = await checker.authenticate(cast(web.Request, _OriginalRequest(request, method)))
    except AuthbenchError as err:
        # The contract's answer as every service gives it, plus the code in a header:
        # auth_request passes nginx the subrequest's headers, never its body.
        response = error_response(err)
        response.headers[ERROR_HEADER] = err.code
        return response
    line = (method.encode(), target.encode(), rid.encode())
    token = signer.mint(principal.user, principal.mode, *line)
    return web.Response(
        status=204, headers={ASSERTION_HEADER: token.decode("ascii"), "Cache-Control": "no-store"}
    )
