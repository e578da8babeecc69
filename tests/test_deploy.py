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


def _of_kind(kind: str) -> list[dict]:
    return [d for _, d in _documents() if d["kind"] == kind]


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_deployment_serves_what_the_server_serves():
    deployments, services, pdbs = _of_kind("Deployment"), _of_kind("Service"), _of_kind("PodDisruptionBudget")
    secret = _of_kind("Secret")[0]
    assert [d["metadata"]["name"] for d in deployments] == ["pricegrid", "pricegrid-front"]
    for deployment in deployments:
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], labels)
        # no other Deployment's pods match its selector (the pools stay apart)
        for other in deployments:
            if other is not deployment:
                assert not _selects(deployment["spec"]["selector"]["matchLabels"],
                                    other["spec"]["template"]["metadata"]["labels"])
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert set(env) <= _env_names(), set(env) - _env_names()
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == int(env["PRICEGRID_PORT"]["value"])
        assert ports["metrics"] == int(env["PRICEGRID_METRICS_PORT"]["value"])
        # the server keeps its metrics on loopback unless told: Prometheus scrapes the pod's IP
        assert env["PRICEGRID_METRICS_HOST"]["value"] == "0.0.0.0"
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == ports["grpc"]  # grpc.health.v1, which the server serves
        assert env["PRICEGRID_STORE"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
        assert int(container["resources"]["requests"]["cpu"]) == int(env["PRICEGRID_KERNEL_THREADS"]["value"])
        grace = float(env["PRICEGRID_GRACE"]["value"])
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace
        # exactly one Service for its pods, headless (DNS lists every pod), and only for its pods
        mine = [s for s in services if _selects(s["spec"]["selector"], labels)]
        assert len(mine) == 1 and mine[0]["spec"]["clusterIP"] == "None"
        assert mine[0]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        budget = [b for b in pdbs if _selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(budget) == 1 and budget[0]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    # the front-office pool asks for whole CPUs, requests equal to limits (Guaranteed QoS:
    # cores of its own under the static CPU manager policy)
    front = deployments[1]["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert front["requests"] == front["limits"] and float(front["requests"]["cpu"]).is_integer()


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


def test_the_image_exposes_its_metrics_port_on_every_interface():
    """The container's metrics are scraped from outside it (compose publishes 9464): the
    image sets the metrics host, which is loopback by default."""
    import re

    text = (ROOT / "Dockerfile").read_text()
    env = dict(re.findall(r"(PRICEGRID_[A-Z_]+)=(\S+)", text))
    assert env["PRICEGRID_METRICS_HOST"] == "0.0.0.0"
    assert re.search(rf"EXPOSE .*\b{env['PRICEGRID_METRICS_PORT']}\b", text)
