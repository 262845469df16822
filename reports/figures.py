"""How a finding's numbers are shown: the metric display table, and the Plotly figures of the report.

Every estimate the report prints or plots goes through `METRIC_DISPLAY`, so a metric is written the
same way in the summary, the table, the drill-down and the charts. Figures are plain dicts in Plotly's
JSON schema, embedded as JSON by the renderer: building them as `plotly.graph_objects` validated every
property on each build (3 ms a figure, 0.2 s of a nightly report); the tests validate them with
`plotly.graph_objects.Figure` instead. Nothing here computes a statistic, it only rescales for display
(a ratio of 1.05 is written +5.0%).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from audits.catalogue import CHECKS, CHECKS_BY_NAME, RULES, no_difference
from audits.findings import Finding, HistoryPoint
from audits.settings import SETTINGS_BY_KEY

DisplayKind = Literal["percent_change", "ratio", "points", "difference", "share", "raw"]

# Calm palette shared with the stylesheet: flagged = muted red, medium = amber, the rest slate.
COLOUR_HIGH = "#b42318"
COLOUR_MEDIUM = "#b54708"
COLOUR_NEUTRAL = "#475467"
COLOUR_REFERENCE = "#98a2b3"
FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'


@dataclass(frozen=True)
class MetricDisplay:
    """How one metric is written and plotted."""

    kind: DisplayKind
    axis_title: str
    reference: float  # the value meaning "no difference": 1 for ratios, 0 for differences

    def scale(self, value: float) -> float:
        """The value in the unit the reader sees (percent change, percentage points, ratio, raw)."""
        if self.kind == "percent_change":
            return (value - 1.0) * 100.0
        if self.kind in ("points", "share"):
            return value * 100.0
        return value

    def plotted(self, value: float | None) -> float | None:
        """The value on a chart axis: ratios stay ratios (reference line at 1), points and shares are x100."""
        if value is None or not math.isfinite(value):
            return None
        return value * 100.0 if self.kind in ("points", "share") else value

    def text(self, value: float | None) -> str:
        if value is None or not math.isfinite(value):
            return "n/a"
        shown = self.scale(value)
        if self.kind == "percent_change":
            return f"{_signed(shown, 1)}%"
        if self.kind == "points":
            return f"{_signed(shown, 1)} pp"
        if self.kind == "ratio":
            return f"{shown:.2f}"
        if self.kind == "difference":
            return _signed(shown, 2)
        if self.kind == "share":
            return _percent(shown)
        return f"{shown:g}"


def _signed(shown: float, digits: int) -> str:
    """'+1.2', '-0.4', and '+0.0' rather than '-0.0' for a value that rounds to zero."""
    text = f"{shown:+.{digits}f}"
    return "+" + text[1:] if text.startswith("-") and not text.strip("-0.") else text


def _percent(shown: float) -> str:
    """A share in percent, never rounded to 0% or 100% when it is not: '11.3%', '0.015%', '<0.001%'."""
    if shown <= 0 or shown >= 100:
        return f"{shown:g}%"
    if shown < 0.001:
        return "<0.001%"
    if shown >= 1:
        text = f"{shown:.1f}"
        return ">99.9%" if text == "100.0" else f"{text}%"
    return f"{shown:.{1 - math.floor(math.log10(shown))}f}%"  # two significant digits


# From the check catalogue: each disparity check's metric as it declares it, the outcome compared in points,
# and every consistency rule as the share of the lines it checked that break it.
METRIC_DISPLAY: dict[str, MetricDisplay] = {
    **{c.metric: MetricDisplay(c.display, c.axis_title.replace("{noun}", "price"), no_difference(c.metric))
       for c in reversed(CHECKS) if c.kind == "disparity"},  # a metric two checks share: the first's words
    "points_diff": MetricDisplay("difference", "difference in points, group minus reference (0 = same)", 0.0),
    "trend_price_ratio": MetricDisplay("percent_change", "change per band (1 = flat)", 1.0),
    "trend_points_diff": MetricDisplay("difference", "change per band in points (0 = flat)", 0.0),
    **{metric: MetricDisplay("share", "% of the lines checked that break the rule", 0.0) for metric in RULES},
}
_RAW = MetricDisplay("raw", "estimate", 0.0)
_SHARE = MetricDisplay("share", "share", 0.0)


def metric_display(metric: str) -> MetricDisplay:
    """The display of a metric; unknown metrics print the raw number (reference 1 if it is a ratio)."""
    if metric in METRIC_DISPLAY:
        return METRIC_DISPLAY[metric]
    if metric.endswith("_ratio"):
        return MetricDisplay("raw", metric.replace("_", " "), 1.0)
    return MetricDisplay("raw", metric.replace("_", " ") or _RAW.axis_title, 0.0)


def format_value(metric: str, value: float | None) -> str:
    return metric_display(metric).text(value)


def format_interval(metric: str, low: float | None, high: float | None) -> str:
    """The 95% confidence interval as text, or '' when the finding has none."""
    if low is None or high is None:
        return ""
    display = metric_display(metric)
    return f"{display.text(low)} to {display.text(high)}"


def format_estimate(finding: Finding, *, level: str = "95%") -> str:
    """'+5.0% (95% CI +4.0% to +6.0%)'; '' for a finding without an estimate. `level`: the run's confidence."""
    if finding.estimate is None:
        return ""
    interval = format_interval(finding.metric, finding.ci_low, finding.ci_high)
    value = format_value(finding.metric, finding.estimate)
    return f"{value} ({level} CI {interval})" if interval else value


