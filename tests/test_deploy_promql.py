"""The exporter's metric names and a small PromQL reader used by the deploy tests.

``series_names`` lists the series an expression selects, ``label_matchers`` its ``{name op "value"}``
selectors and ``grouping_labels`` the labels of its ``by``/``without``/``on``/``ignoring`` clauses. The
tests below pin the reader on known expressions, so a check built on it cannot pass vacuously.
"""

from __future__ import annotations

import re

import pytest

# Metric families exported by `skin-plugin exporter` (fixed names) and their labels.
COUNTERS = {
    "skin_images_scored_total": {"outcome", "label", "worker"},
    "skin_images_failed_total": {"reason"},
    "skin_sr_sent_total": {"destination"},
    "skin_sr_dead_lettered_total": {"destination"},
}
HISTOGRAMS = {
    "skin_task_duration_seconds": {"queue"},
    "skin_task_batch_size": set(),
    "skin_image_latency_seconds": set(),
}
GAUGES = {
    "skin_queue_length": {"queue"},
    "skin_queue_oldest_job_age_seconds": {"queue"},
    "skin_workers_up": set(),
    "skin_model_info": {"name", "version", "precision"},
}
SERIES: dict[str, set[str]] = {**COUNTERS, **GAUGES}
for _name, _labels in HISTOGRAMS.items():
    SERIES[f"{_name}_bucket"] = _labels | {"le"}
    SERIES[f"{_name}_sum"] = _labels
    SERIES[f"{_name}_count"] = _labels
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
LABEL_VALUES = {
    "outcome": {"scored", "failed"},
    "queue": {"urgent", "batch"},
    "label": {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc", ""},
}

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|[A-Za-z_:][A-Za-z0-9_:]*")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _strip(expr: str) -> str:
    text = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables ($__rate_interval, ...)
    text = _STRING.sub('""', text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    return _GROUPING.sub("", text)


def series_names(expr: str) -> set[str]:
    """Names of the series an expression selects (identifiers that are not functions or keywords)."""
    text = _strip(expr)
    names = set()
    for match in _TOKEN.finditer(text):
        word = match.group()
        if word[0].isdigit() or word in _KEYWORDS:
            continue
        if text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def label_matchers(expr: str) -> list[tuple[str, str, str]]:
    """Every ``name op "value"`` inside the ``{...}`` selectors."""
    found = []
    for block in _selector_blocks(expr):
        found.extend(_MATCHER.findall(block))
    return found


def _selector_blocks(expr: str) -> list[str]:
    """The text inside each ``{...}``, with braces inside quoted values left alone."""
    blocks, start, quote, i = [], None, "", 0
    while i < len(expr):
        char = expr[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            start = i + 1
        elif char == "}" and start is not None:
            blocks.append(expr[start:i])
            start = None
        i += 1
    return blocks


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for _, inner in _GROUPING.findall(expr):
        labels.update(part.strip() for part in inner.split(",") if part.strip())
    return labels


def unknown_names(expr: str, extra_series: frozenset[str] = frozenset()) -> list[str]:
    """What in ``expr`` is not an exported series, label or label value; empty when all is known."""
    problems = []
    known = set(SERIES) | extra_series
    for name in sorted(series_names(expr) - known):
        problems.append(f"unknown series {name}")
    all_labels = set().union(*SERIES.values()) | TARGET_LABELS | {"__name__"}
    for name, op, value in label_matchers(expr):
        if name not in all_labels:
            problems.append(f"unknown label {name}")
        elif op == "=" and name in LABEL_VALUES and value not in LABEL_VALUES[name]:
            problems.append(f"unknown value {name}={value!r}")
    for name in sorted(grouping_labels(expr) - all_labels):
        problems.append(f"unknown grouping label {name}")
    return problems


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("skin_workers_up == 0", {"skin_workers_up"}),
        ("sum by (worker) (rate(skin_images_scored_total[$__rate_interval]))", {"skin_images_scored_total"}),
        ("histogram_quantile(0.95, sum by (le) (rate(skin_image_latency_seconds_bucket[5m])))",
         {"skin_image_latency_seconds_bucket"}),
        ('sum(rate(skin_images_scored_total{outcome="failed"}[30m])) / sum(rate(skin_images_scored_total[30m]))'
         " > 0.05", {"skin_images_scored_total"}),
        ("(sum(rate(a_total[10m])) or vector(0)) < 5 and sum(b) > 1e3", {"a_total", "b"}),
        ("rate(x[5m] offset 1h) unless on (queue) y", {"x", "y"}),
    ],
)
def test_series_names_reads_selectors_only(expr, expected):
    assert series_names(expr) == expected


def test_label_matchers_and_grouping_are_read():
    expr = 'sum by (label, worker) (increase(skin_images_scored_total{outcome="scored", queue!~"a}b"}[1h]))'
    assert label_matchers(expr) == [("outcome", "=", "scored"), ("queue", "!~", "a}b")]
    assert grouping_labels(expr) == {"label", "worker"}


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(skin_images_total[5m])", "unknown series skin_images_total"),
        ("skin_image_latency_seconds", "unknown series skin_image_latency_seconds"),
        ('skin_images_scored_total{outcome="ok"}', "unknown value outcome='ok'"),
        ('skin_queue_length{queue="default"}', "unknown value queue='default'"),
        ('skin_queue_length{pool="x"}', "unknown label pool"),
        ("sum by (node) (skin_workers_up)", "unknown grouping label node"),
    ],
)
def test_unknown_names_are_reported(expr, problem):
    assert problem in unknown_names(expr)


def test_known_expression_has_no_problems():
    expr = ('histogram_quantile(0.5, sum by (le, queue) (rate(skin_task_duration_seconds_bucket'
            '{queue="urgent"}[5m])))')
    assert unknown_names(expr) == []
