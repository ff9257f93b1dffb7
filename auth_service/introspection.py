"""Mode opaque on the auth service: the tokens it issues and the introspection it answers.

`OpaqueTokenStore` keeps each opaque access token in Redis under the SHA-256 of the token
(a dump of Redis hands out no usable token, as for sessions), with the token's lifetime
(OPAQUE_TTL_S) as the key's TTL, so an expired token is simply gone. A user's tokens are
also listed under `uot:<user>`, so "log out everywhere" ends them all. Resolving a token
is one GET.

`introspect` answers `POST /auth/introspect` (RFC 7662) for the replicas, and only them:
- it exists only when INTROSPECT_SECRET is set (otherwise a 404, like other operator
  endpoints);
- a request that came through a gateway (it carries X-Forwarded-For or Forwarded, which
  our gateway always sets and nginx is told to set) is a 404 whatever its path encoding,
  so the public address never exposes the endpoint;
- the caller authenticates with HTTP Basic (INTROSPECT_CLIENT_ID, INTROSPECT_SECRET),
  compared in constant time; the secret is never logged;
- the body is a form with one `token`; an unknown, malformed, expired or revoked token is
  `{"active": false}` and nothing more (section 2.2).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from aiohttp import web

from authcore.config import Settings
from authcore.credentials import OPAQUE_TOKEN_PATTERN
from authcore.errors import InvalidClient, InvalidCredential, NotFound, UnsupportedMediaType
from authcore.introspection import (
    ACCESS_SCOPE,
    FORM_MEDIA_TYPE,
    INACTIVE,
    TokenInfo,
    active_answer,
    client_authenticated,
    parse_introspection_form,
)
from authcore.redis_store import Redis, RedisStore

OPAQUE_TOKEN_BYTES = 32  # 256 bits, as a session ID
OPAQUE_PREFIX = "ot:"
USER_OPAQUE_PREFIX = "uot:"
# Headers a gateway adds to what it forwards: their presence means "came from outside".
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded")


def _key(token: str) -> str:
    return OPAQUE_PREFIX + hashlib.sha256(token.encode()).hexdigest()


class OpaqueTokenStore:
    """Issue, resolve (one GET), revoke opaque access tokens; the auth service's own
    `OpaqueResolver` (its logout checks the token it is asked to end)."""

    def __init__(self, store: RedisStore, settings: Settings) -> None:
        self._store = store
        self._ttl_s = settings.opaque_ttl_s

    @property
    def ttl_s(self) -> int:
        return self._ttl_s

    async def issue(self, user: str) -> str:
        token = secrets.token_urlsafe(OPAQUE_TOKEN_BYTES)
        now = int(time.time())
        record = json.dumps(
            {"u": user, "iat": now, "exp": now + self._ttl_s, "scope": ACCESS_SCOPE}
        )
        key, user_key = _key(token), USER_OPAQUE_PREFIX + user

        async def _issue(r: Redis) -> None:
            if self._store.cluster:  # token and index on different shards: token first
                await r.set(key, record, ex=self._ttl_s)
                async with r.pipeline(transaction=False) as pipe:  # one key, one node
                    pipe.sadd(user_key, key)
                    pipe.expire(user_key, self._ttl_s)
                    await pipe.execute()
                return
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(key, record, ex=self._ttl_s)
                pipe.sadd(user_key, key)
                pipe.expire(user_key, self._ttl_s)
                await pipe.execute()

        await self._store.call(_issue)
        return token

    async def lookup(self, token: str) -> tuple[TokenInfo, int] | None:
        """(what the token stands for, when it was issued), or None when not active."""
        if len(token) > 64 or OPAQUE_TOKEN_PATTERN.fullmatch(token) is None:
            return None  # not a token we issue: no Redis call for garbage
        key = _key(token)
        raw = await self._store.call(lambda r: r.get(key))
        if raw is None:
            return None
        record = json.loads(raw)
        if record["exp"] <= time.time():
            return None
        return TokenInfo(record["u"], int(record["exp"]), record["scope"]), int(record["iat"])

    async def resolve(self, token: str) -> TokenInfo:
        found = await self.lookup(token)
        if found is None:
            raise InvalidCredential("token is not active (unknown, expired or revoked)")
        return found[0]

    async def revoke(self, token: str, user: str) -> None:
        key = _key(token)

        async def _revoke(r: Redis) -> None:
            async with r.pipeline(transaction=not self._store.cluster) as pipe:
                pipe.delete(key)
                pipe.srem(USER_OPAQUE_PREFIX + user, key)
                await pipe.execute()

        await self._store.call(_revoke)

    async def revoke_all(self, user: str) -> None:
        user_key = USER_OPAQUE_PREFIX + user

        async def _revoke_all(r: Redis) -> None:
            keys = await r.smembers(user_key)
            sharded = self._store.cluster  # then the tokens sit on every shard: a DEL each
            async with r.pipeline(transaction=not sharded) as pipe:
                if keys and sharded:
                    for k in keys:
                        pipe.delete(k)
                elif keys:
                    pipe.delete(*keys)
                pipe.delete(user_key)
                await pipe.execute()

        await self._store.call(_revoke_all)


async def introspect(
    request: web.Request, settings: Settings, tokens: OpaqueTokenStore
) -> dict[str, object]:
    """The JSON answer to one introspection request (errors raised, see the module)."""
    if not settings.introspect_secret or any(h in request.headers for h in FORWARDING_HEADERS):
        raise NotFound()
    if not client_authenticated(
        request.headers.get("Authorization"),
        settings.introspect_client_id,
        settings.introspect_secret,
    ):
        raise InvalidClient()
    media = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media != FORM_MEDIA_TYPE:
        raise UnsupportedMediaType(f"send the body as {FORM_MEDIA_TYPE} (RFC 7662 section 2.1)")
    form = parse_introspection_form(await request.read())  # bounded by client_max_size
    found = await tokens.lookup(form.token)
    if found is None:
        return INACTIVE
    info, issued_at = found
    return active_answer(info, issued_at)
