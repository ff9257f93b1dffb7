"""A replica under edge validation (VALIDATE_AT=gateway): the gateway's identity assertion
is the only credential it accepts (authcore.assertion says what it binds and why).

A client's own cookie or Bearer token is not looked at: the gateway checked it, and a
request that did not come through the gateway has no valid assertion, so it gets a 401.
More than one assertion header is refused, never resolved by picking one.
"""

from __future__ import annotations

from aiohttp import web

from authcore.assertion import ASSERTION_HEADER, AssertionVerifier
from authcore.credentials import Principal
from authcore.errors import InvalidCredential


class AssertionChecker:
    """`authenticate(request)` like authcore's CredentialChecker, from the assertion."""

    def __init__(self, verifier: AssertionVerifier) -> None:
        self._verifier = verifier

    async def authenticate(self, request: web.Request) -> Principal:
        values = request.headers.getall(ASSERTION_HEADER, ())
        if len(values) > 1:
            raise InvalidCredential("more than one identity assertion")
        token = values[0].encode("latin-1") if values else None
        rid = request.headers.get("X-Request-Id")
        identity = self._verifier.verify(
            token,
            request.method.encode("ascii"),
            request.raw_path.encode("latin-1"),
            rid.encode("latin-1") if rid is not None else None,
        )
        return Principal(identity.user, identity.mode)
