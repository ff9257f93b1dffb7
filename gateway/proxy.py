"""ReverseProxy: forwards one request to an upstream pool, with header hygiene.

- Hop-by-hop headers (RFC 9110 section 7.6.1, and any named in Connection) are dropped
  both ways.
- Headers a client could use to claim an identity or a trusted origin are dropped on the
  way in; the gateway sets X-Forwarded-For/-Proto itself from what it saw.
- X-Request-Id: a client's value is kept only if it looks like an ID (no CRLF, no
  injection, bounded length); otherwise the gateway generates one. Either way it is
  returned to the client.
- A connect failure ejects the upstream and the request goes to the next one (nothing was
  sent, so any method may be retried); a failure after sending is retried only for
  idempotent methods, once; otherwise the client gets a JSON 502/503/504.
"""

from __future__ import annotations

import logging
import re
import uuid

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from authbench.errors import AuthbenchError, UpstreamTimeout, UpstreamUnavailable
from gateway.upstreams import Upstream, UpstreamPool

log = logging.getLogger("gateway.proxy")

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection",
    )
)  # fmt: skip
# Never accepted from a client: identity or trust is only ever asserted by the gateway.
SPOOFABLE = frozenset(
    h.lower()
    for h in (
        "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
        "Forwarded", "X-Real-IP", "X-Client-IP", "X-Original-Forwarded-For", "True-Client-IP",
        "X-User", "X-User-Id", "X-Authenticated-User", "X-Forwarded-User", "X-Remote-User",
        "Remote-User", "X-Auth-User", "X-Replica", "X-Request-Id", "Host", "Content-Length",
    )
)  # fmt: skip
RESPONSE_DROP = HOP_BY_HOP | {"content-length"}
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{8,64}")
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class UpstreamFailure(AuthbenchError):
    status, code, default_detail = 502, "bad_gateway", "the upstream failed while answering"


def request_id(request: web.Request) -> str:
    incoming = request.headers.get("X-Request-Id")
    if incoming and REQUEST_ID_PATTERN.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def upstream_headers(request: web.Request, rid: str) -> CIMultiDict[str]:
    connection_tokens = {
        t.strip().lower() for t in request.headers.get("Connection", "").split(",") if t.strip()
    }
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered in HOP_BY_HOP or lowered in SPOOFABLE or lowered in connection_tokens:
            continue
        headers.add(name, value)
    headers["X-Forwarded-For"] = request.remote or "unknown"
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Request-Id"] = rid
    return headers


class ReverseProxy:
    def __init__(self, session: aiohttp.ClientSession, timeout_s: float) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(1.0, timeout_s))

    async def forward(self, request: web.Request, pool: UpstreamPool) -> web.StreamResponse:
        rid = request_id(request)
        headers = upstream_headers(request, rid)
        body = await request.read() if request.body_exists else None
        path_qs = (
            request.rel_url.raw_path_qs
            if hasattr(request.rel_url, "raw_path_qs")
            else str(request.rel_url)
        )
        tried: set[Upstream] = set()
        retried_after_send = False
        while True:
            upstream = pool.pick(exclude=tried)
            if upstream is None:
                raise UpstreamUnavailable()
            tried.add(upstream)
            try:
                return await self._exchange(request, upstream, path_qs, headers, body, rid)
            except aiohttp.ClientConnectorError:
                pool.report_failure(upstream)  # nothing was sent: try the next one
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
                # Sent, then the upstream vanished (a replica killed mid-request, or a
                # pooled keep-alive connection it had closed).
                pool.report_failure(upstream)
                if request.method not in IDEMPOTENT or retried_after_send:
                    raise UpstreamFailure() from err
                retried_after_send = True
            except TimeoutError as err:
                raise UpstreamTimeout() from err
            except aiohttp.ClientResponseError as err:
                raise UpstreamFailure() from err

    async def _exchange(
        self,
        request: web.Request,
        upstream: Upstream,
        path_qs: str,
        headers: CIMultiDict[str],
        body: bytes | None,
        rid: str,
    ) -> web.StreamResponse:
        async with self._session.request(
            request.method,
            upstream.base_url + path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=self._timeout,
        ) as upstream_response:
            payload = await upstream_response.read()
            upstream_headers = upstream_response.headers
        response = web.Response(status=upstream_response.status, body=payload)
        out = response.headers
        for name, value in upstream_headers.items():
            if name.lower() not in RESPONSE_DROP:
                out.add(name, value)
        out["X-Request-Id"] = rid
        return response
