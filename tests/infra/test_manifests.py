"""The compose file and the Kubernetes manifests are well-formed and wired to real things.

Docker and a cluster cannot run here, so these tests read the files: the compose structure
(every service healthy-checked, every depends_on waiting on a health check that exists,
volumes declared, secrets never inlined) and every Kubernetes object against the official
JSON schemas, offline and strict (kubernetes-validate), plus the links schemas cannot see:
probes on BentoML's real health paths, the HPA on the Deployment, GPU requests, TF_CONFIG.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "infra" / "compose" / "docker-compose.yaml"
K8S = REPO / "infra" / "k8s"
STACK = {"postgres", "minio", "mlflow", "prefect-server", "prefect-worker", "bentoml", "evidently-ui"}
BENTOML_HEALTH = {"/readyz", "/livez"}  # BentoML's own endpoints (recsys.platform probes /readyz too)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    """Every Kubernetes object of infra/k8s (the kustomization is not one)."""
    docs = [d for f in sorted(K8S.glob("*.yaml")) if f.name != "kustomization.yaml" for d in yaml.safe_load_all(f.read_text())]
    return [d for d in docs if d]


def _find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def test_compose_runs_the_whole_stack_each_service_health_checked(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == STACK
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        assert "image" in service, name
    ports = {name: {p.split(":")[-1] for p in s.get("ports", [])} for name, s in services.items()}
    assert ports["mlflow"] == {"5000"} and ports["prefect-server"] == {"4200"}
    assert ports["bentoml"] == {"3000"} and ports["evidently-ui"] == {"8000"}
    # Each UI's healthcheck probes the port it serves on.
    for name, port in (("mlflow", "5000"), ("prefect-server", "4200"), ("bentoml", "3000"), ("evidently-ui", "8000")):
        assert f":{port}/" in " ".join(services[name]["healthcheck"]["test"]), name
    assert "/readyz" in " ".join(services["bentoml"]["healthcheck"]["test"])


def test_compose_starts_each_service_after_its_dependencies_are_healthy(compose: dict) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}: {condition}"
            assert "healthcheck" in services[dependency]
    needs = {name: set(s.get("depends_on", {})) for name, s in services.items()}
    assert {"postgres", "minio"} <= needs["mlflow"] and "postgres" in needs["prefect-server"]
    assert {"prefect-server", "mlflow"} <= needs["prefect-worker"]

    def reaches_itself(start: str, node: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(d == start or (d not in seen and reaches_itself(start, d, seen | {d})) for d in needs[node])

    assert not [n for n in services if reaches_itself(n, n)], "depends_on has a cycle"


def test_compose_backends_and_secrets_come_from_the_environment(compose: dict) -> None:
    services = compose["services"]
    mlflow_env = services["mlflow"]["environment"]
    store_uri = mlflow_env["RECSYS_MLFLOW_BACKEND_STORE_URI"]
    assert store_uri.startswith("postgresql://") and "@postgres:5432/mlflow" in store_uri
    assert mlflow_env["RECSYS_MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert mlflow_env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    worker_env = services["prefect-worker"]["environment"]
    assert (worker_env["PREFECT_API_URL"], worker_env["RECSYS_MLFLOW_TRACKING_URI"]) == ("http://prefect-server:4200/api", "http://mlflow:5000")
    # Every password is a ${VAR} reference, never a literal in the file.
    text = COMPOSE.read_text()
    for key in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY", "RECSYS_LOG_KEY", "RECSYS_ADMIN_TOKEN"):
        for value in re.findall(rf"^\s*{key}:\s*(\S+)", text, re.MULTILINE):
            assert value.startswith("${"), f"{key} is inlined: {value}"
    assert (REPO / "infra" / "compose" / "Dockerfile").is_file()


def test_compose_volumes_are_declared_and_mounted(compose: dict) -> None:
    declared = set(compose["volumes"])
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", []) if not v.startswith((".", "/"))}
    assert used == declared == {"postgres-data", "minio-data", "recsys-home"}
    mounts = {n: [v.split(":")[1] for v in s.get("volumes", [])] for n, s in compose["services"].items()}
    assert "/var/lib/postgresql/data" in mounts["postgres"] and "/data" in mounts["minio"]
    for bind in (v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", []) if v.startswith(".")):
        assert (COMPOSE.parent / bind).exists(), bind


def test_every_kubernetes_object_matches_the_official_schema(objects: list[dict]) -> None:
    version = kubernetes_validate.latest_version()
    kinds = set()
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError on a bad field
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(f.name for f in K8S.glob("*.yaml") if f.name != "kustomization.yaml")


def test_schema_validation_catches_a_broken_object(objects: list[dict]) -> None:
    """The check above can fail: a misspelt field is rejected (strict schemas)."""
    broken = yaml.safe_load(yaml.safe_dump(_find(objects, "Deployment", "recsys-service")))
    broken["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_bentoml_service_probes_scales_and_is_reachable(objects: list[dict]) -> None:
    deployment = _find(objects, "Deployment", "recsys-service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    probes = {kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz" and probes["livenessProbe"]["path"] == "/livez"
    assert {p["path"] for p in probes.values()} <= BENTOML_HEALTH
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert all(port_names.get(p["port"]) == 3000 for p in probes.values())
    assert "cpu" in container["resources"]["requests"]  # utilisation targets need a request

    hpa = _find(objects, "HorizontalPodAutoscaler", "recsys-service")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]

    service = _find(objects, "Service", "recsys-service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_every_service_selects_pods_that_exist(objects: list[dict]) -> None:
    pod_labels = [o["spec"]["template"]["metadata"].get("labels", {}) for o in objects if o["kind"] in ("Deployment", "Job")]
    job_names = {o["metadata"]["name"] for o in objects if o["kind"] == "Job"}  # Jobs label pods job-name=<name>
    for service in (o for o in objects if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        found = any(selector.items() <= labels.items() for labels in pod_labels) or selector.get("job-name") in job_names
        assert found, f"Service {service['metadata']['name']} selects no pods"


def test_training_job_runs_several_gpu_workers_with_tf_config(objects: list[dict]) -> None:
    job = _find(objects, "Job", "recsys-train")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] >= 2
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["WORKERS"]) == spec["completions"]
    script = " ".join(container["command"])
    assert "TF_CONFIG" in script and "JOB_COMPLETION_INDEX" in script and "recsys.worker" in script
    headless = _find(objects, "Service", pod["subdomain"])
    assert headless["spec"]["clusterIP"] == "None"
    assert f"{job['metadata']['name']}-{{i}}.{pod['subdomain']}:2222" in script  # pod i's DNS name


def test_prefect_worker_polls_a_kubernetes_pool_with_rights_to_start_jobs(objects: list[dict]) -> None:
    deployment = _find(objects, "Deployment", "prefect-worker")
    pod = deployment["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command[command.index("--type") + 1] == "kubernetes" and "--pool" in command
    assert pod["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/health"
    role = _find(objects, "Role", "prefect-worker")
    assert any("jobs" in r["resources"] and "create" in r["verbs"] for r in role["rules"])
    binding = _find(objects, "RoleBinding", "prefect-worker")
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"] == _find(objects, "ServiceAccount", "prefect-worker")["metadata"]["name"]


def test_mlflow_and_evidently_are_served_and_probed(objects: list[dict]) -> None:
    for name, port, path in (("mlflow", 5000, "/health"), ("evidently-ui", 8000, "/api/version")):
        container = _find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == path
        assert container["ports"][0]["containerPort"] == port
        assert _find(objects, "Service", name)["spec"]["ports"][0]["port"] == port
    mlflow = _find(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    secret_refs = {e["name"] for e in mlflow["env"] if "valueFrom" in e}
    assert {"RECSYS_MLFLOW_BACKEND_STORE_URI", "AWS_SECRET_ACCESS_KEY"} <= secret_refs


def test_manifest_files_parse_as_yaml() -> None:
    for path in [COMPOSE, *K8S.glob("*.yaml")]:
        assert list(yaml.safe_load_all(Path(path).read_text())), path
