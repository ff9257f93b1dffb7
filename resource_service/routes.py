"""HTTP routes of a resource replica. Every /api request is authenticated first."""

from __future__ import annotations

import json
from typing import Protocol

from aiohttp import web

from authcore.credentials import Principal

routes = web.RouteTableDef()


class Authenticator(Protocol):
    """What checks an /api request: authcore's CredentialChecker (VALIDATE_AT=replica) or
    the gateway's identity assertion (resource_service.edge, VALIDATE_AT=gateway)."""

    async def authenticate(self, request: web.Request) -> Principal: ...


CHECKER = web.AppKey("checker", Authenticator)
REPLICA = web.AppKey("replica", str)
ITEM_DATA = web.AppKey("item_data", str)

_MAX_ITEM_ID = 10**9
_dumps = json.dumps


def _json(body: dict[str, object]) -> web.Response:
    return web.Response(
        body=_dumps(body).encode(),
        content_type="application/json",
        headers={"Cache-Control": "private, no-store"},
    )


@routes.get("/api/me")
async def me(request: web.Request) -> web.Response:
    principal = await request.app[CHECKER].authenticate(request)
    return _json({"user": principal.user, "auth": principal.mode, "replica": request.app[REPLICA]})


# ASCII digits only: `\d` would also match other scripts' digits, which int() accepts.
@routes.get(r"/api/items/{item_id:[0-9]{1,10}}")
async def item(request: web.Request) -> web.Response:
    principal = await request.app[CHECKER].authenticate(request)
    item_id = int(request.match_info["item_id"])
    if item_id >= _MAX_ITEM_ID:
        raise web.HTTPNotFound()
    return _json(
        {
            "id": item_id,
            "owner": principal.user,
            "auth": principal.mode,
            "replica": request.app[REPLICA],
            "data": request.app[ITEM_DATA],
        }
    )
