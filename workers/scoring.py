"""The work of one task: read a chunk of jobs, one inference call, reports, records — no Celery here."""

from __future__ import annotations

import base64
import hashlib
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from skin_plugin.classifier import Classifier, make_classifier, model_identity
from skin_plugin.dicom.reader import InputError, read_file_bytes, read_input
from skin_plugin.dicom.records import DicomSourceInfo
from skin_plugin.pipeline import score_frames
from skin_plugin.reports.batch_writer import BatchWriter
from skin_plugin.reports.html_report import thumbnail_jpeg
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.sr.template import SRTemplate
from workers import metrics
from workers.config import WorkerSettings
from workers.store import BatchStore


class TransientError(RuntimeError):
    """Worth retrying: the disk or the broker failed, not the input."""


@dataclass(frozen=True)
class Job:
    """One input file of a batch (a multi-frame DICOM yields several results)."""

    job_id: str
    path: str
    enqueued_at: float

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        return cls(str(d["job_id"]), str(d["path"]), float(d["enqueued_at"]))

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "path": self.path, "enqueued_at": self.enqueued_at}


REPORT_THREADS = 2
"""Threads writing a chunk's reports: they overlap file system waits (the slow part here) with each other."""
MAX_THUMBNAILS = 2000
"""Batches up to this many inputs keep a small JPEG preview per image in their records (for report.html)."""


def result_record(result: ScoreResult) -> dict[str, Any]:
    """A frame result as stored in Redis (the source, PHI included, feeds the batch's HTML report)."""
    d = result.to_dict()
    d["source"] = result.source.to_dict() if result.source else None
    return d


def result_from_record(d: dict[str, Any]) -> ScoreResult:
    source = DicomSourceInfo.from_dict(d["source"]) if d.get("source") else None
    return ScoreResult(d["input"], d.get("frame", 0), source, d.get("label"), d.get("probabilities"),
                       d.get("error"), d.get("latency_ms"), d.get("queue_wait_ms"), d.get("worker"))


