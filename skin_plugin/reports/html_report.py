"""``report.html``: one self-contained, offline page per batch for the reviewing dermatologist.

Header with the model and the "Not for clinical use" notice, batch statistics, the cases flagged for
review first (every malignant call among them; highest malignancy score first, each with its reasons),
then the other cases in input order, then the inputs that failed with their reasons, then where the SRs
were sent (per destination: sent, pending, dead-lettered; rewritten as that changes). Thumbnails are
embedded as JPEG data URIs; there are no scripts and no external resources (a Content-Security-Policy
forbids them). Every text is escaped. The page holds PHI for DICOM inputs (patient name, ID): a clinical
document, like the JSON reports.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from skin_plugin.constants import CLASS_CODES, LESION_CLASSES
from skin_plugin.dicom.reader import InputError, read_input
from skin_plugin.reports.delivery import delivery_html
from skin_plugin.reports.json_report import DISCLAIMER, write_text_atomic
from skin_plugin.reports.summary import BatchSummary
from skin_plugin.results import ScoreResult
from skin_plugin.review import MALIGNANT_CODES, ReviewThresholds, malignancy_score, review_reasons

REPORT_NAME = "report.html"
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""No scripts, no fetches: only inline styles and data-URI images."""
_CLASSES = {c.code: c for c in LESION_CLASSES}

_CSS = """
:root{--mel:#c62828;--bar:#5c7080;--flag:#e65100;--muted:#5f6b73;--line:#d9dee2}
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,"DejaVu Sans",Arial,sans-serif;color:#1c2730;margin:0;background:#f4f6f8}
header{background:#1f3a4d;color:#fff;padding:16px 24px}
header h1{margin:0 0 4px;font-size:22px}
header .model{font-size:13px;opacity:.9}
.notice{background:#b71c1c;color:#fff;font-weight:700;padding:8px 24px;letter-spacing:.02em}
main{padding:16px 24px;max-width:1200px}
h2{font-size:18px;margin:24px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}
.stats{display:flex;flex-wrap:wrap;gap:8px}
.stat{background:#fff;border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:110px}
.stat b{display:block;font-size:20px}
.stat span{color:var(--muted);font-size:12px}
.stat.warn b{color:var(--flag)}
table.counts{border-collapse:collapse;margin-top:8px;background:#fff}
table.counts td,table.counts th{border:1px solid var(--line);padding:3px 8px;text-align:center}
.case{display:grid;grid-template-columns:160px 1fr 360px;gap:14px;background:#fff;
 border:1px solid var(--line);border-left:6px solid var(--line);border-radius:6px;padding:10px;
 margin:8px 0;break-inside:avoid}
.case.review{border-left-color:var(--flag)}
.thumb{width:160px;height:120px;object-fit:cover;border-radius:4px;background:#ccd3d8;display:flex;
 align-items:center;justify-content:center;color:var(--muted);font-size:12px}
.case h3{margin:0 0 4px;font-size:16px}
.code{color:var(--muted);font-weight:400;font-size:13px}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;margin:0 4px 4px 0}
.badge.flag{background:#ffe0cc;color:#8a3000}
.badge.low{background:#fff3c4;color:#6b5200}
.badge.mal{background:#f3d6d6;color:#7f1d1d}
.badge.score{background:#f9d0d0;color:#7f1d1d;font-weight:700}
.src{color:var(--muted);font-size:12px;margin:2px 0;word-break:break-all}
.patient{font-size:13px;margin:4px 0 0}
table.probs{border-collapse:collapse;width:100%;font-size:12px}
table.probs th{text-align:left;font-weight:400;width:44px;padding:1px 4px}
table.probs td.pct{text-align:right;width:52px;padding:1px 4px;font-variant-numeric:tabular-nums}
.bar{background:#e8ecef;height:10px;border-radius:2px;overflow:hidden}
.bar span{display:block;height:100%;background:var(--bar)}
tr.pred th,tr.pred td.pct{font-weight:700}
tr.mel th,tr.mel td.pct{color:var(--mel);font-weight:700}
tr.mel .bar span{background:var(--mel)}
tr.mel .bar{outline:1px solid var(--mel)}
table.failed{border-collapse:collapse;background:#fff;width:100%}
table.failed td,table.failed th{border:1px solid var(--line);padding:4px 8px;text-align:left;
 vertical-align:top}
.empty{color:var(--muted)}
tr.dead td{color:var(--mel);font-weight:700}
footer{color:var(--muted);font-size:12px;padding:16px 24px}
@media print{body{background:#fff}.case{border-color:#999}}
"""


def thumbnail_jpeg(rgb: np.ndarray, quality: int = 80) -> bytes:
    """A uint8 (H, W, 3) RGB array as JPEG bytes."""
    buf = BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def jpeg_data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def thumbnail_data_uri(rgb: np.ndarray, quality: int = 80) -> str:
    """A uint8 (H, W, 3) RGB array as a ``data:image/jpeg;base64,...`` URI."""
    return jpeg_data_uri(thumbnail_jpeg(rgb, quality))