def format_share(value: float | None) -> str:
    """A share of lines or customers in percent, never rounded to 0% or 100% when it is not: '80.3%'."""
    return _SHARE.text(value)


def segment_text(segment: dict[str, str] | None) -> str:
    if not segment:
        return "all customers"
    return ", ".join(f"{k} = {v}" for k, v in sorted(segment.items()))


def comparison_text(finding: Finding) -> str:
    if finding.group is None:
        return ""
    return f"{finding.group} vs {finding.reference}" if finding.reference is not None else finding.group


# plotly.js's official "basic" partial bundle (scatter, bar, pie: the figures here use scatter only),
# vendored from the npm package plotly.js-basic-dist-min so that reports build offline: 1.2 MB against
# 4.8 MB for the full bundle the Python package ships. Its major version must match the plotly.js the
# Python package targets (plotly.offline.get_plotlyjs_version()); the tests check both and the hash.
# Upgrade: `npm pack plotly.js-basic-dist-min@X.Y.Z`, copy plotly-basic.min.js and LICENSE here, update
# the version and sha256 below.
PLOTLY_BUNDLE = Path(__file__).parent / "templates" / "plotly-basic.min.js"
PLOTLY_BUNDLE_VERSION = "4.1.1"
PLOTLY_BUNDLE_SHA256 = "99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba"


@cache
def plotly_js() -> str:
    """The Plotly bundle, inlined once per report (no CDN: reports must work offline)."""
    return PLOTLY_BUNDLE.read_text(encoding="utf-8")


_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: Any) -> str:
    """JSON safe inside <script type="application/json">: no '</script>', no '<!--', no JS line breaks."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for character, escape in _SCRIPT_ESCAPES.items():  # str.replace: 10x faster than a join per character
        text = text.replace(character, escape)
    return text


def _label(text: str) -> str:
    """Plotly reads a few HTML tags and entities in labels; escape so data shows literally."""
    return html.escape(text, quote=False)


def _shorten(text: str, limit: int) -> str:
    """Axis labels stay short so the plot keeps its width; the hover text has the full label."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _is_plotted(finding: Finding) -> bool:
    return not finding.suppressed and _finite(finding.estimate) is not None


