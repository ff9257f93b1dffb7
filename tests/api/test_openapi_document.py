"""The OpenAPI document is valid OpenAPI 3.1, is what the gateway serves, and names
every public route the services register (no route undocumented, none invented)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from auth_service.routes import routes as auth_routes
from authbench.targets.local import LocalCluster
from resource_service.routes import routes as resource_routes
from tests.api.conftest import served_document
from tests.client import request

# Operator-only and internal routes, deliberately absent from the public description:
# introspection (RFC 7662) is for the replicas' client credential, never through the
# gateway (tests/security/test_introspect_hostile.py).
# The edge check is nginx's auth_request subrequest, never public either (test_nginx_edge.py).
OPERATOR_ROUTES = {
    ("POST", "/auth/admin/rotate-keys"),
    ("POST", "/auth/introspect"),
    ("GET", "/auth/edge-check"),
}
# Answered by the gateway itself (gateway/app.py), not by a routed service.
GATEWAY_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/openapi.json")}
# `{name}` or `{name:regex}`, the regex possibly with `{m,n}` quantifiers of its own.
_PARAMETER = re.compile(r"\{[A-Za-z_]+(?::(?:[^{}]|\{[^{}]*\})*)?\}")


def _load(path: Path) -> dict[str, object]:
    document = json.loads(path.read_bytes())
    assert isinstance(document, dict)
    return document


def test_the_shipped_document_is_valid_openapi_3_1(document_path: Path) -> None:
    document = _load(document_path)
    assert str(document["openapi"]).startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_the_validator_would_catch_a_broken_document(document_path: Path) -> None:
    document = _load(document_path)
    paths = document["paths"]
    assert isinstance(paths, dict)
    del paths["/api/items/{id}"]["get"]["parameters"]  # {id} no longer declared
    errors = list(OpenAPIV31SpecValidator(document).iter_errors())
    assert any("'id'" in str(error) for error in errors), errors


def test_the_gateway_serves_the_shipped_document(
    api_cluster: LocalCluster, document_path: Path
) -> None:
    body = served_document(api_cluster)
    assert body == document_path.read_bytes()
    validate(json.loads(body), cls=OpenAPIV31SpecValidator)
    answer = request(api_cluster.gateway_url, "HEAD", "/openapi.json")
    assert answer.status == 200 and answer.body == b""
    assert answer.headers["content-type"].startswith("application/json")
    refused = request(api_cluster.gateway_url, "POST", "/openapi.json", body={})
    assert refused.status == 405 and refused.json()["error"] == "method_not_allowed"
    assert refused.headers["allow"] == "GET, HEAD"


def test_an_undeclared_method_is_405_with_the_allowed_ones(api_cluster: LocalCluster) -> None:
    """RFC 9110 section 15.5.6: a 405 carries Allow (Schemathesis's unsupported_method)."""
    for method, path, allowed in (
        ("POST", "/api/me", {"GET", "HEAD"}),
        ("DELETE", "/auth/login", {"POST"}),
        ("PUT", "/auth/.well-known/jwks.json", {"GET", "HEAD"}),
        ("PATCH", "/healthz", {"GET", "HEAD"}),
    ):
        answer = request(api_cluster.gateway_url, method, path)
        assert answer.status == 405, (method, path, answer.status)
        assert answer.json()["error"] == "method_not_allowed"
        listed = {m.strip() for m in answer.headers.get("allow", "").split(",")}
        assert listed == allowed, (method, path, answer.headers)


def _registered(table: web.RouteTableDef) -> set[tuple[str, str]]:
    found = set()
    for route in table:
        assert isinstance(route, web.RouteDef)
        found.add((route.method, _PARAMETER.sub("{}", route.path)))
    return found


def test_every_public_route_is_documented_and_nothing_else(document_path: Path) -> None:
    paths = _load(document_path)["paths"]
    assert isinstance(paths, dict)
    documented = {
        (method.upper(), _PARAMETER.sub("{}", path))
        for path, operations in paths.items()
        for method in operations
    }
    served = (_registered(auth_routes) | _registered(resource_routes) | GATEWAY_ROUTES) - {
        (m, _PARAMETER.sub("{}", p)) for m, p in OPERATOR_ROUTES
    }
    assert documented == served
