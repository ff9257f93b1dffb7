"""deploy/kubernetes: every overlay renders (`kubectl kustomize`) and every object it
renders validates offline against the Kubernetes schemas (kubernetes-validate, strict:
an unknown field is an error). No cluster runs here; these are the checks that can.

On top of the schemas, the rules a benchmark deployment must keep: every container that
serves a port has a readiness and a liveness probe, every image is pinned (a tag that is
not `latest`, or a digest), and every container has CPU and memory requests and limits.
Each rule is also shown to fail on a manifest that breaks it.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from authbench import modes
from authbench.process import PROJECT_ROOT
from authcore.config import documented_settings

KUSTOMIZE_ROOT = PROJECT_ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUSTOMIZE_ROOT / "overlays").iterdir() if p.is_dir())
# The oldest Kubernetes the manifests are meant for, and the newest the validator knows.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
WORKLOADS = ("Deployment", "StatefulSet", "Job", "DaemonSet")
SERVING = ("Deployment", "StatefulSet", "DaemonSet")  # long-running: probed
# Settings that are not the services' (Settings in authcore/config.py) but the stack's.
NOT_SERVICE_SETTINGS = {"REDIS_APPENDONLY"}

Objects = list[dict[str, Any]]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("kubectl is missing; scripts/setup.sh installs kubernetes-client")
        pytest.skip("kubectl is not installed (apt-get install kubernetes-client)")
    return found


def render(directory: Path) -> Objects:
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Objects]:
    return {name: render(KUSTOMIZE_ROOT / "overlays" / name) for name in OVERLAYS}


def containers(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind of container, container) of a workload's pod template."""
    if obj.get("kind") not in WORKLOADS:
        return
    pod = obj["spec"]["template"]["spec"]
    for key in ("initContainers", "containers"):
        for container in pod.get(key) or []:
            yield key, container


def pinned(image: str) -> bool:
    """A digest, or a tag other than `latest` (the part after the last `/`)."""
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def problems(objects: Objects) -> list[str]:
    """Every broken rule, as `Kind/name container: what`."""
    found = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        for key, c in containers(obj):
            at = f"{where} {c['name']}"
            if not pinned(c.get("image", "")):
                found.append(f"{at}: image {c.get('image')!r} is not pinned (tag or digest)")
            resources = c.get("resources") or {}
            for bound in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(bound) or {})
                if missing:
                    found.append(f"{at}: no {bound} for {', '.join(sorted(missing))}")
            serves = key == "containers" and obj["kind"] in SERVING and c.get("ports")
            for probe in ("readinessProbe", "livenessProbe"):
                if serves and probe not in c:
                    found.append(f"{at}: serves a port without a {probe}")
    return found


def find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    """The object by kind and name (generated names carry a hash suffix)."""
    for obj in objects:
        actual = obj["metadata"]["name"]
        if obj["kind"] == kind and (actual == name or actual.rsplit("-", 1)[0] == name):
            return obj
    raise LookupError(f"{kind}/{name}")


