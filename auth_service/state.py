"""Typed application state of the auth service."""

from __future__ import annotations

from aiohttp import web

from auth_service.introspection import OpaqueTokenStore
from auth_service.refresh_tokens import RefreshTokenStore
from auth_service.throttle import LoginThrottle
from auth_service.users import UserDirectory
from authcore.assertion import AssertionSigner
from authcore.config import IPNetwork, Settings
from authcore.credentials import CredentialChecker
from authcore.keystore import KeyStore
from authcore.pushlist import RevocationFeed
from authcore.redis_store import RedisStore
from authcore.revocation import RevocationList
from authcore.sessions import SessionStore
from authcore.tokens import KeyRing, TokenIssuer, TokenVerifier

SETTINGS = web.AppKey("settings", Settings)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[IPNetwork, ...])
STORE = web.AppKey("store", RedisStore)
USERS = web.AppKey("users", UserDirectory)
SESSIONS = web.AppKey("sessions", SessionStore)
KEYRING = web.AppKey("keyring", KeyRing)
ISSUER = web.AppKey("issuer", TokenIssuer)
VERIFIER = web.AppKey("verifier", TokenVerifier)
REFRESH_TOKENS = web.AppKey("refresh_tokens", RefreshTokenStore)
REVOCATIONS = web.AppKey("revocations", RevocationList)
THROTTLE = web.AppKey("throttle", LoginThrottle)
CHECKER = web.AppKey("checker", CredentialChecker)
OPAQUE_TOKENS = web.AppKey("opaque_tokens", OpaqueTokenStore)  # mode opaque
KEYSTORE = web.AppKey("keystore", KeyStore)  # shared signing keys (issue 16)
REVOCATION_FEED = web.AppKey("revocation_feed", RevocationFeed)  # JWT_REVOCATION=pushlist
EDGE_SIGNER = web.AppKey("edge_signer", AssertionSigner)  # behind nginx: /auth/edge-check
