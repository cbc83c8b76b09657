"""deploy/docker-compose.yml, resolved by Docker Compose itself (`config`, no engine needed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
SECRETS = {
    "SKIN_REDIS_PASSWORD": "redis-test-secret-4f1c",
    "ORTHANC_PASSWORD": "orthanc-test-secret-9b2e",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test-secret-07d3",
    "SKIN_EXPORTER_PASSWORD": "exporter-test-secret-51aa",
}
SERVICES = {"redis", "worker", "listener", "exporter", "orthanc", "prometheus", "grafana"}
# The Orthanc image writes its generated configuration and root-owned storage as root.
ROOT_ALLOWED = {"orthanc"}


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail("neither `docker compose` nor `docker-compose` found: `make system-deps` installs the latter")


def compose_config(env_file: Path) -> subprocess.CompletedProcess:
    # A clean environment: only the env file supplies the variables.
    env = {"PATH": os.environ["PATH"], "HOME": str(env_file.parent)}
    cmd = [*compose_command(), "-f", str(COMPOSE), "--env-file", str(env_file), "config"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=env_file.parent)


def write_env(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    env_file = write_env(tmp_path_factory.mktemp("compose") / "test.env", SECRETS)
    proc = compose_config(env_file)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def ports(service: dict) -> set[str]:
    """Published ports as 'host_ip:published:target' for both Compose output formats."""
    found = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.add(f"{port.get('host_ip', '')}:{port['published']}:{port['target']}".lstrip(":"))
        else:
            found.add(str(port).removesuffix("/tcp"))
    return found


def volumes(service: dict) -> dict[str, str]:
    """Mount target -> source for both Compose output formats."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found[volume["target"]] = volume["source"]
        else:
            source, target = str(volume).split(":")[:2]
            found[target] = source
    return found


def test_services_are_all_there(resolved):
    assert set(resolved["services"]) == SERVICES


def test_containers_run_as_non_root(resolved):
    for name, service in resolved["services"].items():
        if name in ROOT_ALLOWED:
            assert "user" not in service
            continue
        assert "user" in service, f"{name} has no user:"
        uid = str(service["user"]).split(":")[0]
        assert uid not in {"0", "root"}, name
        assert "no-new-privileges:true" in service.get("security_opt", []), name