class ChunkScorer:
    """Scores chunks of jobs in one worker process: model and report templates are built once."""

    def __init__(self, settings: WorkerSettings, store: BatchStore, worker: str,
                 classifier: Classifier | None = None) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self._classifier = classifier
        self._writers: dict[str, BatchWriter] = {}
        self._sr_template: SRTemplate | None = None
        self._io = ThreadPoolExecutor(max_workers=REPORT_THREADS, thread_name_prefix="reports")

    @property
    def classifier(self) -> Classifier:
        if self._classifier is None:
            self._classifier = make_classifier("openvino", self.settings.precision, self.settings.device,
                                               threads=self.settings.inference_threads)
        return self._classifier

    @property
    def model(self) -> ModelIdentity:
        return model_identity(self.classifier)

    @property
    def sr_template(self) -> SRTemplate:
        """One SR template per process and model, shared by the writers of every batch."""
        if self._sr_template is None:
            self._sr_template = SRTemplate(self.model)
        return self._sr_template

    def writer(self, out_dir: str) -> BatchWriter:
        if out_dir not in self._writers:
            if len(self._writers) > 64:  # one per batch folder: keep the cache small in long-lived workers
                self._writers.clear()
            self._writers[out_dir] = BatchWriter(Path(out_dir), self.model, sr_template=self.sr_template)
        return self._writers[out_dir]

    def warm_up(self) -> None:
        """Compile the model and build the usual SR template now, not in the first task."""
        import numpy as np

        from skin_plugin.constants import INPUT_CHANNELS, INPUT_HEIGHT, INPUT_WIDTH
        from skin_plugin.dicom.sop_classes import DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE

        self.classifier.predict(np.zeros((1, INPUT_HEIGHT, INPUT_WIDTH, INPUT_CHANNELS), np.uint8))
        for with_site in (True, False):
            self.sr_template.prebuild(DERMOSCOPIC_PHOTOGRAPHY_IMAGE_STORAGE, with_site)

    def score(self, batch_id: str, out_dir: str, jobs: list[Job]) -> list[tuple[Job, dict[str, Any]]]:
        """Records for the jobs not yet recorded in the batch. Raises TransientError on I/O trouble.

        Each input is read once: its sha256 is the idempotency key (an input this model already
        scored gets its earlier reports copied, not a second scoring).
        """
        started = time.time()
        seen = self.store.recorded_among(batch_id, [j.job_id for j in jobs])
        jobs = [j for j in jobs if j.job_id not in seen]
        model = self.model
        contents: list[bytes | InputError] = []
        for job in jobs:
            try:
                contents.append(read_file_bytes(job.path))
            except InputError as exc:
                contents.append(exc)
        keys = [hashlib.sha256(c).hexdigest() if isinstance(c, bytes) else None for c in contents]
        out: list[tuple[Job, dict[str, Any]]] = []
        to_score: list[tuple[Job, str | None, bytes | InputError]] = []
        for job, key, content, previous in zip(jobs, keys, contents,
                                               self.store.previous_results(model.sha256, keys)):
            if previous is not None:
                out.append((job, self._reuse(previous, out_dir, job)))
            else:
                to_score.append((job, key, content))
        results: list[ScoreResult | None] = []
        pending = []
        owners: list[tuple[Job, str | None, list[int]]] = []
        for job, key, content in to_score:
            t0 = time.perf_counter()
            try:
                if isinstance(content, InputError):
                    raise content
                images = read_input(job.path, content)
            except InputError as exc:
                metrics.IMAGES_FAILED.labels(metrics.reason_code(exc)).inc()
                owners.append((job, key, [len(results)]))
                results.append(ScoreResult(job.path, error=str(exc), worker=self.worker))
                continue
            decode_ms = 1000 * (time.perf_counter() - t0) / max(1, len(images))
            slots = []
            for image in images:
                slots.append(len(results))
                pending.append((len(results), image, decode_ms))
                results.append(None)
            owners.append((job, key, slots))
        score_frames(pending, self.classifier, results, worker=self.worker)
        status = self.store.status(batch_id)
        with_thumbnails = status is not None and status.total <= MAX_THUMBNAILS
        arrays = {slot: image.array for slot, image, _ in pending}
        writer = self.writer(out_dir)
        remember = []

        def write(slot: int) -> tuple[list[str], float, str | None]:
            """Reports of one frame (threads: file I/O and JPEG encoding release the GIL)."""
            r = results[slot]
            assert r is not None
            t0 = time.perf_counter()
            try:
                paths = [str(p) for p in writer.write_result(r)]
            except OSError as exc:
                raise TransientError(f"cannot write reports: {exc.strerror or exc}") from exc
            thumb = (base64.b64encode(thumbnail_jpeg(arrays[slot])).decode("ascii")
                     if r.ok and with_thumbnails else None)
            return paths, 1000 * (time.perf_counter() - t0), thumb

        written = list(self._io.map(write, range(len(results))))
        for job, key, slots in owners:
            frames, reports = [], []
            for slot in slots:
                r = results[slot]
                assert r is not None
                paths, write_ms, thumb = written[slot]
                reports += paths
                r = replace(r, queue_wait_ms=round(1000 * max(0.0, started - job.enqueued_at), 3),
                            latency_ms=None if r.latency_ms is None else round(r.latency_ms + write_ms, 3))
                frame = result_record(r)
                if thumb:
                    frame["thumbnail"] = thumb
                frames.append(frame)
                metrics.count_scored(r, model, self.worker)
                if r.ok:
                    metrics.IMAGE_LATENCY.observe((r.latency_ms or 0.0) / 1000)
            record = {"job_id": job.job_id, "input": job.path, "frames": frames, "reports": reports,
                      "error": frames[0]["error"] if len(frames) == 1 and frames[0]["error"] else None,
                      "reused": False}
            if key and not record["error"]:
                remember.append((key, {"frames": [{k: v for k, v in f.items() if k != "thumbnail"} for f in frames],
                                       "reports": reports}))
            out.append((job, record))
        if remember:
            self.store.remember_results(model.sha256, remember)
            self.store.remember_sops(model.sha256, [f["sop_instance_uid"] for _, rec in remember
                                                    for f in rec["frames"] if f.get("sop_instance_uid")])
        return out

    def _reuse(self, previous: dict[str, Any], out_dir: str, job: Job) -> dict[str, Any]:
        """An input this model already scored: copy its reports here instead of scoring it again."""
        reports = []
        for src in previous.get("reports", []):
            kind = Path(src).parent.name  # "sr" or "json"
            dst = Path(out_dir) / kind / Path(src).name
            if Path(src).exists() and Path(src).resolve() != dst.resolve():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            reports.append(str(dst))
        frames = [dict(f, input=job.path, worker=self.worker) for f in previous["frames"]]
        return {"job_id": job.job_id, "input": job.path, "frames": frames, "reports": reports,
                "error": None, "reused": True}
