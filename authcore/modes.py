"""The login modes: the `mode` field of `POST /auth/login` (the contract), defined once.

The services check credentials by these names (`authcore.credentials`), and the harness
logs its load users in by them (`authbench.modes`). This module imports nothing but the
standard library, so a gevent-patched locustfile can import it too.
"""

from __future__ import annotations

from enum import StrEnum


class Login(StrEnum):
    """How a client logs in, and so which credential it presents afterwards."""

    SESSION = "session"  # an opaque session ID in a cookie, looked up in Redis
    JWT = "jwt"  # a bearer JWT in the Authorization header
    JWT_COOKIE = "jwt-cookie"  # the JWT in an HttpOnly cookie, with a CSRF token
    OPAQUE = "opaque"  # a random bearer token that services resolve by introspection (RFC 7662)
