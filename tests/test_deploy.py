"""The deployment files, checked offline: every Kubernetes manifest against the Kubernetes
API schemas (kubernetes-validate's bundled OpenAPI schemas, strict: no unknown fields), and
both the manifests and the compose file against the server itself: the probes and ports are
the ones it serves, every PRICEGRID_* variable they set is a setting it reads, the Service is
headless for client-side balancing, the store comes from a secret."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from pricegrid.server.app.settings import variables

ROOT = Path(__file__).resolve().parent.parent
KUBE = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.30"


def _env_names() -> set[str]:
    return set(variables())


def _documents():
    for path in KUBE:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


@pytest.mark.parametrize("name, doc", list(_documents()), ids=lambda x: x if isinstance(x, str) else x["kind"])
def test_every_manifest_is_valid_kubernetes(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_deployment_serves_what_the_server_serves():
    docs = {d["kind"]: d for _, d in _documents()}
    deployment, service = docs["Deployment"], docs["Service"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= _env_names(), set(env) - _env_names()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(env["PRICEGRID_PORT"]["value"])
    assert ports["metrics"] == int(env["PRICEGRID_METRICS_PORT"]["value"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"]  # grpc.health.v1, which the server serves
    assert env["PRICEGRID_STORE"]["valueFrom"]["secretKeyRef"]["name"] == docs["Secret"]["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"  # headless: DNS lists every pod
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert int(container["resources"]["requests"]["cpu"]) == int(env["PRICEGRID_KERNEL_THREADS"]["value"])
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    grace = float(env["PRICEGRID_GRACE"]["value"])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_the_compose_file_runs_replicas_on_one_postgres():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    replicas = {k: v for k, v in compose["services"].items() if k.startswith("replica-")}
    assert len(replicas) == 3
    stores = {r["environment"]["PRICEGRID_STORE"] for r in replicas.values()}
    assert len(stores) == 1 and next(iter(stores)).startswith("postgresql://") and "@postgres:5432/" in stores.pop()
    for r in replicas.values():
        assert set(r["environment"]) <= _env_names()
        assert (ROOT / "deploy" / r["build"]["context"] / r["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    host_ports = [p.split(":")[0] for r in replicas.values() for p in r["ports"]]
    assert len(host_ports) == len(set(host_ports))
