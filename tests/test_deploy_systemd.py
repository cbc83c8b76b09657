"""deploy/systemd: `systemd-analyze verify` and `systemd-analyze security --offline` on the units.

Both run against a scratch root (``--root``) holding the units, this machine's system units (the
targets they order against) and an executable at ``/opt/skin-plugin/venv/bin/skin-plugin``, because
verify checks that ExecStart's program exists. No systemd needs to be running.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[1] / "deploy" / "systemd"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
EXE = "/opt/skin-plugin/venv/bin/skin-plugin"
UNITS = {  # unit to verify -> file
    "skin-plugin-worker@2.service": "skin-plugin-worker@.service",
    "skin-plugin-listener.service": "skin-plugin-listener.service",
    "skin-plugin-exporter.service": "skin-plugin-exporter.service",
}
# systemd-analyze security's overall exposure limit, in tenths (20 = 2.0); the units score 1.4.
EXPOSURE_THRESHOLD = 20


def systemd_analyze(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not found: `make system-deps` installs Debian's systemd package")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("systemd-root")
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for source in set(UNITS.values()):
        shutil.copy(SYSTEMD / source, units / source)
    exe = root / EXE.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    return root


def unit_path(root: Path, unit: str) -> str:
    return str(root / "etc" / "systemd" / "system" / unit)


def settings(file: str) -> dict[str, list[str]]:
    """Key -> values (systemd allows a key more than once), comments and sections dropped."""
    found: dict[str, list[str]] = {}
    for line in (SYSTEMD / file).read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def env_example() -> dict[str, str]:
    lines = (SYSTEMD / "skin-plugin.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_analyze_verify_is_silent(root, unit):
    proc = systemd_analyze(f"--root={root}", "verify", unit_path(root, unit))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == "", "verify printed warnings:\n" + proc.stderr


def test_verify_catches_a_broken_unit(root, tmp_path):
    """The scratch root is not too forgiving: a misspelt key and a missing program are reported."""
    text = (SYSTEMD / "skin-plugin-exporter.service").read_text()
    broken = root / "etc" / "systemd" / "system" / "skin-plugin-broken.service"
    broken.write_text(text.replace("NoNewPrivileges=", "NoNewPriviliges=").replace(EXE, EXE + "-missing"))
    proc = systemd_analyze(f"--root={root}", "verify", str(broken))
    assert proc.returncode != 0
    assert "Unknown key 'NoNewPriviliges'" in proc.stderr
    assert "is not executable" in proc.stderr
    broken.unlink()


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_hardening_exposure_is_low(root, unit):
    proc = systemd_analyze(
        "security", "--offline=true", f"--root={root}", f"--threshold={EXPOSURE_THRESHOLD}", unit_path(root, unit)
    )
    assert proc.returncode == 0, proc.stdout[-600:] + proc.stderr


@pytest.mark.parametrize("file", sorted(set(UNITS.values())))
def test_unit_runs_the_venv_as_skin_with_the_env_file(file):
    unit = settings(file)
    assert unit["User"] == ["skin"] and unit["Group"] == ["skin"]
    assert unit["EnvironmentFile"] == ["/etc/skin-plugin/skin-plugin.env"]
    (exec_start,) = unit["ExecStart"]
    assert exec_start.startswith(EXE + " ")
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                       "ProtectHome": "yes"}.items():
        assert unit[key] == [value], key
    assert unit["CapabilityBoundingSet"] == [""]
    # PROMETHEUS_MULTIPROC_DIR is the shared runtime directory, kept while other units run.
    assert "/run/" + unit["RuntimeDirectory"][0] == env_example()["PROMETHEUS_MULTIPROC_DIR"]
    assert unit["RuntimeDirectoryPreserve"] == ["yes"]


def test_worker_template_instance_is_the_concurrency():
    unit = settings("skin-plugin-worker@.service")
    assert unit["ExecStart"] == [f"{EXE} worker --queues urgent,batch --concurrency %i"]
    assert "MemoryDenyWriteExecute" not in unit, "OpenVINO's CPU plugin needs W+X memory for its JIT"


@pytest.mark.parametrize("file", ["skin-plugin-worker@.service", "skin-plugin-listener.service"])
def test_spool_and_reports_are_the_only_writable_data_paths(file):
    env = env_example()
    (paths,) = settings(file)["ReadWritePaths"]
    assert set(paths.split()) == {env["SKIN_SPOOL_DIR"], env["SKIN_OUTPUT_DIR"]}


def test_listener_and_exporter_commands():
    listener = settings("skin-plugin-listener.service")["ExecStart"][0].split()
    assert listener[1:6] == ["listen", "--ae-title", "SKINAI", "--port", "11112"]
    assert listener[listener.index("--out") + 1] == env_example()["SKIN_OUTPUT_DIR"]
    assert listener[listener.index("--host") + 1] == "0.0.0.0"  # the PACS is another host
    # the exporter keeps its default bind address, 127.0.0.1; its PHI pages ask for the env file's password
    assert settings("skin-plugin-exporter.service")["ExecStart"] == [f"{EXE} exporter --port 9808"]
    env = env_example()
    assert env["SKIN_EXPORTER_USERNAME"] and env["SKIN_EXPORTER_PASSWORD"] == "CHANGE_ME"
    from workers.config import DEFAULT_RESULT_TTL_S

    assert int(env["SKIN_RESULT_TTL"]) == DEFAULT_RESULT_TTL_S


def test_env_example_has_every_setting_and_no_secret():
    env = env_example()
    assert set(env) >= {"SKIN_BROKER_URL", "SKIN_OUTPUT_DIR", "SKIN_DEVICE", "SKIN_PRECISION",
                        "SKIN_WORKER_CONCURRENCY", "SKIN_ALLOWED_AES", "SKIN_SPOOL_DIR",
                        "PROMETHEUS_MULTIPROC_DIR"}
    assert env["SKIN_BROKER_URL"] == "redis://:CHANGE_ME@127.0.0.1:6379/0"
    assert env["SKIN_DEVICE"] in {"CPU", "NPU", "AUTO"}
    assert env["SKIN_PRECISION"] in {"fp32", "int8"}
    assert "systemd/skin-plugin.env" in (SYSTEMD.parent / ".gitignore").read_text().split()
