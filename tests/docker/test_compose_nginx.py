"""`--gateway nginx` on compose (issue 15 item 3): the profile `nginx` puts Debian's nginx
(service gateway-nginx) on the gateway's port in place of ours, and its upstreams follow
`--scale resource=N`: nginx resolves compose's DNS name to every replica when it loads its
config, and its start script reloads it when that answer changes."""

from __future__ import annotations

import time

import pytest

from authbench.targets.compose import GATEWAY_SERVICE, NGINX_SERVICE, ComposeTarget
from tests.client import bearer, login, request


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_nginx_takes_the_gateways_place_and_follows_scaling_of_resource(
    compose_stack: ComposeTarget,
) -> None:
    if not compose_stack.is_up():  # test_compose_stack's last test takes the stack down
        compose_stack.up(replicas=3, build=False, timeout_s=240)
    nginx = ComposeTarget(
        project_name=compose_stack.project_name, env=dict(compose_stack.env), gateway="nginx"
    )
    try:
        started = time.monotonic()
        nginx.up(replicas=1, build=False, timeout_s=180)  # what the bench does per group
        print(f"nginx in the gateway's place in {time.monotonic() - started:.1f} s")
        assert [c.service for c in nginx.containers(GATEWAY_SERVICE)] == []
        (container,) = nginx.containers(NGINX_SERVICE)
        assert container.health == "healthy"
        assert nginx.gateway_url == compose_stack.gateway_url  # the same port
        assert "gateway" in nginx.cpu_seconds()  # measured in the gateway's place

        url = nginx.gateway_url
        token = bearer(login(url, 3, "jwt"))

        def replicas_seen(seconds: float) -> set[str]:
            seen: set[str] = set()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                answer = request(url, "GET", "/api/me", headers=token)
                assert answer.status == 200, answer.body  # never a failed read meanwhile
                seen.add(answer.json()["replica"])
            return seen

        assert len(replicas_seen(0.5)) == 1
        nginx.scale(3)
        started = time.monotonic()
        seen: set[str] = set()
        while len(seen) < 3 and time.monotonic() - started < 10:
            seen |= replicas_seen(0.5)
        assert len(seen) == 3, f"after {time.monotonic() - started:.1f} s only {seen} answered"
        print(f"all three replicas answered through nginx {time.monotonic() - started:.1f} s on")
        # An attached harness (chaos) finds nginx at the gateway's port.
        attached = ComposeTarget(project_name=nginx.project_name, env=dict(compose_stack.env))
        attached.start()
        assert attached.gateway == "nginx"
    finally:
        # Ours back, three replicas: as the other tests expect the stack.
        compose_stack.up(replicas=3, build=False, timeout_s=180)
    assert [c.service for c in compose_stack.containers(NGINX_SERVICE, all=True)] == []
    assert compose_stack.is_up()
