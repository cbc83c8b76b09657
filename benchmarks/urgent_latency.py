"""The urgent path's latency, last C-STORE of a study to its SRs stored back in a real Orthanc; prints JSON.

Debian's Orthanc (the PACS), the listener (:class:`~skin_plugin.net.listener.StoreListener`, as
``skin-plugin listen`` runs it) with ``--stable-seconds``, an embedded Redis and one worker process, queue
``urgent``, route ``dicom://ORTHANC@...``. ``studies`` single-image studies (HAM10000 600x450 JPEG-in-DICOM)
are sent one after another by C-STORE, each once the previous one's SRs are back; one more first, untimed,
warms the worker up (model compiled in its child). Per study, from the Redis batch record:

- ``stable_wait``: last C-STORE response -> batch submitted (the listener waits for the study to be quiet);
- ``queue_wait``: submitted -> a worker started it;
- ``scoring``: started -> reports written (decode, model, SR + JSON, summary, report.html);
- ``send``: reports written -> every SR stored in Orthanc by C-STORE (the route task's end);
- ``total``: last C-STORE response -> SRs stored.

    python -m benchmarks.urgent_latency [--studies 20] [--stable-seconds 5] [--json OUT]   (make bench-urgent)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
from pynetdicom import AE

from skin_plugin.dicom.convert import convert_files
from skin_plugin.net.listener import StoreListener
from skin_plugin.net.spool import Spool
from workers.config import WorkerSettings
from workers.embedded import embedded_cluster
from workers.spool_queue import SpoolQueue
from workers.store import BatchStatus, BatchStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from orthanc_support import OrthancServer  # noqa: E402  (the tests' real-Orthanc harness)
from queue_support import free_port  # noqa: E402

FULLRES = ROOT.parent / "shared" / "data" / "ham10000_fullres" / "images"
BUDGET_S = 3.0
"""Target: p95 of ``total`` under this plus the configured stable wait (issue 17 item 9)."""
PARTS = ("stable_wait", "queue_wait", "scoring", "send", "total")


def studies(tmp: Path, n: int) -> list[Path]:
    """``n`` single-image studies with UIDs of this run (never skipped as already scored)."""
    photos = tmp / "photos"
    photos.mkdir()
    for jpeg in sorted(FULLRES.glob("*.jpg"))[:n]:
        (photos / jpeg.name).symlink_to(jpeg)
    files = [c.path for c in convert_files([photos], tmp / "dicom", uid_namespace=f"bench-urgent-{time.time()}")]
    assert len({pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files}) == n
    return files


def c_store(path: Path, port: int) -> float:
    """Send one file to the listener; the time its C-STORE response arrived."""
    ds = pydicom.dcmread(path)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="SKINAI")
    assert assoc.is_established, "association refused"
    status = assoc.send_c_store(ds)
    done = time.time()
    assoc.release()
    assert status and status.Status == 0, status
    return done


def wait_settled(store: BatchStore, sent: float, timeout_s: float = 120.0) -> BatchStatus:
    """The first batch submitted after ``sent``, once it is reported and routed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batches = [b for b in store.recent_batches(5) if b.submitted and b.submitted >= sent]
        if batches and batches[0].settled:
            return batches[0]
        time.sleep(0.02)
    raise TimeoutError("the study was not scored and routed in time")


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": round(float(np.percentile(values, 50)), 3), "p95": round(float(np.percentile(values, 95)), 3),
            "max": round(max(values), 3)}


def run(n: int, stable_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = studies(tmp, n + 1)
        settings = replace(WorkerSettings.from_env(), output_dir=tmp / "reports")
        with OrthancServer(tmp / "orthanc") as orthanc, embedded_cluster(settings, 1) as local:
            store = BatchStore.from_settings(local)
            route = f"dicom://{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
            queue = SpoolQueue(store, tmp / "reports", "urgent", route)
            listener = StoreListener(Spool(tmp / "spool", queue, stable_s), port=free_port()).start()
            rows = []
            try:
                for i, path in enumerate(files):
                    sent = c_store(path, listener.bound_port)
                    status = wait_settled(store, sent)
                    assert status.done == 1 and status.routed == 1, status
                    if i == 0:
                        continue  # warm-up
                    s = status
                    rows.append({"stable_wait": s.submitted - sent, "queue_wait": s.started - s.submitted,
                                 "scoring": s.reported - s.started, "send": s.route_done - s.reported,
                                 "total": s.route_done - sent})
            finally:
                listener.stop()
            srs = [i for i in orthanc.get("/instances?expand") if i["MainDicomTags"].get("SOPInstanceUID")
                   and orthanc.instance_tags(i["ID"]).get("Modality") == "SR"]
            assert len(srs) == n + 1, f"{len(srs)} SRs in Orthanc"
    parts = {name: percentiles([r[name] for r in rows]) for name in PARTS}
    return {
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "inputs": f"{n} single-image studies, HAM10000 600x450 JPEG-in-DICOM (Dermoscopic Photography)",
        "setup": {"orthanc": "Debian Orthanc 1.10, C-STORE route back", "queue": "urgent", "workers": 1,
                  "precision": settings.precision, "stable_seconds": stable_s},
        "seconds": parts,
        "target": {"total_p95_below_s": round(stable_s + BUDGET_S, 3),
                   "met": parts["total"]["p95"] < stable_s + BUDGET_S},
        "per_study_s": [{k: round(v, 3) for k, v in r.items()} for r in rows],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--stable-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    text = json.dumps(run(args.studies, args.stable_seconds), indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