def _layout(display: MetricDisplay, *, height: int, left: int, shapes: list[dict[str, Any]] | None = None,
            **axes: Any) -> dict[str, Any]:
    """The layout every chart shares; `shapes` default to the dashed line at "no difference" on x."""
    if shapes is None:
        shapes = [{
            "type": "line", "xref": "x", "yref": "paper", "x0": display.plotted(display.reference),
            "x1": display.plotted(display.reference),
            "y0": 0, "y1": 1, "line": {"color": COLOUR_REFERENCE, "width": 1, "dash": "dash"},
        }]
    return {
        "height": height,
        "margin": {"l": left, "r": 24, "t": 16, "b": 56},
        "font": {"family": FONT_FAMILY, "size": 12, "color": "#344054"},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "showlegend": False,
        "hoverlabel": {"bgcolor": "#ffffff", "font": {"family": FONT_FAMILY}},
        "shapes": shapes,
        **axes,
    }


def _colour(finding: Finding) -> str:
    if not finding.is_flagged or finding.status == "resolved":
        return COLOUR_NEUTRAL
    return COLOUR_HIGH if finding.severity == "high" else COLOUR_MEDIUM


FOREST_MAX_ROWS = 24


def forest_rows(siblings: Sequence[Finding], *, focus: Finding, limit: int = FOREST_MAX_ROWS) -> list[Finding]:
    """The comparisons a drill-down plots: the focus's segment across groups, its group across segments.

    An intersection times many segments can give a hundred siblings, which no one reads in one chart;
    beyond `limit` the focus comes first, then flagged findings, then the rest by q-value.
    """
    plotted = [f for f in siblings if _is_plotted(f)]
    near = [f for f in plotted if f.segment == focus.segment or f.group == focus.group]
    if len(near) <= limit:
        return near
    def priority(f: Finding) -> tuple[int, int, float]:
        q = f.q_value if f.q_value is not None and math.isfinite(f.q_value) else math.inf
        return (f.key != focus.key, not f.is_flagged, q)
    return sorted(near, key=priority)[:limit]


# Forest charts come in two layouts: labels left of the rows (wide), or above each row over the full
# width (narrow, for phones). The wide one is used when the chart is at least `narrow.below` pixels
# wide: room for the longest label (LABEL_CHAR_PX a character at 12 px) and MIN_PLOT_PX of plot.
LABEL_CHARS = 56
NARROW_LABEL_CHARS = 40  # 11 px labels over a 300 px chart (a 320 px phone less the page's padding)
NARROW_TITLE_CHARS = 36
LABEL_CHAR_PX = 7
MIN_PLOT_PX = 260
NARROW_ROW_PX = 46


def forest_figure(
    siblings: Sequence[Finding], *, focus: Finding, thresholds: Mapping[str, float] | None = None, level: str = "95%"
) -> dict[str, Any] | None:
    """Estimates with 95% CIs across the groups and segments of one check and attribute.

    `siblings` are the findings of the same check and attribute (the renderer groups them, and picks
    them with `forest_rows`); suppressed ones and those without an estimate are left out. The focused
    finding is bold.
    For discount rates the configured four-fifths line is drawn too (from `thresholds`, as recorded).
    Besides Plotly's `data` and `layout` (the wide layout), the figure carries `narrow`: the layout
    for charts narrower than `narrow["below"]` pixels, which the report's script picks by width.
    """
    rows = [f for f in siblings if _is_plotted(f)]
    if not rows:
        return None
    display = metric_display(focus.metric)
    rows.sort(key=lambda f: (segment_text(f.segment), f.group or ""), reverse=True)  # top-down reading order
    texts = [f"{comparison_text(f)} · {segment_text(f.segment)}" for f in rows]

    def labels(limit: int) -> list[str]:
        shown = [_label(_shorten(text, limit)) for text in texts]
        return [f"<b>{label}</b>" if f.key == focus.key else label for f, label in zip(rows, shown, strict=True)]

    layout = _layout(
        display, height=100 + 30 * len(rows), left=16,
        xaxis={"title": {"text": display.axis_title}, "zeroline": False, "gridcolor": "#eaecf0"},
        yaxis={"tickvals": list(range(len(rows))), "ticktext": labels(LABEL_CHARS), "range": [-0.7, len(rows) - 0.3],
               "showgrid": False, "zeroline": False, "automargin": True},
    )
    line = _threshold(focus, thresholds or {})
    annotations = _threshold_line(layout, *line) if line is not None else []
    narrow = _narrow_layout(layout, display, annotations, labels(NARROW_LABEL_CHARS))
    longest = max(len(_shorten(text, LABEL_CHARS)) for text in texts)
    below = longest * LABEL_CHAR_PX + layout["margin"]["l"] + layout["margin"]["r"] + MIN_PLOT_PX
    return {"data": [_forest_trace(rows, display, level)], "layout": layout,
            "narrow": {"below": below, "layout": narrow}}


