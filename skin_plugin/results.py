"""Domain objects of a scoring run, shared by the pipeline, the workers and the report writers."""

from __future__ import annotations

from dataclasses import dataclass, field

from skin_plugin.dicom.records import DicomSourceInfo
from skin_plugin.review import ReviewThresholds


@dataclass(frozen=True)
class ModelIdentity:
    """Which model produced a result (written into every report)."""

    name: str
    version: str
    backend: str
    precision: str
    sha256: str
    """sha256 of the weights/IR file that ran (for IR: the .bin of that precision)."""
    review: ReviewThresholds = field(default_factory=ReviewThresholds)
    """When its results are flagged for review: the release's operating point and the product's extra
    thresholds (every report writer reads them from here)."""

    def to_dict(self) -> dict[str, str]:
        """The identity written into reports (the review thresholds are reported with the flags)."""
        return {"name": self.name, "version": self.version, "backend": self.backend,
                "precision": self.precision, "sha256": self.sha256}


@dataclass(frozen=True)
class ScoreResult:
    """The outcome for one image frame: a prediction or a reason it could not be scored."""

    input: str
    frame: int = 0
    source: DicomSourceInfo | None = field(default=None, repr=False)
    """The DICOM source (None for plain photos); holds PHI, so it is kept out of repr()."""
    label: str | None = None
    probabilities: dict[str, float] | None = None
    error: str | None = None
    latency_ms: float | None = None
    """Per-image decode time plus its share of the inference call (and report writing, when queued)."""
    queue_wait_ms: float | None = None
    """Time from submission to the start of the task that scored it (queued runs only)."""
    worker: str | None = None
    """The worker process that scored it (queued runs only)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        """JSON-ready, without PHI (the source is reduced to its UIDs)."""
        return {
            "input": self.input, "frame": self.frame,
            "sop_instance_uid": self.source.sop_instance_uid if self.source else None,
            "label": self.label, "probabilities": self.probabilities, "error": self.error,
            "latency_ms": self.latency_ms, "queue_wait_ms": self.queue_wait_ms, "worker": self.worker,
        }