def test_there_are_overlays_per_mode_and_for_replica_counts() -> None:
    assert {"session", "jwt", "denylist"} <= set(OVERLAYS)
    assert any(name.startswith("replicas-") for name in OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_schemas(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    kinds = {obj["kind"] for obj in objects}
    assert {"StatefulSet", "Deployment", "Service", "ConfigMap", "Secret", "Job"} <= kinds
    for version in K8S_VERSIONS:
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                pytest.fail(f"{overlay}: {name} on {version}: {err}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_pins_and_limits_everywhere(rendered: dict[str, Objects], overlay: str) -> None:
    assert problems(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_is_consistent_with_what_it_deploys(
    rendered: dict[str, Objects], overlay: str
) -> None:
    objects = rendered[overlay]
    settings = find(objects, "ConfigMap", "authbench-settings")["data"]
    bench = find(objects, "ConfigMap", "bench-settings")["data"]
    documented = {name for name, _default, _doc in documented_settings()}
    assert set(settings) - documented == set(), "not a setting of authcore/config.py"
    # The bench Job measures as --target external, which refuses a mode the deployment
    # does not serve: every mode it is told to run must be served by these settings.
    for key in bench["BENCH_MODES"].split(","):
        assert modes.get(key).served_by(settings), (overlay, key, settings)
    resource = find(objects, "Deployment", "resource")
    assert int(bench["BENCH_REPLICAS"]) == resource["spec"]["replicas"]
    assert int(bench["BENCH_WORKERS"]) == find(objects, "Deployment", "loadgen")["spec"]["replicas"]
    # One service image for the three services (the command picks the service).
    images = {
        c["image"].rsplit(":", 1)[0]
        for name in ("auth", "resource", "gateway")
        for _key, c in containers(find(objects, "Deployment", name))
    }
    assert images == {"authbench"}
    redis = find(objects, "StatefulSet", "redis")
    assert redis["spec"]["volumeClaimTemplates"], "Redis keeps its data on a volume"


def test_each_mode_overlay_sets_its_revocation(rendered: dict[str, Objects]) -> None:
    expected = {"session": "none", "jwt": "none", "denylist": "denylist"}
    for overlay, revocation in expected.items():
        data = find(rendered[overlay], "ConfigMap", "authbench-settings")["data"]
        assert data["JWT_REVOCATION"] == revocation, overlay
    aof = rendered["aof"]
    assert find(aof, "ConfigMap", "redis-settings")["data"]["REDIS_APPENDONLY"] == "yes"
    replicas = find(rendered["replicas-6"], "Deployment", "resource")["spec"]["replicas"]
    assert replicas == 6


def test_the_rules_catch_a_missing_probe_an_unpinned_image_and_no_limits(
    rendered: dict[str, Objects],
) -> None:
    base = rendered[OVERLAYS[0]]

    def broken(kind: str, name: str, change: Any) -> list[str]:
        objects = copy.deepcopy(base)
        change(find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0])
        return problems(objects)

    assert broken("Deployment", "gateway", lambda c: c.pop("readinessProbe")) == [
        "Deployment/gateway gateway: serves a port without a readinessProbe"
    ]
    assert broken("StatefulSet", "redis", lambda c: c.pop("livenessProbe")) == [
        "StatefulSet/redis redis: serves a port without a livenessProbe"
    ]
    for image in ("authbench:latest", "authbench", "registry:5000/authbench"):
        assert broken("Deployment", "auth", lambda c, i=image: c.update(image=i)) == [
            f"Deployment/auth auth: image {image!r} is not pinned (tag or digest)"
        ]
    assert (
        broken(
            "Deployment", "auth", lambda c: c.update(image="r:5000/authbench@sha256:" + "0" * 64)
        )
        == []
    )
    assert broken("Job", "bench", lambda c: c["resources"].pop("limits")) == [
        "Job/bench bench: no limits for cpu, memory"
    ]
    assert broken("Deployment", "loadgen", lambda c: c["resources"]["requests"].pop("cpu")) == [
        "Deployment/loadgen loadgen: no requests for cpu"
    ]


def test_the_schema_check_catches_a_misspelt_field(rendered: dict[str, Objects]) -> None:
    gateway = copy.deepcopy(find(rendered[OVERLAYS[0]], "Deployment", "gateway"))
    gateway["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, K8S_VERSIONS[0], strict=True)
    gateway = copy.deepcopy(find(rendered[OVERLAYS[0]], "Deployment", "gateway"))
    gateway["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, K8S_VERSIONS[0], strict=True)


def shared_key_problem(objects: Objects) -> str | None:
    """Several auth pods with no key-encryption key in common: each would sign with a key of
    its own (authcore/keystore.py needs JWT_KEY_ENCRYPTION_KEY to share them in Redis)."""
    auth = find(objects, "Deployment", "auth")
    if auth["spec"].get("replicas", 1) <= 1:
        return None
    [(_key, container)] = list(containers(auth))
    for env in container.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if env["name"] == "JWT_KEY_ENCRYPTION_KEY" and ref and not ref.get("optional", False):
            return None
    return "auth runs several pods without a required JWT_KEY_ENCRYPTION_KEY secret"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_several_auth_pods_share_their_signing_keys(
    rendered: dict[str, Objects], overlay: str
) -> None:
    assert shared_key_problem(rendered[overlay]) is None


def test_there_is_an_overlay_with_auth_replicas_and_the_rule_catches_a_missing_key(
    rendered: dict[str, Objects],
) -> None:
    several = [
        o for o in OVERLAYS if find(rendered[o], "Deployment", "auth")["spec"]["replicas"] > 1
    ]
    assert several, "an overlay runs several auth replicas (issue 16)"
    objects = copy.deepcopy(rendered[several[0]])
    for _key, container in containers(find(objects, "Deployment", "auth")):
        container.pop("env")
    assert shared_key_problem(objects) is not None
    scaled = copy.deepcopy(rendered[OVERLAYS[0]])
    find(scaled, "Deployment", "auth")["spec"]["replicas"] = 2  # the base's Secret is empty
    assert shared_key_problem(scaled) is not None
