"""deploy/prometheus: promtool checks the scrape config and the rules and runs the rules' unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_deploy_promql import unknown_names

PROM = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
ALERTS = {"SkinExporterDown", "SkinNoWorkersUp", "SkinOldestJobTooOld", "SkinFailureRatioHigh",
          "SkinThroughputLow", "SkinSRsDeadLettered"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: `make system-deps` installs Debian's prometheus package")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


def rules() -> list[dict]:
    groups = yaml.safe_load((PROM / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_check_config():
    proc = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is valid prometheus config file syntax" in proc.stdout


def test_promtool_check_rules():
    proc = promtool("check", "rules", str(PROM / "rules.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules())} rules found" in proc.stdout


def test_promtool_rule_unit_tests_pass():
    proc = promtool("test", "rules", str(PROM / "rules_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    ("original", "mutant"),
    [
        ("> 0.05", "> 0.5"),
        ("> 28800", "> 86400"),
        ("> 600", "> 6000"),
        (") < 5", ") < 0.5"),
        ("skin_workers_up == 0", "skin_workers_up == 1"),
        ("(increase(skin_sr_dead_lettered_total[30m])) > 0", "(increase(skin_sr_dead_lettered_total[30m])) > 5"),
        ("unless skin_sr_dead_lettered_total offset 30m) > 0", "unless skin_sr_dead_lettered_total) > 0"),
    ],
)
def test_rule_unit_tests_catch_a_changed_threshold(tmp_path, original, mutant):
    text = (PROM / "rules.yml").read_text()
    assert text.count(original) == 1
    (tmp_path / "rules.yml").write_text(text.replace(original, mutant))
    shutil.copy(PROM / "rules_test.yml", tmp_path / "rules_test.yml")
    proc = promtool("test", "rules", str(tmp_path / "rules_test.yml"))
    assert proc.returncode != 0, f"rules_test.yml did not notice {original!r} -> {mutant!r}"


def test_the_alerts_exist_and_use_only_exported_metrics():
    found = {rule["alert"] for rule in rules()}
    assert found == ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        problems = unknown_names(rule["expr"], extra_series=frozenset({"up"}))
        assert problems == [], f"{rule['alert']}: {problems}"


def test_rule_thresholds():
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules()}
    assert 'skin_queue_oldest_job_age_seconds{queue="batch"} > 28800' in exprs["SkinOldestJobTooOld"]
    assert 'skin_queue_oldest_job_age_seconds{queue="urgent"} > 600' in exprs["SkinOldestJobTooOld"]
    assert 'skin_images_scored_total{outcome="failed"}[30m]' in exprs["SkinFailureRatioHigh"]
    assert "sum(rate(skin_images_scored_total[10m]))" in exprs["SkinThroughputLow"]
    assert "skin_queue_length" in exprs["SkinThroughputLow"]
    assert "sum by (destination) (increase(skin_sr_dead_lettered_total[30m])) > 0" in exprs["SkinSRsDeadLettered"]
    durations = {rule["alert"]: rule.get("for") for rule in rules()}
    assert durations["SkinNoWorkersUp"] == "5m"


def test_prometheus_scrapes_the_exporter_and_loads_the_rules():
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    skin = jobs["skin-plugin"]
    assert skin.get("metrics_path", "/metrics") == "/metrics"
    assert skin["static_configs"][0]["targets"] == ["exporter:9808"]
    # SkinExporterDown watches this job name.
    assert any('job="skin-plugin"' in rule["expr"] for rule in rules())
