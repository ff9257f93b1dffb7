"""`--gateway nginx`: Debian's nginx in the gateway's place, with the same public surface.

What our gateway does, and how nginx is told to do the same:
- routes: `/auth/*` to the auth service, `/api/*` to the replicas, `/healthz` and
  `/readyz` answered by nginx itself, anything else a JSON 404; `/auth/introspect` (mode
  opaque's internal endpoint) is a JSON 404 from outside (nginx matches the decoded,
  normalised path, so `%69ntrospect` is caught too; the auth service also refuses any
  request carrying X-Forwarded-For there);
- upstream keep-alive: `keepalive` pools per upstream with HTTP/1.1 and no `Connection`
  header towards them;
- health: nginx (open source) has no active health checks, so its behaviour is the passive
  one: an upstream that refuses a connection is skipped for `fail_timeout` after
  `max_fails` errors, and an idempotent request that failed to connect is retried on the
  next replica (`proxy_next_upstream error timeout`), never a POST;
- client headers that would spoof the client's address or identity are replaced or
  dropped (X-Forwarded-For is set from the TCP peer, not appended to);
- errors nginx itself produces (no upstream, timeout, too large) are the contract's JSON.
- edge validation (VALIDATE_AT=gateway): nginx's `auth_request` sends each /api request's
  credential headers to the auth service's `GET /auth/edge-check` (auth_service/
  edge_check.py) with the original method, target and request ID; a 204 carries the
  identity assertion, which `auth_request_set` puts into the proxied request, so the
  replicas verify it exactly as behind our gateway. The auth service, not nginx, holds
  the signing key (the phantom-token pattern). A refusal is the contract's JSON 401/403
  with the checker's own code (from `X-Authbench-Error`); a check that could not be
  made (auth service down, Redis down) is a 503;
It has no /metrics operator port and no /openapi.json (both are our gateway's own).

The cluster starts it through this module (`python -m authbench.targets.nginx gateway`),
which writes nothing and only `exec`s nginx with the config named in NGINX_CONF: the child
keeps the gateway's place (name, argv tail, PID) in LocalCluster, so groups, CPU sampling
and stopping treat it as they treat ours.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from authcore.config import VALIDATION_PLACES

NGINX_MISSING = (
    "nginx was not found on PATH (it is at /usr/sbin/nginx on Debian). Install it first:\n"
    "  Debian/Ubuntu: sudo apt-get install nginx-light"
)
CONF_ENV = "NGINX_CONF"
GATEWAYS = ("ours", "nginx")  # what can answer at the gateway's address (--gateway)


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        raise FileNotFoundError(NGINX_MISSING)
    return found


def _servers(urls: Sequence[str], max_fails: int) -> str:
    lines = []
    for url in urls:
        parts = urlsplit(url)
        lines.append(
            f"        server {parts.hostname}:{parts.port} max_fails={max_fails} fail_timeout=1s;"
        )
    return "\n".join(lines)


def _json(code: str, detail: str) -> str:
    return json.dumps({"error": code, "detail": detail})


EDGE_CHECK_LOCATION = "/_authbench_edge_check"  # internal: no client can ask it
ASSERTION_HEADER = "X-Authbench-Identity"  # authcore.assertion's (the harness keeps its
# own copy of the name: nginx.conf is text, and the header is the contract between them)

# What every proxied request carries. nginx inherits `proxy_set_header` into a location only
# when the location sets none itself, so a location that adds one repeats them all.
_PROXY_HEADERS = (
    ("Connection", '""'),
    ("Host", "$host"),
    # The client's address as nginx saw it: replaces, never appends to, what it sent.
    ("X-Forwarded-For", "$remote_addr"),
    ("X-Forwarded-Proto", "http"),
    ("Forwarded", '""'),
    ("X-Real-IP", '""'),
    ("X-Forwarded-Host", '""'),
    ("X-Forwarded-User", '""'),
    ("X-User", '""'),
    ("X-Authenticated-User", '""'),
    ("X-Request-Id", "$request_id"),
    # A client's own assertion never reaches a replica (our gateway drops it too).
    (ASSERTION_HEADER, '""'),
)


def _headers(indent: int, **overrides: str) -> str:
    """`proxy_set_header` lines: _PROXY_HEADERS with `overrides` (underscores for dashes)."""
    values = {name: value for name, value in _PROXY_HEADERS}
    values.update({name.replace("_", "-"): value for name, value in overrides.items()})
    pad = " " * indent
    return "\n".join(f"{pad}proxy_set_header {name} {value};" for name, value in values.items())


def _error_pages(indent: int) -> str:
    pad = " " * indent
    return "\n".join(
        pad + line
        for line in (
            "error_page 502 503 = @unavailable;",
            "error_page 504 = @timeout;",
            "error_page 413 = @too_large;",
            "error_page 400 494 = @bad_request;",
            "error_page 404 = @not_found;",  # nginx's own, e.g. the internal check location
        )
    )


def _edge_locations() -> str:
    """/api/* behind `auth_request`, the internal check location and its error answers."""
    return f"""
        location ^~ /api/ {{
            auth_request {EDGE_CHECK_LOCATION};
            auth_request_set $authbench_identity $upstream_http_x_authbench_identity;
            auth_request_set $authbench_error $upstream_http_x_authbench_error;
{_headers(12, X_Authbench_Identity="$authbench_identity")}
            # error_page here replaces the server's list: theirs again, plus the check's.
{_error_pages(12)}
            error_page 401 = @edge_unauthorized;
            error_page 403 = @edge_forbidden;
            error_page 500 = @edge_unavailable;
            proxy_pass http://authbench_resource;
        }}
        location = {EDGE_CHECK_LOCATION} {{
            internal;
            proxy_pass http://authbench_auth/auth/edge-check;
            proxy_pass_request_body off;
            proxy_next_upstream off;
            # The client's credential headers go along as they came; nothing that says
            # "from outside" (the auth service refuses that here), the original request line
            # and the ID the replica will get.
{
        _headers(
            12,
            Content_Length='""',
            X_Forwarded_For='""',
            X_Original_Method="$request_method",
            X_Original_URI="$request_uri",
        )
    }
        }}
        location @edge_unauthorized {{
            return 401 '{_json("$authbench_refusal", "the credential was refused at the edge")}';
        }}
        location @edge_forbidden {{
            return 403 '{_json("$authbench_forbidden", "the request was refused at the edge")}';
        }}
        location @edge_unavailable {{
            add_header Retry-After 1 always;
            return 503 '{_json("$authbench_outage", "the credential could not be checked")}';
        }}"""


# The check's own machine code when it sent one (only [a-z_], so nothing can be injected
# into the JSON answer), else the contract's generic one.
_EDGE_MAPS = """
    map $authbench_error $authbench_refusal {
        default invalid_credential;
        ~^[a-z_]+$ $authbench_error;
    }
    map $authbench_error $authbench_forbidden {
        default forbidden;
        ~^[a-z_]+$ $authbench_error;
    }
    map $authbench_error $authbench_outage {
        default auth_unavailable;
        ~^[a-z_]+$ $authbench_error;
    }
"""


def nginx_config(
    *,
    port: int,
    auth_urls: Sequence[str],
    replica_urls: Sequence[str],
    workdir: Path,
    workers: int = 1,
    upstream_timeout_s: float = 5.0,
    max_body_bytes: int = 65536,
    edge: bool = False,
    listen_host: str = "127.0.0.1",
    origin: str = "the cluster rewrites it",
) -> str:
    """The nginx.conf of a gateway on `listen_host`:`port` (see the module's docstring);
    `edge`: validate at the edge through `auth_request` (VALIDATE_AT=gateway). An upstream
    URL's host may be a name: nginx resolves it when it (re)loads the config and takes
    every address it gets as a server of that upstream (compose's DNS: every replica)."""
    if not auth_urls or not replica_urls:
        raise ValueError("nginx gateway: needs at least one auth URL and one replica URL")
    temp = workdir / "nginx-temp"
    timeout_ms = max(1, round(upstream_timeout_s * 1000))  # nginx takes no fractions
    not_found = _json("not_found", "no such resource")
    api = (
        _edge_locations()
        if edge
        else "        location ^~ /api/ { proxy_pass http://authbench_resource; }"
    )
    return f"""# written by authbench.targets.nginx; do not edit ({origin})
worker_processes {max(1, workers)};
daemon off;
pid {workdir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    default_type application/json;
    client_max_body_size {max_body_bytes};
    client_header_timeout 10s;
    client_body_timeout 10s;
    keepalive_timeout 60s;
{_EDGE_MAPS if edge else ""}
    upstream authbench_auth {{
{_servers(auth_urls, 1)}
        keepalive 32;
    }}
    upstream authbench_resource {{
{_servers(replica_urls, 1)}
        keepalive 64;
    }}

    server {{
        listen {listen_host}:{port} backlog=1024;

        proxy_http_version 1.1;
{_headers(8)}
        proxy_connect_timeout 1s;
        proxy_send_timeout {timeout_ms}ms;
        proxy_read_timeout {timeout_ms}ms;
        proxy_next_upstream error timeout;
        proxy_next_upstream_tries 3;

{_error_pages(8)}

        location = /healthz {{ return 200 '{{"status": "ok", "service": "gateway"}}'; }}
        location = /readyz {{ return 200 '{{"status": "ready", "service": "gateway"}}'; }}
        location = /auth/introspect {{ return 404 '{not_found}'; }}
        location ^~ /auth/ {{ proxy_pass http://authbench_auth; }}
        location = /auth/edge-check {{ return 404 '{not_found}'; }}
{api}
        location / {{ return 404 '{not_found}'; }}

        location @unavailable {{
            add_header Retry-After 1 always;
            return 503 '{_json("upstream_unavailable", "no healthy upstream could answer")}';
        }}
        location @timeout {{
            return 504 '{_json("upstream_timeout", "the upstream did not answer in time")}';
        }}
        location @too_large {{
            return 413 '{_json("payload_too_large", "request body too large")}';
        }}
        location @not_found {{ return 404 '{not_found}'; }}
        location @bad_request {{
            return 400 '{_json("bad_request", "malformed request")}';
        }}
    }}
}}
"""


def write_config(path: Path, **kwargs: object) -> Path:
    workdir = Path(str(kwargs["workdir"]))
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / "nginx-temp" / sub).mkdir(parents=True, exist_ok=True)
    path.write_text(nginx_config(**kwargs))  # type: ignore[arg-type]
    return path


def gateway_process(
    env: dict[str, str], workdir: Path, workers: int = 1
) -> tuple[list[str], dict[str, str]]:
    """argv and env of an nginx gateway in place of ours, whose env (PORT, AUTH_URL,
    RESOURCE_URLS, UPSTREAM_TIMEOUT_S, MAX_BODY_BYTES) it is given; writes its config."""
    nginx_binary()  # fail now, with the install hint, rather than in the child
    port = int(env["PORT"])
    conf = write_config(
        workdir / f"nginx-{port}.conf",
        port=port,
        auth_urls=[u for u in env.get("AUTH_URL", "").split(",") if u],
        replica_urls=[u for u in env.get("RESOURCE_URLS", "").split(",") if u],
        workdir=workdir,
        workers=workers,
        upstream_timeout_s=float(env.get("UPSTREAM_TIMEOUT_S", "5")),
        max_body_bytes=int(env.get("MAX_BODY_BYTES", "65536")),
        # The assertions are signed by the auth service (its /auth/edge-check).
        edge=env.get("VALIDATE_AT") == "gateway",
    )
    return [sys.executable, "-m", __name__, "gateway"], {**env, CONF_ENV: str(conf)}


# --- compose (docker-compose.yml's service gateway-nginx, profile `nginx`) ----------------
# The same template, with compose's service names as upstreams: nginx resolves each name to
# every replica's address when it loads the config, and the container's start script
# (docker-compose.yml) reloads nginx when compose's DNS answers differently (a --scale, a
# replica gone), so the upstreams follow scaling with keep-alive pools and passive health
# kept. One config per VALIDATE_AT, committed, mounted by that variable.
COMPOSE_CONFIG_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
COMPOSE_PORT = 8080  # inside the container; published on 127.0.0.1:$GATEWAY_PORT


def compose_config_path(validate_at: str) -> Path:
    return COMPOSE_CONFIG_DIR / f"validate-at-{validate_at}.conf"


def compose_config(validate_at: str) -> str:
    """deploy/nginx/validate-at-<validate_at>.conf's text (tests keep the files equal)."""
    return nginx_config(
        port=COMPOSE_PORT,
        listen_host="0.0.0.0",  # inside the container; published on loopback only
        auth_urls=["http://auth:8081"],
        replica_urls=["http://resource:8101"],
        workdir=Path("/tmp"),  # noqa: S108 - the container's own (its script makes nginx-temp)
        edge=validate_at == "gateway",
        origin="python -m authbench.targets.nginx compose-configs writes it",
    )


def write_compose_configs() -> list[Path]:
    written = []
    for place in VALIDATION_PLACES:
        path = compose_config_path(place)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(compose_config(place))
        written.append(path)
    return written


def main(argv: Sequence[str]) -> None:
    """`python -m authbench.targets.nginx gateway`: become nginx with $NGINX_CONF;
    `... compose-configs`: (re)write deploy/nginx/'s configs for compose."""
    if list(argv) == ["compose-configs"]:
        for path in write_compose_configs():
            print(f"wrote {path}")
        return
    conf = os.environ.get(CONF_ENV)
    if not conf or list(argv) != ["gateway"]:
        raise SystemExit(
            f"usage: {CONF_ENV}=nginx.conf python -m authbench.targets.nginx gateway\n"
            "       python -m authbench.targets.nginx compose-configs"
        )
    binary = nginx_binary()
    os.execv(binary, [binary, "-c", conf, "-e", "stderr"])  # noqa: S606 - a fixed argv


if __name__ == "__main__":
    main(sys.argv[1:])
