"""One error tree for every service.

Domain code raises these where the problem is found; one middleware (`authcore.http`)
turns them into the contract's JSON answer: `{"error": code, "detail": text}` with the
status below. Each class is one line of policy: its status and its machine code.
"""

from __future__ import annotations


class AuthbenchError(Exception):
    """Root of every error the services answer on purpose."""

    status = 500
    code = "internal_error"
    default_detail = "internal error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    @property
    def headers(self) -> dict[str, str]:
        return {}


class ConfigError(AuthbenchError):
    code = "config_error"


class BadRequest(AuthbenchError):
    status, code, default_detail = 400, "bad_request", "malformed request"


class InvalidJson(BadRequest):
    code, default_detail = "invalid_json", "request body is not a JSON object"


class InvalidField(BadRequest):
    code = "invalid_field"


class CredentialError(AuthbenchError):
    """401: every answer carries a WWW-Authenticate challenge (RFC 6750 section 3)."""

    status, code, default_detail = 401, "invalid_credential", "invalid credential"

    @property
    def headers(self) -> dict[str, str]:
        # The detail is deliberately not echoed into the header: it is free text.
        return {"WWW-Authenticate": f'Bearer realm="authbench", error="{self.challenge}"'}

    @property
    def challenge(self) -> str:
        return "invalid_token"


class MissingCredential(CredentialError):
    code, default_detail = "missing_credential", "no session cookie or Bearer token"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="authbench"'}


class InvalidCredential(CredentialError):
    code = "invalid_credential"


class ExpiredCredential(CredentialError):
    code, default_detail = "expired_credential", "credential has expired"


class RevokedCredential(CredentialError):
    code, default_detail = "revoked_credential", "credential has been revoked"


class WrongPassword(CredentialError):
    code, default_detail = "invalid_login", "unknown user or wrong password"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="authbench"'}


class InvalidClient(CredentialError):
    """401 for a caller of an internal endpoint (token introspection) without a valid client
    credential (RFC 6749 section 5.2 `invalid_client`, HTTP Basic per RFC 7662 section 2.1)."""

    code, default_detail = "invalid_client", "client authentication failed"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="authbench-introspection"'}


class Forbidden(AuthbenchError):
    status, code, default_detail = 403, "forbidden", "not allowed"


class CsrfRejected(Forbidden):
    """A state-changing request carried a cookie credential without proof that our own
    page sent it (no matching X-CSRF-Token, or a cross-site Sec-Fetch-Site)."""

    code, default_detail = "csrf_rejected", "cross-site request forgery check failed"


class NotFound(AuthbenchError):
    status, code, default_detail = 404, "not_found", "no such resource"


class MethodNotAllowed(AuthbenchError):
    status, code, default_detail = 405, "method_not_allowed", "method not allowed"

    def __init__(self, allow: str = "", detail: str | None = None) -> None:
        self.allow = allow
        super().__init__(detail)

    @property
    def headers(self) -> dict[str, str]:
        # RFC 9110 section 15.5.6: a 405 names the methods the resource does support.
        return {"Allow": self.allow} if self.allow else {}


class RequestTimeout(AuthbenchError):
    status, code, default_detail = 408, "request_timeout", "the request was not sent in time"


class PayloadTooLarge(AuthbenchError):
    status, code, default_detail = 413, "payload_too_large", "request body too large"


class UriTooLong(AuthbenchError):
    status, code, default_detail = 414, "uri_too_long", "request URL too long"


class UnsupportedMediaType(AuthbenchError):
    status, code = 415, "unsupported_media_type"
    default_detail = "send the body as application/json"


class HeadersTooLarge(AuthbenchError):
    status, code, default_detail = 431, "headers_too_large", "request headers too large"


class Throttled(AuthbenchError):
    status, code, default_detail = 429, "throttled", "too many attempts; retry later"

    def __init__(self, retry_after_s: int, detail: str | None = None) -> None:
        self.retry_after_s = max(1, int(retry_after_s))
        super().__init__(detail)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class DependencyUnavailable(AuthbenchError):
    status, code, default_detail = 503, "dependency_unavailable", "a dependency is unavailable"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class StoreUnavailable(DependencyUnavailable):
    code, default_detail = "redis_unavailable", "the session store (Redis) is unreachable"


class StoreNotReplicated(StoreUnavailable):
    """REDIS_WAIT_REPLICAS: the write is on the primary but not on enough replicas in
    time, so it is not acknowledged (a failover now could lose it)."""

    code, default_detail = "redis_not_replicated", "the write did not reach a replica in time"


class StoreBusy(DependencyUnavailable):
    """Back-pressure, not a failure: every pooled Redis connection stayed busy for the
    whole queueing time. Redis is up; the breaker is not touched, and DENYLIST_FAIL=open
    does not apply (a flood must never make revoked tokens pass)."""

    code, default_detail = "redis_busy", "too many requests are waiting for Redis; retry"


class AuthServiceUnavailable(DependencyUnavailable):
    """Mode opaque: the auth service, which resolves every token, did not answer."""

    code, default_detail = "auth_unavailable", "the auth service (token introspection) is down"


class UpstreamUnavailable(DependencyUnavailable):
    code, default_detail = "upstream_unavailable", "no healthy upstream could answer"


class UpstreamTimeout(AuthbenchError):
    status, code, default_detail = 504, "upstream_timeout", "the upstream did not answer in time"
