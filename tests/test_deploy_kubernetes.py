"""deploy/kubernetes: built by `kubectl kustomize` (offline), then the objects are checked.

No API server or schema validator is available here (see deploy/README.md), so the checks are the
structural ones that matter: kinds, non-root pods, resources, KEDA targets, Secret placeholders.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
NAMESPACE = "skin-plugin"
EXPECTED = {
    ("v1", "Namespace", "skin-plugin"),
    ("v1", "ConfigMap", "skin-plugin-config"),
    ("v1", "PersistentVolumeClaim", "skin-plugin-data"),
    ("apps/v1", "Deployment", "skin-plugin-worker"),
    ("apps/v1", "Deployment", "skin-plugin-listener"),
    ("apps/v1", "Deployment", "skin-plugin-exporter"),
    ("apps/v1", "Deployment", "redis"),
    ("v1", "Service", "redis"),
    ("v1", "Service", "skin-plugin-listener"),
    ("v1", "Service", "skin-plugin-exporter"),
    ("keda.sh/v1alpha1", "ScaledObject", "skin-plugin-worker"),
    ("keda.sh/v1alpha1", "TriggerAuthentication", "skin-plugin-redis-auth"),
}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found (it ships with this machine image; it builds the kustomization)")
    proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def deployments(objects: list[dict]) -> list[dict]:
    """The Deployments running the skin-plugin image (Redis is checked on its own)."""
    return [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != "redis"]


def secret_template() -> dict:
    return yaml.safe_load((K8S / "secret.example.yaml").read_text())


def test_kustomize_builds_the_expected_objects(objects):
    assert {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects} == EXPECTED
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "skin-plugin"


def test_every_source_file_is_in_the_kustomization_except_the_secret_template():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    # secret.yaml is the operator's filled-in, git-ignored copy of the template.
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.yaml"}
    assert on_disk - listed == {"secret.example.yaml"}
    assert listed <= on_disk


def test_pods_run_non_root_with_read_only_root(objects):
    for deployment in deployments(objects):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        emptydirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            # A read-only root needs writable /tmp and PROMETHEUS_MULTIPROC_DIR.
            assert mounts["/tmp"] in emptydirs
            assert mounts[config_value(objects, "PROMETHEUS_MULTIPROC_DIR")] in emptydirs


def config_value(objects: list[dict], key: str) -> str:
    return find(objects, "ConfigMap", "skin-plugin-config")["data"][key]


def test_every_container_has_requests_and_limits(objects):
    for deployment in deployments(objects):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), deployment["metadata"]["name"]
            assert {"cpu", "memory"} <= resources["limits"].keys(), deployment["metadata"]["name"]
    (worker,) = find(objects, "Deployment", "skin-plugin-worker")["spec"]["template"]["spec"]["containers"]
    assert worker["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}
    assert worker["resources"]["limits"]["cpu"] == "1"
    assert worker["args"] == ["worker", "--queues", "urgent,batch", "--concurrency", "1"]


def test_containers_get_settings_from_the_configmap_and_the_secret(objects):
    secret_name = secret_template()["metadata"]["name"]
    for deployment in deployments(objects):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            sources = container["envFrom"]
            assert {"configMapRef": {"name": "skin-plugin-config"}} in sources
            assert {"secretRef": {"name": secret_name}} in sources
            assert container["image"] == "skin-plugin:1.0.0"


def test_configmap_holds_no_secret(objects):
    data = find(objects, "ConfigMap", "skin-plugin-config")["data"]
    assert set(data) >= {"SKIN_OUTPUT_DIR", "SKIN_DEVICE", "SKIN_PRECISION", "SKIN_WORKER_CONCURRENCY",
                         "SKIN_ALLOWED_AES", "SKIN_SPOOL_DIR", "PROMETHEUS_MULTIPROC_DIR"}
    for key, value in data.items():
        assert "PASSWORD" not in key and "@" not in value, key
    assert "SKIN_BROKER_URL" not in data


def test_secret_template_has_placeholders_only():
    secret = secret_template()
    assert secret["kind"] == "Secret" and secret["metadata"]["namespace"] == NAMESPACE
    assert set(secret["stringData"]) == {"SKIN_REDIS_PASSWORD", "SKIN_BROKER_URL", "SKIN_EXPORTER_PASSWORD"}
    for key, value in secret["stringData"].items():
        assert "CHANGE_ME" in value, key
    assert "data" not in secret
    assert "kubernetes/secret.yaml" in (K8S.parent / ".gitignore").read_text().split()


def test_keda_scales_the_worker_on_both_queues(objects):
    scaled = find(objects, "ScaledObject", "skin-plugin-worker")["spec"]
    worker = find(objects, "Deployment", "skin-plugin-worker")
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": worker["metadata"]["name"]}
    assert 1 <= scaled["minReplicaCount"] < scaled["maxReplicaCount"]
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    assert sorted(t["metadata"]["listName"] for t in triggers) == ["batch", "urgent"]
    secret = secret_template()
    for trigger in triggers:
        assert int(trigger["metadata"]["listLength"]) >= 1
        # addressFromEnv is read from the scale target's environment: the ConfigMap.
        address = config_value(objects, trigger["metadata"]["addressFromEnv"])
        assert address.rsplit(":", 1)[1] == "6379"
        auth = find(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        (ref,) = auth["spec"]["secretTargetRef"]
        assert ref["parameter"] == "password"
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]


def matches(selector: dict, deployment: dict) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize(("name", "port", "args"), [
    ("skin-plugin-listener", 11112, ["listen", "--ae-title", "SKINAI", "--port", "11112"]),
    ("skin-plugin-exporter", 9808, ["exporter", "--port", "9808"]),
    ("redis", 6379, ["--appendonly", "no"]),
])
def test_services_reach_their_deployments(objects, name, port, args):
    service = find(objects, "Service", name)
    deployment = find(objects, "Deployment", name)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    targets = [d for d in objects if d["kind"] == "Deployment" and matches(service["spec"]["selector"], d)]
    assert targets == [deployment]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][: len(args)] == args
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == port
    assert named[service_port["targetPort"]] == port


def test_exporter_is_annotated_for_prometheus(objects):
    expected = {"prometheus.io/scrape": "true", "prometheus.io/port": "9808", "prometheus.io/path": "/metrics"}
    service = find(objects, "Service", "skin-plugin-exporter")
    pod = find(objects, "Deployment", "skin-plugin-exporter")["spec"]["template"]
    assert service["metadata"]["annotations"] == expected
    assert pod["metadata"]["annotations"] == expected


def test_listener_and_workers_share_the_reports_volume(objects):
    claim = find(objects, "PersistentVolumeClaim", "skin-plugin-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    output_dir = config_value(objects, "SKIN_OUTPUT_DIR")
    for name in ("skin-plugin-worker", "skin-plugin-listener"):
        pod = find(objects, "Deployment", name)["spec"]["template"]["spec"]
        volume = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounted = [m for m in container["volumeMounts"]
                   if volume[m["name"]].get("persistentVolumeClaim", {}).get("claimName") == "skin-plugin-data"]
        assert len(mounted) == 1, name
        assert output_dir.startswith(mounted[0]["mountPath"] + "/"), name
    listener = find(objects, "Deployment", "skin-plugin-listener")["spec"]["template"]["spec"]["containers"][0]
    assert listener["args"][listener["args"].index("--out") + 1] == output_dir


def test_redis_keeps_patient_data_in_memory_only(objects):
    """The Redis the KEDA scaler and SKIN_BROKER_URL point at: password from the Secret, no append-only
    file, no RDB snapshot, its /data in RAM (README, "Security"); non-root with a read-only root."""
    from workers.config import DEFAULT_RESULT_TTL_S

    deployment = find(objects, "Deployment", "redis")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert container["image"].startswith("redis:7") and container["command"] == ["redis-server"]
    assert args[args.index("--appendonly") + 1] == "no" and args[args.index("--save") + 1] == ""
    assert args[args.index("--requirepass") + 1] == "$(SKIN_REDIS_PASSWORD)"
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["SKIN_REDIS_PASSWORD"] == {"name": secret_template()["metadata"]["name"], "key": "SKIN_REDIS_PASSWORD"}
    assert env["REDISCLI_AUTH"] == env["SKIN_REDIS_PASSWORD"]  # the probes' redis-cli authenticates
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/data" and volumes[mount["name"]]["emptyDir"]["medium"] == "Memory"
    assert not any("persistentVolumeClaim" in v for v in volumes.values())
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert config_value(objects, "SKIN_REDIS_ADDRESS") == f"redis.{NAMESPACE}.svc.cluster.local:6379"
    assert secret_template()["stringData"]["SKIN_BROKER_URL"].endswith(f"@redis.{NAMESPACE}.svc.cluster.local:6379/0")
    assert int(config_value(objects, "SKIN_RESULT_TTL")) == DEFAULT_RESULT_TTL_S


def test_pods_listen_on_their_interface_and_the_exporter_asks_for_a_credential(objects):
    """Services bind 127.0.0.1 unless told: in a pod the listener, the exporter and the workers' metrics
    listen on 0.0.0.0; the exporter's status page and reports ask for the Secret's password."""
    for name in ("skin-plugin-listener", "skin-plugin-exporter"):
        (container,) = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0", name
    assert config_value(objects, "SKIN_METRICS_HOST") == "0.0.0.0"
    assert config_value(objects, "SKIN_EXPORTER_USERNAME")
    assert "SKIN_EXPORTER_PASSWORD" in secret_template()["stringData"]
    (exporter,) = find(objects, "Deployment", "skin-plugin-exporter")["spec"]["template"]["spec"]["containers"]
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/metrics"  # the open page: probes need no key