def _forest_trace(rows: Sequence[Finding], display: MetricDisplay, level: str) -> dict[str, Any]:
    """One marker per finding at its estimate, with its confidence interval as error bars and its words on hover."""
    estimates = [display.plotted(f.estimate) for f in rows]
    hover = [_label(f"{comparison_text(f)}, {segment_text(f.segment)}: {format_estimate(f, level=level)}; "
                    f"{f.severity}, {f.status}") for f in rows]
    return {
        "type": "scatter",
        "x": estimates,
        "y": list(range(len(rows))),
        "mode": "markers",
        "marker": {"size": 9, "color": [_colour(f) for f in rows], "symbol": "square"},
        "error_x": {
            "type": "data", "symmetric": False, "thickness": 1.5, "width": 4, "color": COLOUR_NEUTRAL,
            "array": [_gap(display.plotted(f.ci_high), x) for f, x in zip(rows, estimates, strict=True)],
            "arrayminus": [_gap(x, display.plotted(f.ci_low)) for f, x in zip(rows, estimates, strict=True)],
        },
        "hovertext": hover,
        "hoverinfo": "text",
    }


def _threshold(focus: Finding, thresholds: Mapping[str, float]) -> tuple[float, str] | None:
    """A rate check's practical threshold, as the run recorded it, and its line's label ("four-fifths rule
    (0.8)", or "flags above 1.25"); None for other checks, or when the run recorded no such threshold."""
    check = CHECKS_BY_NAME.get(focus.check)
    if check is None or check.display != "ratio" or not check.threshold:
        return None
    value = thresholds.get(SETTINGS_BY_KEY[check.threshold].name)
    if value is None:
        return None
    if check.threshold_name:
        return value, f"{check.threshold_name} ({value:g})"
    return value, f"flags {'below' if check.adverse == 'lower' else 'above'} {value:g}"


def _threshold_line(layout: dict[str, Any], value: float, label: str) -> list[dict[str, Any]]:
    """Draw the threshold's line on the chart (into `layout`); its label, as annotations."""
    layout["shapes"].append({
        "type": "line", "xref": "x", "yref": "paper", "x0": value, "x1": value, "y0": 0, "y1": 1,
        "line": {"color": COLOUR_MEDIUM, "width": 1, "dash": "dot"},
    })
    annotations = [{
        "x": value, "xref": "x", "y": 1, "yref": "paper", "yanchor": "bottom", "showarrow": False,
        "text": label, "font": {"size": 11, "color": COLOUR_MEDIUM},
    }]
    layout["annotations"] = annotations
    layout["margin"]["t"] = 28
    return annotations


