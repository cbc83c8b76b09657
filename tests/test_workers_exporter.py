"""``skin-plugin exporter``: Prometheus metrics from real workers and Redis, and the status page."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from browser_support import chromium_screenshot
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from queue_support import Worker, free_port, wait_until, worker_settings

from workers.client import submit_batch, wait_for_batch
from workers.store import BatchStore

ROOT = Path(__file__).resolve().parents[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(metrics: dict, metric: str, **labels: str) -> float:
    return sum(v for (n, lab), v in metrics.items()
               if n == metric and all(dict(lab).get(k) == val for k, val in labels.items()))


@pytest.fixture()
def metrics_dir(tmp_path) -> Path:
    d = tmp_path / "prom"
    d.mkdir()
    return d


@pytest.fixture()
def exporter(redis_url, metrics_dir):
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "skin_plugin.cli", "exporter", "--port", str(port),
                             "--host", "127.0.0.1", "--broker", redis_url], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return get(base + "/metrics")[0] == 200
        except OSError:
            return False

    wait_until(up, 30, what="exporter")
    yield base
    proc.terminate()
    proc.wait(10)


def test_queue_length_and_oldest_job_age_are_exported(redis_url, exporter, fullres_dicoms, tmp_path):
    store = BatchStore.from_settings(worker_settings(redis_url))
    submit_batch(store, fullres_dicoms[:12], tmp_path / "out", chunk_size=4)  # 3 tasks, no worker yet
    submit_batch(store, fullres_dicoms[12:13], tmp_path / "out2", queue="urgent")
    time.sleep(1.2)
    m = samples(get(exporter + "/metrics")[1])
    assert total(m, "skin_queue_length", queue="batch") == 3
    assert total(m, "skin_queue_length", queue="urgent") == 1
    assert 1.0 <= total(m, "skin_queue_oldest_job_age_seconds", queue="batch") < 60
    assert total(m, "skin_workers_up") == 0
    assert total(m, "skin_model_info", name="LesionCNN") == 1


def test_worker_counters_reach_the_exporter(redis_url, exporter, metrics_dir, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    (tmp_path / "bad.dcm").write_bytes(b"DICM" * 10)
    (tmp_path / "bad.txt").write_text("hello")
    files = [*fullres_dicoms[20:25], tmp_path / "bad.dcm", tmp_path / "bad.txt"]
    with Worker(settings, concurrency=2, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}):
        batch = submit_batch(store, files, tmp_path / "out", chunk_size=3)
        wait_for_batch(store, batch, timeout_s=60)
        m = samples(get(exporter + "/metrics")[1])
        assert total(m, "skin_workers_up") == 2
    assert total(m, "skin_images_scored_total", outcome="scored") == 5
    assert total(m, "skin_images_scored_total", outcome="failed") == 2
    assert total(m, "skin_images_failed_total") == 2
    assert set(dict(lab)["reason"] for (n, lab) in m if n == "skin_images_failed_total") <= {
        "not_dicom_or_image", "truncated_file", "unreadable_image", "no_pixel_data"}
    assert total(m, "skin_task_duration_seconds_count") == 3
    assert total(m, "skin_task_batch_size_sum") == 7
    assert total(m, "skin_image_latency_seconds_count") == 5
    assert total(m, "skin_queue_length") == 0


def test_status_page_lists_workers_queues_and_batches(redis_url, exporter, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    with Worker(settings, concurrency=1):
        batch = submit_batch(store, fullres_dicoms[30:36], tmp_path / "out", chunk_size=2)
        wait_for_batch(store, batch, timeout_s=60)
        status, html = get(exporter + "/")
        assert status == 200 and batch in html and "test@" in html
        assert f'href="/batches/{batch}/report.html"' in html
        png = tmp_path / "status.png"
        stderr = chromium_screenshot(exporter + "/", png, tmp_path / "profile", 1100, 900)
    assert png.exists(), stderr[-2000:]
    image = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    assert image.std(axis=(0, 1)).mean() > 15  # text, tables and the chart, not a blank page
    blue = (np.abs(image - np.array([0x2F, 0x6D, 0xB5])).sum(axis=2) < 30).sum()
    assert blue > 20  # the throughput bar of this batch is drawn
    code, report = get(exporter + f"/batches/{batch}/report.html")
    assert code == 200 and "Not for clinical use" in report
    assert get(exporter + "/batches/..%2Fetc/report.html")[0] == 404
    assert get(exporter + "/nothing")[0] == 404


def test_a_worker_serves_its_own_metrics_when_given_a_port(redis_url, metrics_dir, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    port = free_port()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "SKIN_METRICS_PORT": str(port)}
    with Worker(settings, concurrency=1, env=env):
        batch = submit_batch(store, fullres_dicoms[40:43], tmp_path / "out")
        wait_for_batch(store, batch, timeout_s=60)
        code, text = get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    assert total(samples(text), "skin_images_scored_total", outcome="scored") == 3


def test_a_real_prometheus_scrapes_the_exporter(redis_url, exporter, fullres_dicoms, tmp_path):
    """Debian's prometheus scrapes the exporter; the value comes back through its HTTP query API."""
    import json
    import shutil

    store = BatchStore.from_settings(worker_settings(redis_url))
    submit_batch(store, fullres_dicoms[:8], tmp_path / "out", chunk_size=4)  # 2 waiting tasks
    port = free_port()
    config = tmp_path / "prometheus.yml"
    target = exporter.removeprefix("http://")
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: skin-plugin\n"
                      f"    static_configs:\n      - targets: ['{target}']\n")
    exe = shutil.which("prometheus")
    assert exe, "prometheus is not installed (make system-deps)"
    proc = subprocess.Popen([exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "prometheus.log", "wb"))  # noqa: SIM115
    query = f"http://127.0.0.1:{port}/api/v1/query?query=skin_queue_length%7Bqueue%3D%22batch%22%7D"
    result: list = []

    def scraped() -> bool:
        nonlocal result
        try:
            result = json.loads(get(query)[1])["data"]["result"]
        except (OSError, ValueError, KeyError):
            return False
        return bool(result)

    try:
        wait_until(scraped, 60, 0.5, "a scraped sample in Prometheus")
    finally:
        proc.terminate()
        proc.wait(20)
    assert result[0]["metric"]["job"] == "skin-plugin"
    assert float(result[0]["value"][1]) == 2.0
