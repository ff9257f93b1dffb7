"""Prometheus metrics shared by the services (one registry per process)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

# Credential checks take tens of microseconds (a signature) to a millisecond (a Redis
# round trip under load): the buckets resolve that range, the last ones catch timeouts.
VALIDATION_BUCKETS = (
    0.00002, 0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.002, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
REQUEST_BUCKETS = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

CREDENTIAL_VALIDATION = Histogram(
    "authbench_credential_validation_seconds",
    "Time a replica spends validating one credential, by mode and outcome.",
    ["mode", "outcome"],
    buckets=VALIDATION_BUCKETS,
)
HTTP_REQUESTS = Histogram(
    "authbench_http_request_duration_seconds",
    "Server-side time per request, by route and status.",
    ["route", "status"],
    buckets=REQUEST_BUCKETS,
)
REDIS_FAILURES = Counter(
    "authbench_redis_failures_total", "Redis calls that failed or were refused by the breaker.",
    ["reason"],
)  # fmt: skip
REDIS_QUEUE_TIMEOUTS = Counter(
    "authbench_redis_queue_timeouts_total",
    "Redis calls refused with 503 redis_busy: no pooled connection came free in time "
    "(back-pressure; never counted as a Redis failure).",
)
REDIS_BREAKER_OPEN = Gauge(
    "authbench_redis_breaker_open",
    "1 while the Redis circuit breaker fails calls fast (a Redis Cluster: how many nodes' "
    "breakers are open).",
)
LOGINS = Counter(
    "authbench_logins_total", "Login attempts by mode and outcome.", ["mode", "outcome"]
)
PASSWORD_VERIFICATIONS = Counter(
    "authbench_auth_password_verifications_total",
    "argon2id verifications done for logins (each login that is not throttled costs one).",
)
SEEDED_USERS = Gauge(
    "authbench_auth_seeded_users", "Benchmark users whose argon2id hash is made so far."
)
UPSTREAM_EJECTIONS = Counter(
    "authbench_gateway_ejections_total", "Upstreams taken out of rotation.", ["upstream"]
)
UPSTREAM_HEALTHY = Gauge(
    "authbench_gateway_upstream_healthy", "1 while an upstream is in rotation.", ["upstream"]
)


def render() -> tuple[bytes, str]:
    """The process's metrics in Prometheus text format, with their content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