def test_skin_containers(resolved):
    services = resolved["services"]
    for name in ("worker", "listener", "exporter"):
        service = services[name]
        assert service["image"] == "skin-plugin:1.0.0"
        assert service["user"] == "10001:10001"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        env = service["environment"]
        assert env["SKIN_BROKER_URL"] == f"redis://:{SECRETS['SKIN_REDIS_PASSWORD']}@redis:6379/0"
        assert env["PROMETHEUS_MULTIPROC_DIR"] in service["tmpfs"]
    assert services["worker"]["command"] == ["worker", "--concurrency", "1"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["listener"]["command"] == [
        "listen", "--ae-title", "SKINAI", "--port", "11112", "--out", "/data/reports", "--host", "0.0.0.0"]
    assert "11112:11112" in ports(services["listener"])
    assert services["exporter"]["command"] == ["exporter", "--port", "9808", "--host", "0.0.0.0"]
    assert "127.0.0.1:9808:9808" in ports(services["exporter"])


def test_exporter_asks_for_a_credential_and_containers_listen_on_their_interface(resolved):
    """Services bind 127.0.0.1 unless told: in a container, the listener, the exporter and the workers'
    metrics must listen on its interface; the exporter's PHI pages then ask for the password of .env."""
    services = resolved["services"]
    exporter = services["exporter"]["environment"]
    assert exporter["SKIN_EXPORTER_PASSWORD"] == SECRETS["SKIN_EXPORTER_PASSWORD"]
    assert exporter["SKIN_EXPORTER_USERNAME"]
    assert "SKIN_EXPORTER_PASSWORD" not in services["worker"]["environment"]  # only the exporter needs it
    assert services["worker"]["environment"]["SKIN_METRICS_HOST"] == "0.0.0.0"
    for name in ("listener", "exporter"):
        command = services[name]["command"]
        assert command[command.index("--host") + 1] == "0.0.0.0", name
    # Prometheus (in the compose network) scrapes the open /metrics, and so does the healthcheck
    assert "/metrics" in " ".join(services["exporter"]["healthcheck"]["test"])


def test_reports_volume_is_shared(resolved):
    services = resolved["services"]
    assert "skin-data" in resolved["volumes"]
    for name in ("worker", "listener", "orthanc"):
        assert volumes(services[name])["/data"] == "skin-data", name
    listener = services["listener"]["command"]
    out_dir = listener[listener.index("--out") + 1]
    assert services["worker"]["environment"]["SKIN_OUTPUT_DIR"] == out_dir
    assert out_dir.startswith("/data/")


def test_redis_keeps_patient_data_in_memory_only_and_is_password_protected(resolved):
    """No append-only file, no RDB snapshot, no volume: what Redis holds about patients never reaches a
    disk (README, "Security"); job records expire after SKIN_RESULT_TTL, the documented default."""
    from workers.config import DEFAULT_RESULT_TTL_S

    redis = resolved["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "no"
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--requirepass") + 1] == SECRETS["SKIN_REDIS_PASSWORD"]
    assert "/data" not in volumes(redis) and "/data" in redis["tmpfs"]
    assert "redis-data" not in (resolved.get("volumes") or {})
    assert not redis.get("ports"), "redis must not be published"
    for name in ("worker", "listener", "exporter", "orthanc"):
        assert int(resolved["services"][name]["environment"]["SKIN_RESULT_TTL"]) == DEFAULT_RESULT_TTL_S, name


def test_monitoring_and_orthanc_mount_the_deploy_files(resolved):
    services = resolved["services"]
    prometheus = volumes(services["prometheus"])
    assert Path(prometheus["/etc/prometheus/prometheus.yml"]) == DEPLOY / "prometheus" / "prometheus.yml"
    assert Path(prometheus["/etc/prometheus/rules.yml"]) == DEPLOY / "prometheus" / "rules.yml"
    grafana = volumes(services["grafana"])
    assert Path(grafana["/etc/grafana/provisioning"]) == DEPLOY / "grafana" / "provisioning"
    assert Path(grafana["/var/lib/grafana/dashboards"]) == DEPLOY / "grafana" / "dashboards"
    orthanc = services["orthanc"]
    plugin = orthanc["environment"]["ORTHANC__PYTHON_SCRIPT"]
    dockerfile = Path(orthanc["build"]["context"]) / orthanc["build"]["dockerfile"]
    text = dockerfile.read_text()
    assert "FROM orthancteam/orthanc" in text  # Orthanc's image, plus the package for its Python plugin
    assert f"COPY deploy/orthanc/skin_plugin_orthanc.py {plugin}" in text
    assert orthanc["environment"]["SKIN_PYTHONPATH"] in text
    assert orthanc["environment"]["SKIN_ORTHANC_ROUTE"].startswith("dicom://ORTHANC@orthanc:")
    for service in services.values():
        for source in volumes(service).values():
            if source.startswith("/"):
                path = Path(source)
                assert path.exists(), f"bind mount source missing: {path}"


def test_secrets_come_from_the_environment(resolved):
    """Every password-like value in the resolved file is one of the env file's: none is written literally."""
    secrets = set(SECRETS.values())
    checked = 0
    for name, service in resolved["services"].items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if re.search(r"PASSWORD|SECRET|TOKEN|AUTH$|REGISTERED_USERS", key):
                assert any(secret in value for secret in secrets), f"{name}: {key} is not from the env file"
                checked += 1
            for password in re.findall(r"://[^/@:]*:([^@/]*)@", value):
                assert password in secrets, f"{name}: {key} has a literal password"
                checked += 1
        command = service.get("command") or []
        if "--requirepass" in command:
            assert command[command.index("--requirepass") + 1] in secrets
            checked += 1
    assert checked >= 7
    assert resolved["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS[
        "GRAFANA_ADMIN_PASSWORD"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_config_refuses_to_start_without_a_secret(tmp_path, missing):
    env = {key: value for key, value in SECRETS.items() if key != missing}
    proc = compose_config(write_env(tmp_path / "test.env", env))
    assert proc.returncode != 0
    assert missing in proc.stderr


def test_env_example_holds_placeholders_only():
    values = dict(
        line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(SECRETS) <= set(values)
    for key in SECRETS:
        assert values[key] == "CHANGE_ME"
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_dockerfile_builds_the_serving_install():
    """Read as Docker reads it (continuations joined); there is no engine here to build it."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    runs = " ".join(line for line in instructions if line.startswith("RUN "))
    assert re.search(r"pip install \.(\s|$)", runs)
    assert "[train]" not in runs and "torch" not in runs
    assert "useradd --system --uid 10001 --gid 10001" in runs
    assert instructions[[line.split()[0] for line in instructions].index("USER")] == "USER 10001:10001"
    assert [line for line in instructions if line.startswith("ENTRYPOINT")] == [
        'ENTRYPOINT ["/opt/skin-plugin/venv/bin/skin-plugin"]']
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "runs", "tests"} <= set(ignored)
