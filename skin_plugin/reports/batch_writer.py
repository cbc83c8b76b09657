"""Write a batch's outputs: ``sr/*.dcm``, ``json/*.json``, ``summary.json`` and ``report.html``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom.uid import generate_uid

from skin_plugin.dicom.records import validated_uid
from skin_plugin.reports.html_report import write_html_report
from skin_plugin.reports.json_report import ReviewThresholds, write_image_report
from skin_plugin.reports.summary import BatchSummary
from skin_plugin.results import ModelIdentity, ScoreResult
from skin_plugin.sr.template import SRTemplate


def sr_uids(result: ScoreResult, model: ModelIdentity) -> tuple[str, str]:
    """(series, instance) UIDs of the SR of ``result``: deterministic, so a re-run rewrites, not adds.

    One SR series per source study and model version; one SR per source frame and model file.
    """
    src = result.source
    assert src is not None
    series = generate_uid(entropy_srcs=[src.study_instance_uid, model.name, model.version, "sr-series"])
    instance = generate_uid(entropy_srcs=[src.sop_instance_uid, str(result.frame), model.sha256, "sr"])
    return series, instance


def remove_files(paths: list[Path] | list[str]) -> None:
    """Delete report files (of an input that failed after some of them were written)."""
    for p in paths:
        Path(p).unlink(missing_ok=True)


@dataclass
class BatchWriter:
    """Writes the reports of scored results into one output folder (template built once)."""

    out_dir: Path
    model: ModelIdentity
    thresholds: ReviewThresholds | None = None
    """None: the model's (``ModelIdentity.review``)."""
    sr_template: SRTemplate | None = None
    """Share one template between writers of the same model (building a variant costs ~0.4 s)."""

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.sr_template is None:
            self.sr_template = SRTemplate(self.model)
        for sub in ("sr", "json"):
            (self.out_dir / sub).mkdir(parents=True, exist_ok=True)

    def write_result(self, result: ScoreResult, when: datetime | None = None) -> list[Path]:
        """JSON for every scored frame, plus an SR when the source is DICOM; nothing for failures.

        All or nothing: if a report cannot be written, the files this call wrote are removed.
        """
        if not result.ok:
            return []
        paths: list[Path] = []  # written so far (and the SR's temporary file)
        try:
            paths.append(write_image_report(result, self.model, self.out_dir / "json",
                                            thresholds=self.thresholds))
            if result.source is not None:
                series, instance = sr_uids(result, self.model)
                data = self.sr_template.render(result, series_instance_uid=series, sop_instance_uid=instance,
                                               content_datetime=when)
                path = self.out_dir / "sr" / f"{validated_uid(instance)}.dcm"
                tmp = path.with_suffix(".tmp")
                paths.append(tmp)
                tmp.write_bytes(data)
                tmp.replace(path)
                paths[-1] = path
        except BaseException:
            remove_files(paths)
            raise
        return paths

    def write_batch(self, results: list[ScoreResult], wall_s: float) -> BatchSummary:
        """Per-result reports, then ``summary.json`` and ``report.html``."""
        when = datetime.now()
        for r in results:
            self.write_result(r, when)
        return self.write_summary(results, wall_s)

    def write_summary(self, results: list[ScoreResult], wall_s: float) -> BatchSummary:
        """``summary.json`` and ``report.html`` of results whose reports are written."""
        summary = BatchSummary.from_results(results, wall_s, self.model, thresholds=self.thresholds)
        summary.write(self.out_dir)
        write_html_report(results, summary, self.out_dir)
        return summary