def _thumbnails(results: Sequence[ScoreResult], given: Mapping[int, np.ndarray | str] | None,
                thumbnails_from: str) -> dict[int, str]:
    """Data URI per scored result index: from ``given``, else (``"input"``) by re-reading the input."""
    uris: dict[int, str] = {}
    cached_path, frames = None, []  # results come in file order: one read per file
    for i, r in enumerate(results):
        if not r.ok:
            continue
        if given is not None and i in given:
            thumb = given[i]
            uris[i] = thumb if isinstance(thumb, str) else thumbnail_data_uri(thumb)
            continue
        if thumbnails_from != "input":
            continue
        if r.input != cached_path:
            cached_path = r.input
            try:
                frames = read_input(r.input)
            except InputError:
                frames = []
        if r.frame < len(frames):
            uris[i] = thumbnail_data_uri(frames[r.frame].array)
    return uris


def _pct(p: float) -> str:
    return f"{100 * p:.1f}%"


def _person_name(pn: str) -> str:
    """DICOM PN ``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX`` -> ``FAMILY, GIVEN MIDDLE ...``."""
    family, _, rest = pn.partition("^")
    rest = " ".join(part for part in rest.split("^") if part)
    return f"{family}, {rest}" if family and rest else family or rest


def _patient_html(r: ScoreResult) -> str:
    s = r.source
    if s is None:
        return ""
    parts = []
    if s.patient_name or s.patient_id:
        parts.append(f"<b>{escape(_person_name(s.patient_name))}</b>"
                     + (f" (ID {escape(s.patient_id)})" if s.patient_id else ""))
    if s.patient_sex or s.patient_age:
        parts.append(escape(" ".join(v for v in (s.patient_sex, s.patient_age) if v)))
    if s.anatomic_region:
        parts.append("Site: " + escape(s.anatomic_region.code_meaning))
    if s.study_date:
        parts.append("Study date " + escape(s.study_date))
    if s.accession_number:
        parts.append("Accession " + escape(s.accession_number))
    uid = f'<div class="src">SOP Instance UID {escape(s.sop_instance_uid)}</div>'
    return f'<div class="patient">{" · ".join(parts)}</div>{uid}'


def _probs_html(r: ScoreResult) -> str:
    rows = []
    for code in CLASS_CODES:
        p = float(r.probabilities[code])
        cls = " ".join(c for c in ("mel" if code == "mel" else "", "pred" if code == r.label else "") if c)
        rows.append(f'<tr class="{cls}" title="{escape(_CLASSES[code].name)}"><th>{code}</th>'
                    f'<td><div class="bar"><span style="width:{min(100.0, 100 * p):.1f}%"></span></div></td>'
                    f'<td class="pct">{_pct(p)}</td></tr>')
    return f'<table class="probs" aria-label="class probabilities">{"".join(rows)}</table>'


def _case_html(r: ScoreResult, reasons: list[str], summary: BatchSummary, thumb: str | None) -> str:
    cls = _CLASSES[r.label]
    name = Path(r.input).name or r.input
    img = (f'<img class="thumb" src="{thumb}" alt="{escape(name)}" width="160" height="120">' if thumb
           else '<div class="thumb">no preview</div>')
    t = summary.thresholds
    badges = []
    if "malignancy_score" in reasons:
        badges.append(f'<span class="badge score">Malignancy score {_pct(malignancy_score(r.probabilities))} '
                      f'&ge; {_pct(t.malignancy or 0.0)}</span>')
    if "malignant_class" in reasons:
        badges.append('<span class="badge mal">Malignant class predicted</span>')
    if "melanoma_probability" in reasons:
        badges.append(f'<span class="badge flag">Melanoma probability {_pct(r.probabilities["mel"])} '
                      f'&gt; {_pct(t.melanoma)}</span>')
    if "low_confidence" in reasons:
        badges.append(f'<span class="badge low">Low confidence: top {_pct(max(r.probabilities.values()))} '
                      f'&lt; {_pct(t.low_confidence)}</span>')
    frame = f" · frame {r.frame}" if r.source is not None and r.source.number_of_frames > 1 else ""
    return (f'<article class="case{" review" if reasons else ""}">{img}<div>'
            f'<h3>{escape(cls.name)} <span class="code">({escape(cls.code)}, '
            f'{_pct(r.probabilities[cls.code])})</span></h3>'
            f'<div>{"".join(badges)}</div>'
            f'<div class="src" title="{escape(r.input)}">{escape(name)}{frame}</div>'
            f'{_patient_html(r)}</div>{_probs_html(r)}</article>')


