"""Delivery is visible (issue 17 items 2-4): every view of a batch says where its SRs went, ``resend`` updates
them and prints why what still fails fails, and dead peers are given up on the configured schedule.

Real Redis, Celery workers, Orthanc (authentication on), exporter and ``skin-plugin`` processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from html import escape
from pathlib import Path

import jsonschema
import pytest
from orthanc_support import OrthancServer
from queue_support import Worker, free_port, wait_until, worker_settings
from test_net_routing import assert_srs_back_in_their_studies
from test_workers_exporter import EXPORTER_ENV, get, running_exporter, samples, total

from skin_plugin.net.dead_letter import DeadLetterBox
from skin_plugin.net.destination import Destination, Timeouts
from skin_plugin.reports.delivery import DEAD_LETTER_DIR, Delivery
from skin_plugin.reports.json_report import load_schema
from skin_plugin.reports.summary import SUMMARY_SCHEMA_NAME
from workers.client import submit_batch, wait_for_batch
from workers.config import DEFAULT_ROUTE_RETRY_DELAYS_S, WorkerSettings
from workers.store import BatchStore

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "skin", "stow-test-pw-81c2"
CREDENTIAL_VARS = [k for k in os.environ if k.startswith(("SKIN_DICOMWEB_", "SKIN_ROUTE_"))]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    return subprocess.run([sys.executable, "-m", "skin_plugin.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**base, "COLUMNS": "400", **(env or {})})


def summary(out: Path) -> dict:
    data = json.loads((out / "summary.json").read_text())
    jsonschema.Draft202012Validator(load_schema(SUMMARY_SCHEMA_NAME)).validate(data)
    return data


def delivery_row(d: Delivery) -> str:
    """How report.html shows one destination."""
    return f"<td>{escape(d.destination)}</td><td>{d.sent}</td><td>{d.pending}</td><td>{d.dead_lettered}</td>"


class BlackHole:
    """A TCP port that accepts connections and never answers (a hung PACS, a half-open firewall)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_dead_letters_show_everywhere_and_resend_updates_them(redis_url, fullres_dicoms, tmp_path):
    settings = worker_settings(redis_url, route_retry_delays_s=(0.2,))
    store = BatchStore.from_settings(settings)
    files = fullres_dicoms[62:64]
    prom = tmp_path / "prom"
    prom.mkdir()
    out = tmp_path / "out"
    nobody = str(Destination.parse(f"dicom://NOBODY@127.0.0.1:{free_port()}"))  # a closed port
    with Worker(settings, concurrency=1, env={"PROMETHEUS_MULTIPROC_DIR": str(prom)}):
        batch = submit_batch(store, files, out, route=nobody)
        status = wait_for_batch(store, batch, timeout_s=180)
    dead = Delivery(nobody, sent=0, pending=0, dead_lettered=2)
    assert status.state == "dead-lettered" and status.delivery == (dead,)

    # skin-plugin status: the state and the counts per destination, and what to do
    shown = cli("status", batch, "--broker", redis_url)
    assert shown.returncode == 0, shown.stderr
    assert "dead-lettered" in shown.stdout and f"0 sent, 0 pending, 2 dead-lettered to {nobody}" in shown.stdout
    assert "2 SR(s) not delivered" in shown.stderr and f"skin-plugin resend {out / DEAD_LETTER_DIR}" in shown.stderr
    as_json = json.loads(cli("status", batch, "--broker", redis_url, "--json").stdout)
    assert as_json["delivery"] == [dead.to_dict()] and as_json["state"] == "dead-lettered"
    # summary.json (schema 1.2) and report.html
    assert summary(out)["delivery"] == [dead.to_dict()]
    html = (out / "report.html").read_text()
    assert "Delivery of the SRs" in html and delivery_row(dead) in html and "2 SR(s) not delivered" in html
    # the exporter: Prometheus counters per destination, the status page and its JSON
    with running_exporter(redis_url, {"PROMETHEUS_MULTIPROC_DIR": str(prom), **EXPORTER_ENV}) as base:
        metrics = samples(get(base + "/metrics", None)[1])
        assert total(metrics, "skin_sr_dead_lettered_total", destination=nobody) == 2
        assert total(metrics, "skin_sr_sent_total", destination=nobody) == 0
        (api,) = [b for b in json.loads(get(base + "/api/status")[1])["batches"] if b["batch_id"] == batch]
        assert api["delivery"] == [dead.to_dict()]
        assert f"0 / 0 / 2 → {escape(nobody)}" in get(base + "/")[1]

    box = DeadLetterBox(out / DEAD_LETTER_DIR)
    old_reasons = {letter.reason for letter in box.letters()}
    assert old_reasons == {f"C-STORE to {nobody}: peer unreachable: connection refused"}
    with OrthancServer(tmp_path / "orthanc", users={USER: PASSWORD}) as orthanc:
        archive = str(Destination.parse("dicomweb+" + orthanc.dicomweb_url))
        # without credentials: still failing, and it says why now (not why it failed before)
        again = cli("resend", str(box.folder), "--to", archive, "--broker", redis_url)
        assert again.returncode == 1
        assert "0 sent, 2 still failing" in again.stderr
        lines = [line for line in again.stderr.splitlines() if line.startswith("  ")]
        assert len(lines) == 2 and all("requires authentication (HTTP 401)" in line for line in lines), again.stderr
        assert "connection refused" not in again.stderr
        assert {letter.reason for letter in box.letters()} != old_reasons
        assert {letter.attempts for letter in box.letters()} == {2 + 1}  # 2 by the route, 1 by this resend

        sent = cli("resend", str(box.folder), "--to", archive, "--broker", redis_url,
                   env={"SKIN_DICOMWEB_USERNAME": USER, "SKIN_DICOMWEB_PASSWORD": PASSWORD,
                        "PROMETHEUS_MULTIPROC_DIR": str(prom)})
        assert sent.returncode == 0, sent.stderr
        assert "2 sent, 0 still failing" in sent.stderr
        assert_srs_back_in_their_studies(orthanc, files)
    after = (Delivery(nobody, 0, 0, 0), Delivery(archive, sent=2))
    assert f"delivery: {after[0].describe()}; {after[1].describe()}" in sent.stderr
    status = store.status(batch)
    assert status.state == "finished" and status.delivery == after and (status.routed, status.route_failed) == (2, 0)
    assert summary(out)["delivery"] == [d.to_dict() for d in after]
    html = (out / "report.html").read_text()
    assert all(delivery_row(d) in html for d in after) and "not delivered" not in html
    shown = cli("status", batch, "--broker", redis_url)
    assert " finished " in shown.stdout and "not delivered" not in shown.stderr
    with running_exporter(redis_url, {"PROMETHEUS_MULTIPROC_DIR": str(prom), **EXPORTER_ENV}) as base:
        metrics = samples(get(base + "/metrics", None)[1])
        assert total(metrics, "skin_sr_sent_total", destination=archive) == 2
    assert box.letters() == []


