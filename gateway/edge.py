"""Edge validation (VALIDATE_AT=gateway): the gateway checks the credential of every /api
request once, with authcore's own CredentialChecker (session lookup in Redis, JWT
signature, denylist), and forwards a signed identity assertion instead
(authcore.assertion). Replicas then need neither Redis nor the JWKS for reads.

The gateway's parser hands over raw header bytes; the checker reads a request's method,
headers and cookies, so `_RequestView` gives it exactly those (case-insensitive headers,
cookies parsed as aiohttp parses them) without building an aiohttp request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from functools import cached_property
from types import MappingProxyType
from typing import cast

from aiohttp import web

# The parser aiohttp's own request.cookies uses: replicas and gateway read cookies alike.
from aiohttp._cookie_helpers import parse_cookie_header
from multidict import CIMultiDict

from authcore.assertion import ASSERTION_HEADER, AssertionSigner
from authcore.checking import credential_checking
from authcore.config import Settings
from authcore.credentials import CredentialChecker
from authcore.jwks import KeySetFetcher
from authcore.pushlist import PushList
from gateway.exchange import ProxyRequest

_HEADER_LINE = b"\r\n" + ASSERTION_HEADER.encode() + b": "


class _RequestView:
    """What CredentialChecker.authenticate reads of a request: method, headers, cookies."""

    def __init__(self, request: ProxyRequest) -> None:
        self.method = request.method.decode("ascii", "replace")
        self.headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers
        )

    @cached_property
    def cookies(self) -> Mapping[str, str]:
        parsed = parse_cookie_header(self.headers.get("Cookie", ""))
        return MappingProxyType({name: morsel.value for name, morsel in parsed})


class EdgeValidator:
    """Checks a request's credential and mints the assertion the upstream gets."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.signer = AssertionSigner.from_settings(settings)  # a bad key stops the start
        self._checker: CredentialChecker | None = None
        self._fetcher: KeySetFetcher | None = None
        self._pushlist: PushList | None = None  # JWT_REVOCATION=pushlist

    async def assertion_line(self, request: ProxyRequest) -> bytes:
        """The header line (with its leading CRLF) that carries the identity assertion,
        or the 401/503 error the client gets instead."""
        checker = self._checker
        assert checker is not None, "EdgeValidator.running() not entered"
        principal = await checker.authenticate(cast(web.Request, _RequestView(request)))
        token = self.signer.mint(
            principal.user, principal.mode, request.method, request.target, request.rid
        )
        return _HEADER_LINE + token

    @property
    def ready(self) -> bool:
        """Whether the JWKS is loaded (a session-only check would not need it, but a
        gateway that answers 401 to every JWT is not ready)."""
        pushlist = self._pushlist
        return (
            self._fetcher is not None
            and self._fetcher.loaded.is_set()
            and (pushlist is None or pushlist.stale_reason() is None)
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """One Redis pool and one JWKS fetcher per gateway worker, while it serves: the
        replicas' own credential check (authcore.checking), the pushed revocation set and
        the session near cache included."""
        async with credential_checking(self.settings, "gateway") as checking:
            self._fetcher = checking.fetcher
            self._pushlist = checking.pushlist
            self._checker = checking.checker
            yield
