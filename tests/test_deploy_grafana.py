"""deploy/grafana: the dashboard queries only exported metrics, parses as PromQL and is provisioned."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from test_deploy_promql import series_names, unknown_names

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "skin-plugin.json"
# Grafana's range variables, replaced by fixed windows before promtool parses the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def exprs() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_dashboard_identity():
    dash = dashboard()
    assert dash["uid"] == "skin-plugin"
    assert dash["title"]
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert panel["title"]
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_every_query_uses_only_exported_metrics():
    assert panels()
    for panel in panels():
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert series_names(expr), f"{panel['title']}: {expr} selects no series"
            assert unknown_names(expr) == [], f"{panel['title']}: {unknown_names(expr)}"


def test_every_query_parses_as_promql(tmp_path):
    """promtool parses each query, written as a recording rule, with Grafana's variables filled in."""
    rules = []
    for number, expr in enumerate(exprs()):
        for variable, window in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, window)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: `make system-deps` installs Debian's prometheus package")
    proc = subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


@pytest.mark.parametrize(
    ("what", "needle"),
    [
        ("throughput per worker", "sum by (worker) (rate(skin_images_scored_total"),
        ("total throughput", "sum(rate(skin_images_scored_total"),
        ("queue length", "skin_queue_length"),
        ("oldest job age", "skin_queue_oldest_job_age_seconds"),
        ("latency p50", "histogram_quantile(0.5, sum by (le) (rate(skin_image_latency_seconds_bucket"),
        ("latency p95", "histogram_quantile(0.95, sum by (le) (rate(skin_image_latency_seconds_bucket"),
        ("failures by reason", "sum by (reason) (rate(skin_images_failed_total"),
        ("predictions per class", 'sum by (label) (increase(skin_images_scored_total{outcome="scored"}'),
        ("workers up", "skin_workers_up"),
        ("model version", "skin_model_info"),
    ],
)
def test_dashboard_has_panel_for(what, needle):
    assert any(needle in expr for expr in exprs()), f"no query for {what}"


def test_panels_use_the_provisioned_datasource():
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]


def test_dashboard_provider_reads_the_mounted_folder():
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "skin-plugin.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{entry['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
