"""The work of one task: read a chunk of jobs, one inference call, reports, records — no Celery here."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from skin_plugin.classifier import Classifier, make_classifier, model_identity
from skin_plugin.dicom.reader import InputError, InputImage, read_file_bytes, read_input
from skin_plugin.dicom.records import DicomSourceInfo
from skin_plugin.pipeline import internal_error, report_owner, score_frames
from skin_plugin.reports.batch_writer import BatchWriter, remove_files
from skin_plugin.reports.html_report import thumbnail_jpeg
from skin_plugin.reports.json_report import report_file_name, write_json
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.sr.template import SRTemplate
from workers import metrics
from workers.config import WorkerSettings
from workers.report_owners import claim_report_owners
from workers.store import BatchStore

log = logging.getLogger(__name__)


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

    def score(self, batch_id: str, out_dir: str, jobs: list[Job]) -> ChunkOutcome:
        """Records for the jobs not yet recorded in the batch, and the jobs to retry (their reports
        could not be written: I/O trouble). Raises TransientError when the broker fails.

        Each input is read once: its sha256 is the idempotency key (an input this model already
        scored gets its earlier reports copied under its own name, not a second scoring). Each input
        fails alone; if this call fails as a whole, every report file it wrote is removed.
        """
        written: list[str] = []
        try:
            return self._score(batch_id, out_dir, jobs, written)
        except BaseException:
            remove_files(written)
            raise

    def _score(self, batch_id: str, out_dir: str, jobs: list[Job], written: list[str]) -> ChunkOutcome:
        started = time.time()
        seen = self.store.recorded_among(batch_id, [j.job_id for j in jobs])
        jobs = [j for j in jobs if j.job_id not in seen]
        model = self.model
        outcome = ChunkOutcome()
        contents: list[bytes | InputError] = []
        for job in jobs:
            try:
                contents.append(read_file_bytes(job.path))
            except InputError as exc:
                contents.append(exc)
        keys = [hashlib.sha256(c).hexdigest() if isinstance(c, bytes) else None for c in contents]
        failures: dict[str, ScoreResult] = {}  # job id -> why it failed

        def fail(job: Job, reason: str, code: str) -> None:
            metrics.IMAGES_FAILED.labels(code).inc()
            failures[job.job_id] = ScoreResult(job.path, error=reason, worker=self.worker)

        reused: list[tuple[Job, dict[str, Any]]] = []
        decoded: list[tuple[Job, list[InputImage], float]] = []
        claims: list[tuple[str, str, str | None]] = []
        for job, key, content, previous in zip(jobs, keys, contents,
                                               self.store.previous_results(model.sha256, keys)):
            if previous is not None and _reports_exist(previous):
                reused.append((job, previous))
                source = previous["frames"][0].get("sop_instance_uid")
                claims.append((f"sop:{source}" if source else report_owner(job.path, None), job.job_id, key))
                continue
            t0 = time.perf_counter()
            try:
                if isinstance(content, InputError):
                    raise content
                images = read_input(job.path, content)
            except InputError as exc:
                fail(job, str(exc), metrics.reason_code(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a reader bug fails this input alone
                log.exception("unexpected error while reading an input")
                fail(job, internal_error("read it", exc), "internal")
                continue
            decoded.append((job, images, 1000 * (time.perf_counter() - t0) / max(1, len(images))))
            claims.append((report_owner(job.path, images[0].source if images else None), job.job_id, key))
        for job_id, reason in claim_report_owners(self.store, batch_id, claims).items():
            job = next(j for j in jobs if j.job_id == job_id)
            fail(job, reason, "duplicate_input")
        records: dict[str, dict[str, Any]] = {}
        for job, previous in reused:
            if job.job_id in failures:
                continue
            try:
                records[job.job_id] = self._reuse(previous, out_dir, job, written)
            except OSError as exc:
                outcome.retry.append((job, internal_error("copy its earlier reports", exc)))
            except Exception as exc:  # noqa: BLE001 - this input fails alone
                log.exception("unexpected error while copying earlier reports")
                fail(job, internal_error("copy its earlier reports", exc), "internal")
        decoded = [d for d in decoded if d[0].job_id not in failures]
        results: list[ScoreResult | None] = []
        pending = []
        owners: list[tuple[Job, list[int]]] = []
        for job, images, decode_ms in decoded:
            owners.append((job, list(range(len(results), len(results) + len(images)))))
            for image in images:
                pending.append((len(results), image, decode_ms))
                results.append(None)
        score_frames(pending, self.classifier, results, worker=self.worker)
        status = self.store.status(batch_id)
        with_thumbnails = status is not None and status.total <= MAX_THUMBNAILS
        arrays = {slot: image.array for slot, image, _ in pending}
        writer = self.writer(out_dir)

        def write(slot: int) -> tuple[list[str], float, str | None] | BaseException:
            """Reports of one frame, or what prevented them (threads: file I/O and JPEG encoding
            release the GIL). A frame whose reports fail leaves no file behind (``write_result``)."""
            r = results[slot]
            assert r is not None
            t0 = time.perf_counter()
            try:
                paths = [str(p) for p in writer.write_result(r)]
            except Exception as exc:  # noqa: BLE001 - the job of this frame fails alone
                return exc
            written.extend(paths)
            try:
                thumb = (base64.b64encode(thumbnail_jpeg(arrays[slot])).decode("ascii")
                         if r.ok and with_thumbnails else None)
            except Exception:  # noqa: BLE001 - a preview is optional
                log.exception("cannot make a preview")
                thumb = None
            return paths, 1000 * (time.perf_counter() - t0), thumb

        frame_reports = list(self._io.map(write, range(len(results))))
        remember = []
        for job, slots in owners:
            errors = [e for e in (frame_reports[s] for s in slots) if isinstance(e, BaseException)]
            if errors:
                remove_files([p for s in slots if not isinstance(frame_reports[s], BaseException)
                              for p in frame_reports[s][0]])  # type: ignore[index]
                if isinstance(errors[0], OSError):
                    outcome.retry.append((job, internal_error("write its reports", errors[0])))
                else:
                    log.error("unexpected error while writing reports: %s", type(errors[0]).__name__)
                    fail(job, internal_error("write its reports", errors[0]), "internal")
                continue
            frames, reports = [], []
            for slot in slots:
                r = results[slot]
                assert r is not None
                paths, write_ms, thumb = frame_reports[slot]  # type: ignore[misc]
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
            records[job.job_id] = {"job_id": job.job_id, "input": job.path, "frames": frames,
                                   "reports": reports, "error": None, "reused": False}
            key = keys[jobs.index(job)]
            if key:
                remember.append((key, {"frames": [{k: v for k, v in f.items() if k != "thumbnail"}
                                                  for f in frames], "reports": reports}))
        for job_id, failure in failures.items():
            job = next(j for j in jobs if j.job_id == job_id)
            r = replace(failure, queue_wait_ms=round(1000 * max(0.0, started - job.enqueued_at), 3))
            metrics.count_scored(r, model, self.worker)
            records[job_id] = {"job_id": job_id, "input": job.path, "frames": [result_record(r)],
                               "reports": [], "error": r.error, "reused": False}
        if remember:
            self.store.remember_results(model.sha256, remember)
            self.store.remember_sops(model.sha256, [f["sop_instance_uid"] for _, rec in remember
                                                    for f in rec["frames"] if f.get("sop_instance_uid")])
        outcome.records = [(job, records[job.job_id]) for job in jobs if job.job_id in records]
        return outcome

    def _reuse(self, previous: dict[str, Any], out_dir: str, job: Job, written: list[str]) -> dict[str, Any]:
        """An input this model already scored: its earlier reports, copied here under this input's name.

        A DICOM instance's reports keep their names (SOP Instance UID); a photo's JSON report is named
        after this input's path. Each JSON report names this input (``input.path``).
        """
        reports = []
        photo = not previous["frames"][0].get("sop_instance_uid")
        for src in previous.get("reports", []):
            kind = Path(src).parent.name  # "sr" or "json"
            name = Path(src).name
            if kind == "json" and photo:
                name = report_file_name(ScoreResult(job.path, int(previous["frames"][0].get("frame", 0))))
            dst = Path(out_dir) / kind / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if kind == "json":
                report = json.loads(Path(src).read_text(encoding="utf-8"))
                report["input"]["path"] = job.path
                write_json(report, dst)
            elif Path(src).resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            written.append(str(dst))
            reports.append(str(dst))
        frames = [dict(f, input=job.path, worker=self.worker) for f in previous["frames"]]
        return {"job_id": job.job_id, "input": job.path, "frames": frames, "reports": reports,
                "error": None, "reused": True}


@dataclass
class ChunkOutcome:
    """What :meth:`ChunkScorer.score` did with a chunk."""

    records: list[tuple[Job, dict[str, Any]]] = field(default_factory=list)
    """A record for each job scored, reused or failed."""
    retry: list[tuple[Job, str]] = field(default_factory=list)
    """Jobs whose reports could not be written or copied (I/O trouble) and the reason: worth a retry."""


def _reports_exist(previous: dict[str, Any]) -> bool:
    """The earlier reports of an input are still there to copy (else it is scored again)."""
    return bool(previous.get("frames")) and all(Path(p).is_file() for p in previous.get("reports", []))
