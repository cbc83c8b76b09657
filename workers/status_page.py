"""The exporter's status page: one self-contained HTML page (inline SVG chart, no scripts, no PHI)."""

from __future__ import annotations

import time
from html import escape
from typing import Any

BIN_MINUTES = 10


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def throughput_svg(series: list[tuple[int, int]], width: int = 720, height: int = 160) -> str:
    """Bars of images/s per 10-minute bin over the series (24 h by default)."""
    bins: list[tuple[int, float]] = []
    for i in range(0, len(series), BIN_MINUTES):
        chunk = series[i:i + BIN_MINUTES]
        bins.append((chunk[0][0], sum(n for _, n in chunk) / (60.0 * len(chunk))))
    peak = max((v for _, v in bins), default=0.0) or 1.0
    bar_w = width / max(1, len(bins))
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{height - 20 - (v / peak) * (height - 30):.1f}" width="{max(bar_w - 1, 1):.1f}" '
        f'height="{(v / peak) * (height - 30):.1f}" fill="#2f6db5"><title>{_fmt_time(m * 60)}: {v:.2f} images/s'
        f"</title></rect>"
        for i, (m, v) in enumerate(bins))
    first = _fmt_time(bins[0][0] * 60) if bins else "-"
    return (f'<svg role="img" aria-label="throughput over 24 hours" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#f4f6f8"/>{bars}'
            f'<text x="4" y="12" font-size="11">peak {peak:.2f} images/s</text>'
            f'<text x="4" y="{height - 5}" font-size="11">{escape(first)}</text>'
            f'<text x="{width - 4}" y="{height - 5}" font-size="11" text-anchor="end">now</text></svg>')


def _delivery_cell(delivery: list[dict[str, Any]]) -> str:
    """One line per destination: ``3 / 0 / 2 → dicom://PACS@host:104?calling=SKINAI`` (dead letters in red)."""
    lines = [f'<span class="{"dead" if d["dead_lettered"] else "ok"}">{d["sent"]} / {d["pending"]} / '
             f'{d["dead_lettered"]} → {escape(d["destination"])}</span>' for d in delivery]
    return "<br>".join(lines) or "no route"


def render_status_page(data: dict[str, Any]) -> str:
    workers = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(str(w.get('host', '')))}</td><td>{w.get('pid', '')}</td>"
        f"<td>{escape(str(w.get('device', '')))}/{escape(str(w.get('precision', '')))}</td>"
        f"<td>{_fmt_time(w.get('since'))}</td></tr>"
        for name, w in sorted(data["workers"].items())) or '<tr><td colspan="5">no worker is up</td></tr>'
    queues = "".join(f"<tr><td>{escape(q)}</td><td>{v['length']}</td><td>{v['oldest_age_s']:.0f} s</td></tr>"
                     for q, v in data["queues"].items())
    batches = "".join(
        f"<tr><td>{escape(b['batch_id'])}</td><td>{escape(b['state'])}</td><td>{escape(b['queue'])}</td>"
        f"<td>{b['done']}</td><td>{b['failed']}</td><td>{b['total']}</td><td>{_fmt_time(b['submitted'])}</td>"
        f"<td>{_fmt_time(b['finished'])}</td><td>{_delivery_cell(b.get('delivery', []))}</td><td>"
        + (f'<a href="/batches/{escape(b["batch_id"])}/report.html">report</a>' if b.get("reported") else "-")
        + "</td></tr>"
        for b in data["batches"]) or '<tr><td colspan="10">no batches yet</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Skin-lesion scoring — status</title>
<meta http-equiv="refresh" content="15">
<style>body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24}}
table{{border-collapse:collapse;margin-bottom:1.2rem}}td,th{{border:1px solid #d0d7de;padding:.25rem .6rem;
text-align:left}}th{{background:#eef1f4}}.big{{font-size:1.6rem;font-weight:600}}
.dead{{color:#b71c1c;font-weight:700}}</style></head>
<body><h1>Skin-lesion scoring — status</h1>
<p>Updated {_fmt_time(data['time'])}. <span class="big">{data['throughput_images_per_s_5m']:.2f}</span> images/s
(last 5 min) · {data['images_24h']} images in 24 h · {len(data['workers'])} worker process(es) up.</p>
<h2>Throughput, last 24 hours</h2>{throughput_svg(data['throughput_per_minute'])}
<h2>Queues</h2><table><tr><th>queue</th><th>waiting tasks</th><th>oldest waiting</th></tr>{queues}</table>
<h2>Workers</h2><table><tr><th>worker</th><th>host</th><th>pid</th><th>device/precision</th><th>up since</th></tr>
{workers}</table>
<h2>Recent batches</h2><table><tr><th>batch</th><th>state</th><th>queue</th><th>done</th><th>failed</th>
<th>total</th><th>submitted</th><th>finished</th><th>SRs: sent / pending / dead-lettered</th><th>report</th></tr>
{batches}</table>
<p><a href="/metrics">Prometheus metrics</a> · <a href="/api/status">JSON</a> · Not for clinical use.</p>
</body></html>
"""
