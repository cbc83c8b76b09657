"""Report writers: per-image JSON (``image-report-1.1``), batch ``summary.json`` and ``report.html``."""

from skin_plugin.reports.html_report import render_html, write_html_report
from skin_plugin.reports.json_report import (
    DISCLAIMER,
    SCHEMA_VERSION,
    ReviewThresholds,
    image_report,
    load_schema,
    report_file_name,
    write_image_report,
    write_image_reports,
)
from skin_plugin.reports.summary import BatchSummary, FailedInput

__all__ = [
    "DISCLAIMER", "SCHEMA_VERSION", "BatchSummary", "FailedInput", "ReviewThresholds", "image_report",
    "load_schema", "render_html", "report_file_name", "write_html_report", "write_image_report",
    "write_image_reports",
]
