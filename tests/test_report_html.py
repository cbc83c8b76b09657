"""``report.html``: order of the cases, escaping, no external resources, and a headless Chromium render."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from browser_support import chromium_screenshot
from PIL import Image
from test_reports import STUB_MODEL, stub_batch  # tests/ is on sys.path (pytest rootdir-relative import)

from skin_plugin.reports import BatchSummary, write_html_report
from skin_plugin.results import ScoreResult


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> tuple[list[ScoreResult], BatchSummary]:
    results = stub_batch(tmp_path_factory.mktemp("inputs"))
    return results, BatchSummary.from_results(results, 2.0, STUB_MODEL, created="2025-01-02T03:04:05Z")


@pytest.fixture(scope="module")
def report(batch, tmp_path_factory) -> Path:
    results, summary = batch
    return write_html_report(results, summary, tmp_path_factory.mktemp("report"))


def _cases(html: str) -> list[str]:
    return re.findall(r'<article class="case( review)?">', html)


def test_flagged_cases_come_first_then_others_then_failures(report):
    html = report.read_text("utf-8")
    assert report.name == "report.html"
    assert _cases(html) == [" review"] * 6 + [""] * 2
    flagged = html[html.index("Flagged for review (6)"):html.index("Other cases (2)")]
    # highest malignancy score first: mel 77%, akiec 69%, bcc 65%, nv 45%, nv 35% (the DICOM), df 23%
    assert re.findall(r"Malignancy score ([\d.]+)% &ge; 20.0%", flagged) == [
        "77.0", "69.0", "65.0", "45.0", "35.0", "23.0"]
    assert re.findall(r"<h3>([^<]+) <span", flagged) == [
        "Melanoma", "Actinic keratoses and intraepithelial carcinoma (Bowen&#x27;s disease)",
        "Basal cell carcinoma", "Melanocytic nevi", "Melanocytic nevi", "Dermatofibroma"]
    assert flagged.count("Malignant class predicted") == 3  # every malignant call is in this section
    assert re.findall(r"Melanoma probability ([\d.]+)%", flagged) == ["72.0", "40.0", "31.0"]
    assert "at or above 20.0%" in flagged and "it flagged 95.0% of the malignant validation images" in flagged
    others = html[html.index("Other cases (2)"):html.index("Failed inputs (2)")]
    assert "Malignant class" not in others and "badge" not in others
    failed = html[html.index("Failed inputs (2)"):]
    assert "corrupt.jpg" in failed and "notes.txt" in failed and "neither a DICOM file nor" in failed
    assert html.index("Other cases (2)") < html.index("Failed inputs (2)")


def test_a_release_without_an_operating_point_says_so(batch):
    from dataclasses import replace

    from skin_plugin.reports import render_html
    from skin_plugin.review import ReviewThresholds

    results, _ = batch
    old = replace(STUB_MODEL, review=ReviewThresholds())
    html = render_html(results, BatchSummary.from_results(results, 2.0, old), thumbnails_from="none")
    assert "records no operating point" in html and "Malignancy score" not in html
    assert "Flagged for review (5)" in html  # malignant calls, melanoma and low confidence: all but the df


def test_header_stats_and_melanoma_highlight(report):
    html = report.read_text("utf-8")
    assert "Not for clinical use." in html and "LesionCNN 1.0.0" in html and "openvino int8" in html
    assert html.count('<tr class="mel') == 8  # one highlighted melanoma row per case
    assert '<tr class="mel pred"' in html  # the melanoma case: highlighted and predicted
    assert "<b>10</b><span>images</span>" in html and "<b>6</b><span>flagged for review</span>" in html
    assert "Melanocytic nevi" in html and "Dermatofibroma" in html


def test_everything_is_escaped_and_self_contained(report):
    html = report.read_text("utf-8")
    assert "<script" not in html.lower()
    assert "DOE, JANE&lt;script&gt;" in html and "P&lt;1&gt;&amp;2" in html and "ACC&amp;1" in html
    assert "Skin of back" in html
    urls = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert len(urls) == 8 and all(u.startswith("data:image/jpeg;base64,") for u in urls)  # DICOM too
    assert not re.search(r"https?://|//cdn|@import|url\(", html)
    assert "default-src 'none'" in html


def test_thumbnails_given_or_none(batch, tmp_path):
    results, summary = batch
    red = np.zeros((120, 160, 3), np.uint8)
    red[..., 0] = 255
    html = write_html_report(results, summary, tmp_path, thumbnails={0: red},
                             thumbnails_from="none").read_text("utf-8")
    assert html.count("data:image/jpeg;base64,") == 1 and html.count("no preview") == 7


def test_chromium_renders_the_report(report, tmp_path):
    png = tmp_path / "report.png"
    stderr = chromium_screenshot(report.as_uri(), png, tmp_path / "profile")
    assert png.exists(), stderr[-2000:]
    image = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    assert image.shape == (1600, 1200, 3)
    assert image.std(axis=(0, 1)).mean() > 20  # not a blank page
    colours = {tuple(c) for c in image[::8, ::8].reshape(-1, 3).astype(int)}
    assert len(colours) > 200  # text, bars and photo thumbnails, not a few flat areas
    # the red "Not for clinical use" banner near the top
    assert any((row[:, 0] > 150).mean() > 0.9 and (row[:, 1] < 60).mean() > 0.9 for row in image[40:200])
