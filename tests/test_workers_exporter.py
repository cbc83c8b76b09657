"""``skin-plugin exporter``: Prometheus metrics from real workers and Redis, and the status page."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from browser_support import chromium_screenshot
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from queue_support import Worker, free_port, listening_addresses, wait_until, worker_settings

from workers.client import submit_batch, wait_for_batch
from workers.store import BatchStore

ROOT = Path(__file__).resolve().parents[1]


EXPORTER_USER, EXPORTER_PASSWORD = "ops", "exporter-test-pw-5e1a"
EXPORTER_ENV = {"SKIN_EXPORTER_USERNAME": EXPORTER_USER, "SKIN_EXPORTER_PASSWORD": EXPORTER_PASSWORD}
BASIC = "Basic " + base64.b64encode(f"{EXPORTER_USER}:{EXPORTER_PASSWORD}".encode()).decode()


def get(url: str, authorization: str | None = BASIC) -> tuple[int, str]:
    """GET with the exporter's credential (``authorization=None``: without any)."""
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
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


@contextmanager
def running_exporter(redis_url: str, env: dict[str, str]) -> Iterator[str]:
    """``skin-plugin exporter`` with its default bind address, as a process; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "skin_plugin.cli", "exporter", "--port", str(port),
                             "--broker", redis_url], env={**os.environ, **env}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            return get(base + "/metrics")[0] == 200
        except OSError:
            return False

    try:
        wait_until(up, 30, what="exporter")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture()
def exporter(redis_url, metrics_dir):
    with running_exporter(redis_url, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **EXPORTER_ENV}) as base:
        yield base


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
        page = tmp_path / "status.html"  # fetched with the credential: a self-contained page
        page.write_text(html)
        stderr = chromium_screenshot(page.as_uri(), png, tmp_path / "profile", 1100, 900)
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


PAGES = ("/", "/index.html", "/api/status")


def test_the_exporter_binds_localhost_and_asks_for_its_credential(redis_url, samples_dir, tmp_path):
    """Default bind 127.0.0.1; the status page, its JSON and a report with patient data answer only with
    the credential (basic or bearer); /metrics stays open and carries no patient data."""
    from skin_plugin.dicom.convert import PatientStudy, build_dataset

    patient = PatientStudy("SECRETNAME^JANE", "MRN-98765", birth_date="19700101", accession_number="ACC-55501")
    files = []
    for i, jpeg in enumerate(sorted(samples_dir.glob("*.jpg"))[:2]):
        files.append(tmp_path / f"SECRETNAME_JANE_{i}.dcm")
        build_dataset(jpeg.read_bytes(), patient).save_as(files[-1], enforce_file_format=True)
    settings = worker_settings(redis_url)
    store = BatchStore.from_settings(settings)
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    token = "exporter-test-token-0c4d"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **EXPORTER_ENV, "SKIN_EXPORTER_TOKEN": token}
    with Worker(settings, concurrency=1, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}):
        batch = submit_batch(store, files, tmp_path / "out")
        wait_for_batch(store, batch, timeout_s=60)
    report = f"/batches/{batch}/report.html"
    with running_exporter(redis_url, env) as base:
        assert listening_addresses(int(base.rsplit(":", 1)[1])) == {"127.0.0.1"}
        wrong_basic = "Basic " + base64.b64encode(f"{EXPORTER_USER}:not-it".encode()).decode()
        for path in (*PAGES, report):
            for authorization in (None, wrong_basic, "Bearer not-it", f"Bearer {token}x", "Basic !!"):
                code, body = get(base + path, authorization)
                assert code == 401 and "SECRETNAME" not in body and batch not in body, (path, authorization)
            assert get(base + path)[0] == 200
            assert get(base + path, f"Bearer {token}")[0] == 200
        request = urllib.request.Request(base + report)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert 'Basic realm="skin-plugin"' in refused.value.headers["WWW-Authenticate"]
        code, page = get(base + report)
        assert code == 200 and "SECRETNAME" in page  # with the credential, the report is the report
        code, metrics_text = get(base + "/metrics", None)
        assert code == 200 and total(samples(metrics_text), "skin_images_scored_total", outcome="scored") == 2
        for phi in ("SECRETNAME", "MRN-98765", "19700101", "ACC-55501", str(tmp_path)):
            assert phi not in metrics_text


def test_without_a_configured_credential_only_metrics_are_served(redis_url, tmp_path):
    store = BatchStore.from_settings(worker_settings(redis_url))
    store.create_batch("b1", 1, "batch", str(tmp_path))
    (tmp_path / "report.html").write_text("<p>SECRETNAME</p>")
    (tmp_path / "prom").mkdir()
    with running_exporter(redis_url, {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}) as base:
        for path in (*PAGES, "/batches/b1/report.html"):
            code, body = get(base + path, None)
            assert code == 403 and "SKIN_EXPORTER_PASSWORD" in body and "SECRETNAME" not in body, path
            assert get(base + path, BASIC)[0] == 403  # nothing to compare a credential with
        assert get(base + "/metrics", None)[0] == 200
    proc = subprocess.run([sys.executable, "-m", "skin_plugin.cli", "exporter", "--broker", redis_url],
                          env={**os.environ, "SKIN_EXPORTER_USERNAME": "ops"}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "SKIN_EXPORTER_PASSWORD" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
