"""One config loader for every service: a frozen `Settings` read from the environment.

Each field names its environment variable, default and meaning in one place, so the README
table (and the test that keeps it honest) is derived from this file, not typed twice.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlparse

from authcore.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DOC = "doc"
_ENV = "env"


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={_ENV: env, _DOC: doc})


ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")
REVOCATION_MODES = ("none", "denylist", "pushlist")
FAIL_POLICIES = ("open", "closed")
SAMESITE_VALUES = ("Lax", "Strict")
VALIDATION_PLACES = ("replica", "gateway")  # VALIDATE_AT


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a service can be told. Defaults suit `authbench up` on loopback."""

    # --- where things are -------------------------------------------------------------
    host: str = _setting("HOST", "127.0.0.1", "Address the service listens on.")
    port: int = _setting("PORT", 0, "Port; 0 means the service's own default (8080/8081/8101).")
    redis_url: str = _setting(
        "REDIS_URL",
        "redis://127.0.0.1:6390/0",
        "Shared Redis (sessions, refresh tokens, denylist).",
    )
    auth_url: str = _setting(
        "AUTH_URL", "http://127.0.0.1:8081", "Auth service base URL (replicas fetch the JWKS here)."
    )
    resource_urls: str = _setting(
        "RESOURCE_URLS",
        "http://127.0.0.1:8101",
        "Gateway upstreams: comma-separated URLs, or dns://NAME:PORT to resolve every replica "
        "behind a DNS name (compose) and re-resolve it while running.",
    )
    replica_id: str = _setting(
        "REPLICA_ID", "", "Name a replica reports in answers; empty means hostname:port."
    )

    # --- Redis client -----------------------------------------------------------------
    redis_timeout_ms: int = _setting(
        "REDIS_TIMEOUT_MS", 250, "Connect and per-command timeout; bounds every Redis call."
    )
    redis_breaker_cooldown_ms: int = _setting(
        "REDIS_BREAKER_COOLDOWN_MS",
        500,
        "After a Redis failure, calls fail fast (503) for this long before one probe is tried.",
    )
    redis_pool_size: int = _setting(
        "REDIS_POOL_SIZE",
        0,
        "Max pooled Redis connections per process, so also Redis calls in flight (more queue, "
        "then 503 redis_busy; never the breaker); 0 derives it from CPUs.",
    )

    # --- Redis failover: Sentinel and WAIT (issue 16, the `failover` chaos scenario) ---
    redis_sentinels: str = _setting(
        "REDIS_SENTINELS",
        "",
        "Comma-separated host:port of Redis Sentinels; set, the services ask them for the "
        "primary of REDIS_SENTINEL_MASTER (and follow a failover) instead of REDIS_URL's "
        "host (its db number still applies). Empty = REDIS_URL directly.",
    )
    redis_sentinel_master: str = _setting(
        "REDIS_SENTINEL_MASTER", "authbench", "Name the Sentinels monitor the primary under."
    )
    redis_cluster_nodes: str = _setting(
        "REDIS_CLUSTER_NODES",
        "",
        "Comma-separated host:port of Redis Cluster nodes (issue 17, --store cluster:N); set, "
        "the services use redis-py's cluster client (slot map learnt from any node) instead "
        "of REDIS_URL. Keys that must sit together carry hash tags. Empty = no cluster.",
    )
    redis_read_replicas: str = _setting(
        "REDIS_READ_REPLICAS",
        "",
        "Comma-separated host:port of read replicas of REDIS_URL's primary (issue 17, --store "
        "replicas:N); set, session reads go to them in turn (needs SESSION_RENEW_INTERVAL_S "
        "> 0: a renewing read is a write); writes stay on the primary. Empty = no replicas.",
    )
    redis_wait_replicas: int = _setting(
        "REDIS_WAIT_REPLICAS",
        0,
        "Auth service: after creating a session, rotating a refresh token or revoking, "
        "`WAIT` until this many replicas have the write; fewer within REDIS_WAIT_TIMEOUT_MS "
        "answers 503 (the write is not acknowledged). 0 = off (asynchronous replication).",
    )
    redis_wait_timeout_ms: int = _setting(
        "REDIS_WAIT_TIMEOUT_MS", 100, "Longest a WAIT of REDIS_WAIT_REPLICAS blocks."
    )

    # --- users and passwords ----------------------------------------------------------
    seed_users: int = _setting(
        "AUTH_SEED_USERS", 1000, "Benchmark users user{i}/password{i}, i from 0, seeded at start."
    )
    argon2_time_cost: int = _setting("ARGON2_TIME_COST", 2, "argon2id iterations (OWASP: >= 2).")
    argon2_memory_kib: int = _setting(
        "ARGON2_MEMORY_KIB", 19456, "argon2id memory in KiB (OWASP minimum: 19456 = 19 MiB)."
    )
    login_max_failures: int = _setting(
        "LOGIN_MAX_FAILURES",
        5,
        "Failed logins allowed per account per window before 429 (shared through Redis).",
    )
    login_max_failures_per_ip: int = _setting(
        "LOGIN_MAX_FAILURES_PER_IP", 50, "Failed logins allowed per client address per window."
    )
    login_window_s: int = _setting("LOGIN_WINDOW_S", 300, "Window of the login failure counters.")
    trusted_proxies: str = _setting(
        "TRUSTED_PROXIES",
        "",
        "Auth service: comma-separated CIDRs of proxies (the gateway) whose X-Forwarded-For "
        "names the client for per-address throttling; empty = off, the TCP peer is the client.",
    )

    # --- sessions ---------------------------------------------------------------------
    session_idle_s: int = _setting(
        "SESSION_IDLE_S", 1800, "Sliding idle timeout of a session (renewed on every use)."
    )
    session_absolute_s: int = _setting(
        "SESSION_ABSOLUTE_S", 28800, "Absolute lifetime of a session, whatever its use."
    )
    session_renew_interval_s: float = _setting(
        "SESSION_RENEW_INTERVAL_S",
        0.0,
        "0 = every session read renews the idle TTL (GETEX, a write: primary only). > 0 = a "
        "read is a plain GET + PTTL (a replica may serve it) and the TTL is renewed on the "
        "primary at most once per this many seconds per session, so a session may end this "
        "much before SESSION_IDLE_S of idleness; < SESSION_IDLE_S.",
    )
    cookie_secure: bool = _setting(
        "COOKIE_SECURE", False, "Mark cookies Secure and use the __Host- prefix (behind HTTPS)."
    )
    cookie_samesite: str = _setting("COOKIE_SAMESITE", "Lax", "SameSite of cookies: Lax or Strict.")
    # --- session near cache (mode session+cache, authcore/session_cache.py) ----------
    session_cache: bool = _setting(
        "SESSION_CACHE",
        False,
        "Replicas keep a near cache of sessions that Redis invalidates by push (CLIENT "
        "TRACKING BCAST); a hit asks Redis nothing.",
    )
    session_cache_size: int = _setting(
        "SESSION_CACHE_SIZE", 100000, "Session cache: most sessions one replica holds (LRU)."
    )
    session_cache_renew_s: float = _setting(
        "SESSION_CACHE_RENEW_S",
        60.0,
        "Session cache: a session's idle TTL is renewed at most once per this many seconds, "
        "so it may end this much before SESSION_IDLE_S of idleness; < SESSION_IDLE_S.",
    )

    # --- JWTs -------------------------------------------------------------------------
    jwt_algorithm: str = _setting(
        "JWT_ALG", "EdDSA", "Access-token signature algorithm: EdDSA, ES256, RS256 or HS256."
    )
    jwt_hs256_secret: str = _setting(
        "JWT_HS256_SECRET", "", "Shared secret for HS256 (>= 32 bytes); required only for HS256."
    )
    jwt_issuer: str = _setting("JWT_ISSUER", "authbench", "`iss` of access tokens.")
    jwt_audience: str = _setting("JWT_AUDIENCE", "authbench-api", "`aud` of access tokens.")
    jwt_ttl_s: int = _setting("JWT_TTL_S", 300, "Access-token lifetime (short, per RFC 8725).")
    jwt_leeway_s: int = _setting("JWT_LEEWAY_S", 5, "Clock-skew leeway for exp/nbf/iat.")
    jwt_max_bytes: int = _setting("JWT_MAX_BYTES", 4096, "Longest access token accepted.")
    access_token_pad_bytes: int = _setting(
        "ACCESS_TOKEN_PAD_BYTES",
        0,
        "Benchmark token-size axis: characters of a `pad` claim added to every access token "
        "(the token grows by about 4/3 of it); 0 = none.",
    )
    refresh_ttl_s: int = _setting(
        "REFRESH_TTL_S", 86400, "Refresh-token lifetime (each rotation's token lives this long)."
    )
    refresh_family_absolute_s: int = _setting(
        "REFRESH_FAMILY_ABSOLUTE_S",
        604800,
        "Absolute lifetime of a refresh-token family (a login), however often it rotates.",
    )
    jwt_revocation: str = _setting(
        "JWT_REVOCATION",
        "none",
        "none (stateless), denylist (replicas check the jti in Redis) or pushlist (revocations "
        "pushed to every replica through a Redis Stream, checked in memory).",
    )
    denylist_fail: str = _setting(
        "DENYLIST_FAIL",
        "closed",
        "With the denylist and Redis down: closed answers 503, open accepts valid signatures.",
    )
    # --- pushed revocation set (JWT_REVOCATION=pushlist, authcore/pushlist.py) --------
    pushlist_max_silence_s: float = _setting(
        "PUSHLIST_MAX_SILENCE_S",
        5.0,
        "Pushlist: longest a replica serves without a heartbeat from the revocation stream "
        "before it fails closed (503); bounds what it misses while cut off from Redis.",
    )
    pushlist_block_ms: int = _setting(
        "PUSHLIST_BLOCK_MS",
        1000,
        "Pushlist: XREAD BLOCK time; an empty answer after it is the stream's heartbeat "
        "(PUSHLIST_MAX_SILENCE_S must exceed it plus REDIS_TIMEOUT_MS).",
    )
    pushlist_publish: bool = _setting(
        "PUSHLIST_PUBLISH",
        False,
        "Auth service: append revocations to the pushlist stream even when its own "
        "JWT_REVOCATION is not pushlist (one auth service for replica groups of several "
        "modes, as authbench chaos runs them).",
    )
    pushlist_maxlen: int = _setting(
        "PUSHLIST_MAXLEN",
        1000000,
        "Pushlist: entries the stream keeps (XADD MAXLEN ~); must exceed the revocations of "
        "one JWT_TTL_S, or replicas that missed trimmed entries fail closed.",
    )
    jwks_refresh_min_s: float = _setting(
        "JWKS_REFRESH_MIN_S", 1.0, "Least time between two JWKS fetches caused by unknown kids."
    )
    admin_token: str = _setting(
        "AUTH_ADMIN_TOKEN", "", "Bearer secret for operator endpoints (key rotation); empty = off."
    )
    # --- shared signing keys (issue 16: restarts and auth replicas, authcore/keystore.py)
    jwt_key_encryption_key: str = _setting(
        "JWT_KEY_ENCRYPTION_KEY",
        "",
        "Auth: key-encryption key (base64url of 32 random bytes) of the signing keys kept in "
        "Redis with AES-256-GCM, shared by every auth replica and surviving restarts; empty = "
        "keys live in the one auth process only (lost on restart, one replica at most).",
    )
    jwt_keys_refresh_s: float = _setting(
        "JWT_KEYS_REFRESH_S",
        1.0,
        "Auth: how often each replica checks the key store for a rotation; a new key is "
        "published this long, twice, before it signs, so every replica's JWKS has it first.",
    )

    # --- opaque tokens and introspection (mode opaque, RFC 7662) ----------------------
    opaque_ttl_s: int = _setting(
        "OPAQUE_TTL_S", 300, "Lifetime of an opaque access token (mode opaque) in Redis."
    )
    introspect_client_id: str = _setting(
        "INTROSPECT_CLIENT_ID",
        "resource",
        "Client ID replicas present (HTTP Basic) to POST /auth/introspect.",
    )
    introspect_secret: str = _setting(
        "INTROSPECT_SECRET",
        "",
        "Client secret of POST /auth/introspect (>= 32 bytes), shared by the auth service and "
        "the replicas; empty = introspection off (the endpoint is a 404, opaque tokens 401).",
    )
    introspect_cache_s: float = _setting(
        "INTROSPECT_CACHE_S",
        0.0,
        "Replica-side cache of active introspection answers, in seconds (never past the "
        "token's exp); 0 = off. A logged-out token may be accepted this long.",
    )
    introspect_timeout_ms: int = _setting(
        "INTROSPECT_TIMEOUT_MS",
        500,
        "Replica: total time allowed for one introspection call before 503 auth_unavailable.",
    )

    # --- resources --------------------------------------------------------------------
    item_bytes: int = _setting("ITEM_BYTES", 512, "Size of the payload of /api/items/{id}.")

    # --- gateway ----------------------------------------------------------------------
    gateway_workers: int = _setting(
        "GATEWAY_WORKERS", 1, "Gateway processes sharing the port (SO_REUSEPORT); 0 = CPU count."
    )
    upstream_timeout_s: float = _setting(
        "UPSTREAM_TIMEOUT_S", 5.0, "Gateway: total time allowed for one upstream answer."
    )
    health_interval_s: float = _setting(
        "HEALTH_INTERVAL_S", 1.0, "Gateway: period of active health checks of upstreams."
    )
    eject_after_failures: int = _setting(
        "EJECT_AFTER_FAILURES", 1, "Gateway: consecutive connect failures that eject a replica."
    )
    client_header_timeout_s: int = _setting(
        "CLIENT_HEADER_TIMEOUT_S",
        10,
        "Gateway: a request head still incomplete after this long gets 408 and a close "
        "(slow-header attacks hold no connection for long).",
    )
    client_idle_timeout_s: int = _setting(
        "CLIENT_IDLE_TIMEOUT_S", 60, "Gateway: an idle keep-alive client connection is closed."
    )
    client_body_timeout_s: int = _setting(
        "CLIENT_BODY_TIMEOUT_S",
        10,
        "Gateway: a request body still incomplete this long after its head gets 408 and a "
        "close, however steadily it trickles (slow-body attacks hold no connection for long).",
    )
    gateway_max_connections: int = _setting(
        "GATEWAY_MAX_CONNECTIONS",
        0,
        "Gateway: client connections one process holds; more are answered 503 and closed. "
        "0 = half the open-files limit left after GATEWAY_FD_RESERVE.",
    )
    gateway_max_connections_per_client: int = _setting(
        "GATEWAY_MAX_CONNECTIONS_PER_CLIENT",
        1024,
        "Gateway: client connections one process holds from one address; more get 429.",
    )
    gateway_fd_reserve: int = _setting(
        "GATEWAY_FD_RESERVE",
        1024,
        "Gateway: file descriptors kept back from clients for upstream keep-alive "
        "connections, health checks and the operator port.",
    )
    gateway_admin_host: str = _setting(
        "GATEWAY_ADMIN_HOST",
        "127.0.0.1",
        "Gateway: address of the operator port (never the public one).",
    )
    gateway_admin_port: int = _setting(
        "GATEWAY_ADMIN_PORT",
        0,
        "Gateway: operator port serving /metrics (upstream addresses), /healthz and /readyz; "
        "0 = none. The public port never serves /metrics.",
    )
    # --- edge validation (issue 15): where the credential is checked -----------------
    validate_at: str = _setting(
        "VALIDATE_AT",
        "replica",
        "replica: every replica checks the credential; gateway: the gateway checks it once "
        "and forwards a signed identity assertion that replicas verify instead.",
    )
    deployment_id: str = _setting(
        "DEPLOYMENT_ID",
        "authbench",
        "Names this deployment in identity assertions (iss/aud): another one's are refused.",
    )
    edge_assertion_alg: str = _setting(
        "EDGE_ASSERTION_ALG",
        "EdDSA",
        "Identity assertion signature: EdDSA (only the gateway can sign) or HS256 (cheaper "
        "to verify, but every replica holds the secret and could sign).",
    )
    edge_assertion_key: str = _setting(
        "EDGE_ASSERTION_KEY",
        "",
        "The edge's assertion signing key (EdDSA: base64url raw 32-byte private key; HS256: "
        "the secret, >= 32 bytes): our gateway's, or behind nginx the auth service's "
        "(/auth/edge-check); never a replica's.",
    )
    edge_assertion_verify_key: str = _setting(
        "EDGE_ASSERTION_VERIFY_KEY",
        "",
        "Replicas: the assertion verification key (EdDSA: base64url raw 32-byte public key; "
        "HS256: the same secret as the gateway's).",
    )
    edge_assertion_ttl_s: int = _setting(
        "EDGE_ASSERTION_TTL_S", 5, "Lifetime of one identity assertion (seconds, short)."
    )

    # --- overload (issue 16): bounded in-flight work, fast 503 past it -----------------
    gateway_max_inflight: int = _setting(
        "GATEWAY_MAX_INFLIGHT",
        1024,
        "Gateway: requests one worker process has in flight (being validated or at an "
        "upstream); more are answered 503 with Retry-After at once.",
    )
    gateway_max_inflight_per_upstream: int = _setting(
        "GATEWAY_MAX_INFLIGHT_PER_UPSTREAM",
        256,
        "Gateway: requests one worker has in flight at one upstream; a full upstream is "
        "skipped, so one slow replica cannot take every connection (503 when all are full).",
    )
    replica_max_inflight: int = _setting(
        "REPLICA_MAX_INFLIGHT",
        256,
        "Replica: /api requests in flight in one replica process; more get 503 with "
        "Retry-After at once (probes and /metrics are never refused).",
    )
    overload_retry_after_s: int = _setting(
        "OVERLOAD_RETRY_AFTER_S", 1, "Retry-After (seconds) of an overload 503."
    )

    max_body_bytes: int = _setting("MAX_BODY_BYTES", 65536, "Largest request body accepted.")
    max_header_bytes: int = _setting("MAX_HEADER_BYTES", 8190, "Largest request header line.")
    max_url_bytes: int = _setting("MAX_URL_BYTES", 4096, "Longest request line (URL) accepted.")

    # --- logging ----------------------------------------------------------------------
    log_level: str = _setting("LOG_LEVEL", "INFO", "Python log level of the services.")
    access_log: bool = _setting("ACCESS_LOG", False, "Write an access log line per request.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: os.environ)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata[_ENV]
            if name in env:
                values[f.name] = _parse(name, env[name], type(f.default))
        settings = cls(**values)
        settings.validate()
        return settings

    @classmethod
    def from_env_or_exit(cls, service: str) -> Settings:
        """A service's settings at start, or exit with one line that names the bad setting
        (a wrong value is the operator's input, not a crash: no traceback)."""
        try:
            return cls.from_env()
        except ConfigError as err:
            raise SystemExit(f"{service}: bad setting: {err}") from None

    def validate(self) -> None:
        """Refuse settings that cannot work, with a message that names the variable."""
        _choice("JWT_ALG", self.jwt_algorithm, ALGORITHMS)
        _choice("JWT_REVOCATION", self.jwt_revocation, REVOCATION_MODES)
        _choice("DENYLIST_FAIL", self.denylist_fail, FAIL_POLICIES)
        _choice("COOKIE_SAMESITE", self.cookie_samesite, SAMESITE_VALUES)
        if self.jwt_key_encryption_key:
            from authcore.keystore import parse_kek  # the one parser of the key's format

            parse_kek(self.jwt_key_encryption_key)
        if self.jwt_keys_refresh_s <= 0:
            raise ConfigError("JWT_KEYS_REFRESH_S must be > 0")
        self._validate_pushlist()
        if self.jwt_algorithm == "HS256" and len(self.jwt_hs256_secret.encode()) < 32:
            # RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
            raise ConfigError("JWT_HS256_SECRET must be at least 32 bytes when JWT_ALG=HS256")
        if self.argon2_memory_kib < 19456 or self.argon2_time_cost < 2:
            raise ConfigError("argon2id below OWASP's minimum (m=19456 KiB, t=2)")
        pad = self.access_token_pad_bytes
        if pad < 0 or pad * 4 // 3 + 1024 > self.jwt_max_bytes:
            raise ConfigError(
                "ACCESS_TOKEN_PAD_BYTES must be >= 0 and its token (about 4/3 of it + 1 KB) "
                "fit JWT_MAX_BYTES"
            )
        if self.session_absolute_s < self.session_idle_s:
            raise ConfigError("SESSION_ABSOLUTE_S must be >= SESSION_IDLE_S")
        if self.session_cache_size <= 0:
            raise ConfigError(f"SESSION_CACHE_SIZE={self.session_cache_size}: must be positive")
        renew_s = self.session_cache_renew_s
        if renew_s <= 0 or (self.session_cache and renew_s >= self.session_idle_s):
            raise ConfigError(
                f"SESSION_CACHE_RENEW_S={renew_s:g}: must be positive and, with SESSION_CACHE "
                f"on, below SESSION_IDLE_S ({self.session_idle_s})"
            )
        renew_every = self.session_renew_interval_s
        if not (math.isfinite(renew_every) and 0 <= renew_every < self.session_idle_s):
            raise ConfigError(
                f"SESSION_RENEW_INTERVAL_S={renew_every!r}: expected seconds >= 0 (0 = renew "
                f"on every read) and below SESSION_IDLE_S ({self.session_idle_s})"
            )
        if self.read_replicas():  # a malformed host:port is refused at start
            if self.redis_cluster_nodes or self.redis_sentinels:
                raise ConfigError(
                    "REDIS_READ_REPLICAS names replicas of REDIS_URL's primary: not with "
                    "REDIS_CLUSTER_NODES or REDIS_SENTINELS"
                )
            if renew_every == 0:
                raise ConfigError(
                    "REDIS_READ_REPLICAS needs SESSION_RENEW_INTERVAL_S > 0: with 0 every "
                    "session read renews the TTL (GETEX), a write only the primary takes"
                )
        if self.refresh_family_absolute_s < self.refresh_ttl_s:
            raise ConfigError("REFRESH_FAMILY_ABSOLUTE_S must be >= REFRESH_TTL_S")
        self.trusted_proxy_networks()  # a malformed CIDR is refused at start
        for name, value in (
            ("JWT_TTL_S", self.jwt_ttl_s),
            ("SESSION_IDLE_S", self.session_idle_s),
            ("REFRESH_TTL_S", self.refresh_ttl_s),
            ("REDIS_TIMEOUT_MS", self.redis_timeout_ms),
            ("CLIENT_BODY_TIMEOUT_S", self.client_body_timeout_s),
            ("GATEWAY_MAX_CONNECTIONS_PER_CLIENT", self.gateway_max_connections_per_client),
        ):
            if value <= 0:
                raise ConfigError(f"{name} must be positive")
        self.sentinel_addresses()  # a malformed host:port is refused at start
        if self.cluster_nodes():  # a malformed host:port is refused at start
            if self.redis_sentinels:
                raise ConfigError("REDIS_CLUSTER_NODES and REDIS_SENTINELS exclude each other")
            if self.redis_wait_replicas:
                raise ConfigError("REDIS_WAIT_REPLICAS needs replicas: not with a cluster store")
            if urlparse(self.redis_url).path.strip("/") not in ("", "0"):
                raise ConfigError("a Redis Cluster has only db 0: REDIS_URL must not name another")
        if self.redis_wait_replicas < 0 or self.redis_wait_timeout_ms <= 0:
            raise ConfigError("REDIS_WAIT_REPLICAS must be >= 0, REDIS_WAIT_TIMEOUT_MS > 0")
        # Opaque tokens and introspection (mode opaque).
        if not (math.isfinite(self.introspect_cache_s) and self.introspect_cache_s >= 0):
            raise ConfigError(
                f"INTROSPECT_CACHE_S={self.introspect_cache_s!r}: expected seconds >= 0 (0 = off)"
            )
        if self.introspect_secret and len(self.introspect_secret.encode()) < 32:
            raise ConfigError("INTROSPECT_SECRET must be at least 32 bytes (or empty: off)")
        client_id = self.introspect_client_id
        if not client_id or ":" in client_id or not client_id.isprintable():
            raise ConfigError("INTROSPECT_CLIENT_ID must be printable text without ':'")
        for name, value in (
            ("OPAQUE_TTL_S", self.opaque_ttl_s),
            ("INTROSPECT_TIMEOUT_MS", self.introspect_timeout_ms),
        ):
            if value <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.gateway_max_connections < 0 or self.gateway_fd_reserve < 0:
            raise ConfigError("GATEWAY_MAX_CONNECTIONS and GATEWAY_FD_RESERVE must be >= 0")
        _choice("VALIDATE_AT", self.validate_at, VALIDATION_PLACES)
        _choice("EDGE_ASSERTION_ALG", self.edge_assertion_alg, ("EdDSA", "HS256"))
        if not self.deployment_id.strip():
            raise ConfigError("DEPLOYMENT_ID must not be empty")
        if not 1 <= self.edge_assertion_ttl_s <= 300:
            raise ConfigError("EDGE_ASSERTION_TTL_S must be 1 to 300 seconds (short-lived)")
        for name, value in (
            ("GATEWAY_MAX_INFLIGHT", self.gateway_max_inflight),
            ("GATEWAY_MAX_INFLIGHT_PER_UPSTREAM", self.gateway_max_inflight_per_upstream),
            ("REPLICA_MAX_INFLIGHT", self.replica_max_inflight),
            ("OVERLOAD_RETRY_AFTER_S", self.overload_retry_after_s),
        ):
            if value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value}")
        if not 0 <= self.gateway_admin_port <= 65535:
            raise ConfigError("GATEWAY_ADMIN_PORT must be a port number (0 = none)")

    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        """TRUSTED_PROXIES parsed: the peers whose X-Forwarded-For is believed."""
        networks = []
        for part in self.trusted_proxies.split(","):
            if part.strip():
                try:
                    networks.append(ipaddress.ip_network(part.strip(), strict=False))
                except ValueError as err:
                    raise ConfigError(f"TRUSTED_PROXIES: {part.strip()!r} is no CIDR") from err
        return tuple(networks)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS parsed: (host, port) of each Sentinel; empty = no Sentinel."""
        return _addresses("REDIS_SENTINELS", self.redis_sentinels)

    def cluster_nodes(self) -> list[tuple[str, int]]:
        """REDIS_CLUSTER_NODES parsed: (host, port) of each node; empty = no cluster."""
        return _addresses("REDIS_CLUSTER_NODES", self.redis_cluster_nodes)

    def read_replicas(self) -> list[tuple[str, int]]:
        """REDIS_READ_REPLICAS parsed: (host, port) of each read replica; empty = none."""
        return _addresses("REDIS_READ_REPLICAS", self.redis_read_replicas)

    def _validate_pushlist(self) -> None:
        """The pushed revocation set's settings (JWT_REVOCATION=pushlist)."""
        silence = self.pushlist_max_silence_s
        if not (math.isfinite(silence) and silence > 0):
            raise ConfigError(f"PUSHLIST_MAX_SILENCE_S={silence!r}: expected seconds > 0")
        if self.pushlist_block_ms <= 0:
            raise ConfigError("PUSHLIST_BLOCK_MS must be positive")
        if self.pushlist_maxlen <= 0:
            raise ConfigError("PUSHLIST_MAXLEN must be positive")
        if silence * 1000 <= self.pushlist_block_ms + self.redis_timeout_ms:
            # A quiet stream answers only every PUSHLIST_BLOCK_MS: a shorter silence limit
            # would fail closed with Redis perfectly well.
            raise ConfigError(
                "PUSHLIST_MAX_SILENCE_S must exceed PUSHLIST_BLOCK_MS + REDIS_TIMEOUT_MS "
                f"({self.pushlist_block_ms + self.redis_timeout_ms} ms)"
            )

    @property
    def pushlist_enabled(self) -> bool:
        """Whether revocations are pushed to every replica through the Redis Stream."""
        return self.jwt_revocation == "pushlist"

    @property
    def denylist_enabled(self) -> bool:
        """Whether replicas check each JWT's jti against the denylist in Redis."""
        return self.jwt_revocation == "denylist"

    @property
    def redis_timeout_s(self) -> float:
        return self.redis_timeout_ms / 1000

    @property
    def auth_service_url(self) -> str:
        """Where a client other than the gateway reaches the auth service (JWKS): the
        first of AUTH_URL's upstreams, which the gateway balances over (a `dns://` spec
        becomes plain http: the network's DNS then picks a replica)."""
        first = self.auth_url.split(",")[0].strip().rstrip("/")
        return "http://" + first.removeprefix("dns://") if first.startswith("dns://") else first

    def replica_name(self, port: int) -> str:
        return self.replica_id or f"{socket.gethostname()}:{port}"

    def pool_size(self) -> int:
        # Requests on one event loop share the pool; Redis round trips take ~0.1 ms on
        # loopback, so a few connections per core keep a core busy. More only adds
        # contention on a 2-core box, fewer serialises on one socket.
        return self.redis_pool_size or max(8, 8 * (os.cpu_count() or 1))


def _addresses(name: str, text: str) -> list[tuple[str, int]]:
    """A comma-separated host:port list parsed; a malformed entry is a ConfigError."""
    found = []
    for part in text.split(","):
        host, _, port = part.strip().rpartition(":")
        if not part.strip():
            continue
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name}: {part.strip()!r} is no host:port")
        found.append((host.strip("[]"), int(port)))
    return found


def documented_settings() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the README's configuration table."""
    return [(f.metadata[_ENV], _show(f.default), f.metadata[_DOC]) for f in fields(Settings)]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError as err:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from err


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