def _narrow_layout(layout: dict[str, Any], display: MetricDisplay, annotations: list[dict[str, Any]], labels: list[str]
                   ) -> dict[str, Any]:
    """The wide layout for a narrow chart: each row's label written above its marker instead of beside it."""
    n_rows = len(labels)
    return {
        **layout,
        "height": 96 + NARROW_ROW_PX * n_rows,
        "margin": {**layout["margin"], "l": 8, "r": 16, "b": 72},
        "xaxis": {**layout["xaxis"], "title": {"text": _wrap(display.axis_title, NARROW_TITLE_CHARS)}},
        "yaxis": {**{k: v for k, v in layout["yaxis"].items() if k not in ("tickvals", "ticktext")},
                  "showticklabels": False, "automargin": False, "range": [-0.6, n_rows - 0.25]},
        "annotations": [*annotations, *(
            {"x": 0, "xref": "paper", "xanchor": "left", "y": index, "yref": "y", "yanchor": "bottom", "yshift": 7,
             "text": label, "showarrow": False, "align": "left", "font": {"size": 11},
             "bgcolor": "rgba(255,255,255,0.85)"}
            for index, label in enumerate(labels)
        )],
    }


def _wrap(text: str, width: int) -> str:
    """An axis title on lines of at most `width` characters, broken after commas first (Plotly does not
    wrap titles itself)."""
    lines: list[str] = []
    for part in text.replace(", ", ",\n").split("\n"):
        start = len(lines)
        for word in part.split():
            if len(lines) > start and len(lines[-1]) + 1 + len(word) <= width:
                lines[-1] += " " + word
            else:
                lines.append(word)
    return "<br>".join(_label(line) for line in lines)


def trend_figure(finding: Finding, history: Sequence[HistoryPoint], *, period_end: str, level: str = "95%"
                 ) -> dict[str, Any] | None:
    """The finding's estimate with 95% CI in earlier runs of the same scope and in this run."""
    points = []
    for point in sorted(history, key=lambda h: h.period_end):
        earlier = point.estimates.get(finding.key)
        if earlier and _finite(earlier.get("estimate")) is not None:
            points.append((point.period_end, point.run_id, earlier.get("estimate"),
                           earlier.get("ci_low"), earlier.get("ci_high")))
    if not points or not _is_plotted(finding):
        return None
    points.append((period_end, "this run", finding.estimate, finding.ci_low, finding.ci_high))
    display = metric_display(finding.metric)
    trace = {
        "type": "scatter",
        "x": [p[0] for p in points],
        "y": [display.plotted(p[2]) for p in points],
        "mode": "lines+markers",
        "line": {"color": COLOUR_NEUTRAL, "width": 1.5},
        "marker": {"size": 8, "color": [COLOUR_NEUTRAL] * (len(points) - 1) + [_colour(finding)]},
        "error_y": {
            "type": "data", "symmetric": False, "thickness": 1.5, "width": 4, "color": COLOUR_NEUTRAL,
            "array": [_gap(display.plotted(p[4]), display.plotted(p[2])) for p in points],
            "arrayminus": [_gap(display.plotted(p[2]), display.plotted(p[3])) for p in points],
        },
        "hovertext": [
            _label(f"{p[0]} ({p[1]}): {format_value(finding.metric, p[2])}"
                   + (f", {level} CI {format_interval(finding.metric, p[3], p[4])}" if p[3] is not None else ""))
            for p in points
        ],
        "hoverinfo": "text",
    }
    layout = _layout(
        display, height=260, left=72,
        shapes=[{
            "type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": display.plotted(display.reference),
            "y1": display.plotted(display.reference), "line": {"color": COLOUR_REFERENCE, "width": 1, "dash": "dash"},
        }],
        xaxis={"title": {"text": "end of audited period"}, "type": "category", "showgrid": False},
        yaxis={"title": {"text": display.axis_title.split(",")[0]}, "zeroline": False, "gridcolor": "#eaecf0"},
    )
    return {"data": [trace], "layout": layout}


def _gap(upper: float | None, lower: float | None) -> float | None:
    """Length of one error-bar arm (plotly wants distances, not bounds)."""
    if _finite(upper) is None or _finite(lower) is None:
        return None
    return max(0.0, upper - lower)