def test_peers_that_never_answer_are_given_up_on_the_configured_schedule(redis_url, fullres_dicoms, tmp_path):
    """The same connect/read timeouts and retry schedule for C-STORE and STOW-RS; pending while it retries."""
    settings = worker_settings(redis_url, timeouts=Timeouts(read_s=3), route_retry_delays_s=(0.5,))
    store = BatchStore.from_settings(settings)
    hole = BlackHole()
    routes = {"c-store": str(Destination.parse(f"dicom://HUNG@127.0.0.1:{hole.port}")),
              "stow-rs": str(Destination.parse(f"dicomweb+http://127.0.0.1:{hole.port}/dicom-web"))}
    try:
        with Worker(settings, concurrency=2):  # given to the worker as SKIN_NET_READ_TIMEOUT, SKIN_ROUTE_RETRY_DELAYS
            batches = {kind: submit_batch(store, [f], tmp_path / kind, route=route)
                       for (kind, route), f in zip(routes.items(), fullres_dicoms[64:66])}
            for kind, batch in batches.items():
                wait_until(lambda b=batch: store.status(b).reported, 120, what="the batch's report")
                written = summary(tmp_path / kind)["delivery"]
                if not store.status(batch).route_done:  # read while the route was still trying
                    assert written == [Delivery(routes[kind], pending=1).to_dict()]
            for batch in batches.values():
                wait_for_batch(store, batch, timeout_s=120)
    finally:
        hole.close()
    for kind, route in routes.items():
        assert summary(tmp_path / kind)["delivery"] == [Delivery(route, dead_lettered=1).to_dict()]
        (letter,) = DeadLetterBox(tmp_path / kind / DEAD_LETTER_DIR).letters()
        assert letter.attempts == 2  # the first attempt and one retry
        assert "within 3 s" in letter.reason, letter.reason
    assert "no association answer" in DeadLetterBox(tmp_path / "c-store" / DEAD_LETTER_DIR).letters()[0].reason
    assert "no answer" in DeadLetterBox(tmp_path / "stow-rs" / DEAD_LETTER_DIR).letters()[0].reason


def test_timeouts_and_retry_schedule_are_settings_with_defaults():
    default = WorkerSettings.from_env({})
    assert default.timeouts == Timeouts(5.0, 20.0) and default.route_retry_delays_s == DEFAULT_ROUTE_RETRY_DELAYS_S
    custom = WorkerSettings.from_env({"SKIN_NET_CONNECT_TIMEOUT": "2", "SKIN_NET_READ_TIMEOUT": "7.5",
                                      "SKIN_ROUTE_RETRY_DELAYS": "1,10,60"})
    assert custom.timeouts == Timeouts(2.0, 7.5) and custom.route_retry_delays_s == (1.0, 10.0, 60.0)
    assert WorkerSettings.from_env(custom.to_env()) == custom  # embedded workers get the same
    assert WorkerSettings.from_env({"SKIN_ROUTE_RETRY_DELAYS": "none"}).route_retry_delays_s == ()
    for name, value, message in [("SKIN_NET_READ_TIMEOUT", "0", "above 0"),
                                 ("SKIN_NET_CONNECT_TIMEOUT", "soon", "seconds"),
                                 ("SKIN_ROUTE_RETRY_DELAYS", "1,x", "comma-separated seconds")]:
        with pytest.raises(ValueError, match=f"{name}: .*{message}"):
            WorkerSettings.from_env({name: value})


def test_a_malformed_setting_is_one_line_before_anything_starts(tmp_path):
    proc = cli("pull", "--dicomweb", "http://127.0.0.1:9/dicom-web", "--out", str(tmp_path),
               env={"SKIN_ROUTE_RETRY_DELAYS": "2,five"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "SKIN_ROUTE_RETRY_DELAYS: expected comma-separated seconds between 0 and 3600 (e.g. 2,5,15,30), got '2,five'"]