def _review_rule(t: ReviewThresholds) -> str:
    """One sentence saying when a case is flagged for review, with this model's thresholds."""
    score = f"malignancy score (P({') + P('.join(MALIGNANT_CODES)})) "
    if t.malignancy is None:
        first = (f"This model records no operating point for the {score}: flagged are every predicted "
                 "malignant class, ")
    else:
        target = ("" if t.target_sensitivity is None else
                  f", the model's operating point: it flagged {_pct(t.target_sensitivity)} of the malignant "
                  "validation images")
        first = f"Flagged: {score}at or above {_pct(t.malignancy)}{target}; every predicted malignant class; "
    return (f"{first}melanoma probability above {_pct(t.melanoma)}; top class probability below "
            f"{_pct(t.low_confidence)}. Highest malignancy score first.")


def _stats_html(s: BatchSummary) -> str:
    def stat(value: str, label: str, warn: bool = False) -> str:
        return (f'<div class="stat{" warn" if warn else ""}"><b>{escape(value)}</b>'
                f"<span>{escape(label)}</span></div>")

    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f} ms"

    boxes = [stat(str(s.images), "images"), stat(str(s.scored), "scored"),
             stat(str(len(s.failed)), "failed", bool(s.failed)),
             stat(str(s.flagged), "flagged for review", bool(s.flagged)),
             stat(f"{s.wall_s:.2f} s", "wall time"),
             stat("–" if s.images_per_s is None else f"{s.images_per_s:.1f}", "images / s"),
             stat(ms(s.latency_p50_ms), "latency p50"), stat(ms(s.latency_p95_ms), "latency p95")]
    head = "".join(f'<th title="{escape(_CLASSES[c].name)}">{c}</th>' for c in CLASS_CODES)
    counts = "".join(f"<td>{s.counts[c]}</td>" for c in CLASS_CODES)
    return (f'<div class="stats">{"".join(boxes)}</div><table class="counts">'
            f"<tr><th>predicted</th>{head}</tr><tr><td>count</td>{counts}</tr></table>")


def _failed_html(s: BatchSummary) -> str:
    if not s.failed:
        return '<p class="empty">None.</p>'
    rows = "".join(f"<tr><td>{escape(f.input)}</td><td>{escape(f.reason)}</td></tr>" for f in s.failed)
    return f'<table class="failed"><tr><th>input</th><th>reason</th></tr>{rows}</table>'


def render_html(results: Sequence[ScoreResult], summary: BatchSummary, *,
                thumbnails: Mapping[int, np.ndarray | str] | None = None,
                thumbnails_from: Literal["input", "none"] = "input",
                title: str = "Skin-lesion scoring report") -> str:
    """The report page as a string (see :func:`write_html_report`)."""
    thumbs = _thumbnails(results, thumbnails, thumbnails_from)
    flagged, others = [], []
    for i, r in enumerate(results):
        if r.ok and r.probabilities is not None:
            reasons = review_reasons(r.probabilities, r.label, summary.thresholds)
            (flagged if reasons else others).append((i, r, reasons))
    flagged.sort(key=lambda t: (-malignancy_score(t[1].probabilities), max(t[1].probabilities.values())))

    def cases(items: list) -> str:
        return "".join(_case_html(r, reasons, summary, thumbs.get(i)) for i, r, reasons in items) \
            or '<p class="empty">None.</p>'

    m, t = summary.model, summary.thresholds
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="robots" content="noindex"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_CSS}</style></head>
<body><header><h1>{escape(title)}</h1>
<div class="model">Model {escape(m.name)} {escape(m.version)} · {escape(m.backend)} {escape(m.precision)}
 · sha256 {escape(m.sha256[:12])}… · created {escape(summary.created)}</div></header>
<div class="notice">{escape(DISCLAIMER)}</div>
<main><h2>Batch</h2>{_stats_html(summary)}
<h2>Flagged for review ({len(flagged)})</h2>
<p class="src">{escape(_review_rule(t))}</p>{cases(flagged)}
<h2>Other cases ({len(others)})</h2>{cases(others)}
<h2>Failed inputs ({len(summary.failed)})</h2>{_failed_html(summary)}
{delivery_html(summary.delivery)}</main>
<footer>{escape(DISCLAIMER)} Classes: {escape("; ".join(f"{c.code} = {c.name}" for c in LESION_CLASSES))}.
</footer></body></html>
"""


def write_html_report(results: Sequence[ScoreResult], summary: BatchSummary, out_dir: str | Path, *,
                      thumbnails: Mapping[int, np.ndarray | str] | None = None,
                      thumbnails_from: Literal["input", "none"] = "input",
                      title: str = "Skin-lesion scoring report") -> Path:
    """Write ``report.html`` into ``out_dir`` and return its path.

    ``thumbnails`` maps an index into ``results`` to its model-size uint8 RGB array (or a ready
    ``data:`` URI); results without
    one get their input re-read (``thumbnails_from="input"``) or a "no preview" box (``"none"``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html = render_html(results, summary, thumbnails=thumbnails, thumbnails_from=thumbnails_from, title=title)
    return write_text_atomic(html, out / REPORT_NAME)
