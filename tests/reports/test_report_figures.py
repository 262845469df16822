"""Metric display and figure JSON: each expected value is written out by hand."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from reports.figures import (
    forest_figure,
    forest_rows,
    format_estimate,
    format_interval,
    format_share,
    format_value,
    script_json,
    trend_figure,
)


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        ("price_ratio", 1.05, "+5.0%"),
        ("price_ratio", 0.968, "-3.2%"),
        ("adverse_impact_ratio", 0.5234, "0.52"),
        ("discount_pct_diff", -0.031, "-3.1 pp"),
        ("discount_pct_diff", 0.02, "+2.0 pp"),
        ("violations", 37.0, "37"),
        ("list_price_dispersion", 0.11342171680055768, "11.3%"),
        ("paid_price_dispersion", 0.0123, "1.2%"),
        ("points_diff", 0.35, "+0.35"),
        ("dearer_ratio", 1.6, "1.60"),
        ("line_total_mismatch", 0.00015117856287978366, "0.015%"),
        ("discount_above_policy", 0.005, "0.50%"),
        ("discount_above_policy", 0.000921, "0.092%"),
        ("discount_mismatch", 0.0, "0%"),
        ("discount_mismatch", 1e-6, "<0.001%"),
        ("discount_mismatch", 0.99999, ">99.9%"),
        ("discount_mismatch", 1.0, "100%"),
        ("price_ratio", 0.99999, "+0.0%"),  # never "-0.0%"
        ("discount_pct_diff", -0.0001, "+0.0 pp"),
        ("points_diff", -0.001, "+0.00"),
        ("points_diff", -0.006, "-0.01"),
        ("price_ratio", None, "n/a"),
        ("price_ratio", float("nan"), "n/a"),
    ],
)
def test_format_value(metric: str, value: float | None, expected: str) -> None:
    assert format_value(metric, value) == expected


@pytest.mark.parametrize(("value", "expected"), [(0.803, "80.3%"), (0.37, "37.0%"), (1.0, "100%"), (0.0, "0%"),
                                               (0.0042, "0.42%"), (0.99999, ">99.9%"), (None, "n/a")])
def test_format_share(value: float | None, expected: str) -> None:
    assert format_share(value) == expected


def test_intervals_name_the_runs_confidence_level(sample: SimpleNamespace) -> None:
    assert format_estimate(sample.HIGH_GAP, level="90%") == "+5.0% (90% CI +4.0% to +6.0%)"
    figure = forest_figure([sample.HIGH_GAP, sample.LOW_GAP], focus=sample.HIGH_GAP, level="90%")
    assert all("(90% CI " in text for text in figure["data"][0]["hovertext"])


def test_format_estimate_with_interval(sample: SimpleNamespace) -> None:
    assert format_estimate(sample.HIGH_GAP) == "+5.0% (95% CI +4.0% to +6.0%)"
    assert format_estimate(sample.MEDIUM_INCIDENCE) == "0.52 (95% CI 0.45 to 0.60)"
    assert format_interval("discount_pct_diff", -0.05, -0.012) == "-5.0 pp to -1.2 pp"
    assert format_estimate(sample.SUPPRESSED) == ""


def test_script_json_cannot_close_its_script_element() -> None:
    text = script_json({"name": "</script><!-- & \u2028\u2029"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"name": "</script><!-- & \u2028\u2029"}


def test_script_json_rejects_nan() -> None:
    with pytest.raises(ValueError):
        script_json({"x": float("nan")})


def test_forest_plots_siblings_with_reference_line_and_highlight(sample: SimpleNamespace) -> None:
    figure = forest_figure([sample.HIGH_GAP, sample.LOW_GAP, sample.SUPPRESSED], focus=sample.HIGH_GAP)
    assert figure is not None
    (trace,) = figure["data"]
    assert sorted(trace["x"]) == [1.004, 1.05]  # the suppressed finding is not plotted
    assert figure["layout"]["shapes"][0]["x0"] == 1.0  # ratio: no difference at 1
    high_index = trace["x"].index(1.05)
    assert trace["marker"]["color"][high_index] != trace["marker"]["color"][1 - high_index]
    assert trace["error_x"]["array"][high_index] == pytest.approx(0.01)
    assert figure["layout"]["yaxis"]["ticktext"][high_index].startswith("<b>")


def test_forest_of_differences_is_in_points_around_zero(sample: SimpleNamespace) -> None:
    depth = sample.finding(check="discount_depth", metric="discount_pct_diff", estimate=-0.031, ci_low=-0.05, ci_high=-0.012)
    figure = forest_figure([depth], focus=depth)
    assert figure is not None
    assert figure["data"][0]["x"] == [pytest.approx(-3.1)]
    assert figure["layout"]["shapes"][0]["x0"] == 0.0


def test_forest_draws_four_fifths_line_from_recorded_threshold(sample: SimpleNamespace) -> None:
    figure = forest_figure([sample.MEDIUM_INCIDENCE], focus=sample.MEDIUM_INCIDENCE, thresholds={"adverse_impact_ratio": 0.8})
    assert figure is not None
    assert [s["x0"] for s in figure["layout"]["shapes"]] == [1.0, 0.8]


def test_forest_draws_each_rate_checks_threshold_as_its_catalogue_entry_names_it(sample: SimpleNamespace) -> None:
    """Every rate check's chart has its practical threshold's line: the four-fifths rule by name, dearer_price's
    saying which side flags; a check of another display, or a run that recorded no threshold, draws none."""
    recorded = {"adverse_impact_ratio": 0.8, "max_dearer_ratio": 1.25, "min_price_gap": 0.02}
    dearer = sample.replace(sample.MEDIUM_INCIDENCE, check="dearer_price", metric="dearer_ratio", estimate=1.4,
                            ci_low=1.3, ci_high=1.5)
    lines = {}
    for found in (sample.MEDIUM_INCIDENCE, dearer, sample.HIGH_GAP):
        figure = forest_figure([found], focus=found, thresholds=recorded)
        lines[found.check] = ([s["x0"] for s in figure["layout"]["shapes"]][1:],
                              [a["text"] for a in figure["layout"].get("annotations", [])])
    assert lines == {"discount_incidence": ([0.8], ["four-fifths rule (0.8)"]),
                     "dearer_price": ([1.25], ["flags above 1.25"]),
                     "price_gap": ([], [])}
    assert forest_figure([dearer], focus=dearer)["layout"]["shapes"][1:] == []


def test_forest_labels_escape_markup(sample: SimpleNamespace) -> None:
    figure = forest_figure([sample.HOSTILE], focus=sample.HOSTILE)
    assert figure is not None
    label = figure["layout"]["yaxis"]["ticktext"][0]
    assert "&lt;script&gt;" in label and "<script>" not in label


def test_trend_orders_history_then_this_run(sample: SimpleNamespace) -> None:
    result = sample.build_result()
    figure = trend_figure(sample.HIGH_GAP, result.history, period_end="2026-05-31")
    assert figure is not None
    assert figure["data"][0]["x"] == ["2026-03-31", "2026-04-30", "2026-05-31"]
    assert figure["data"][0]["y"] == [1.02, 1.03, 1.05]
    assert trend_figure(sample.LOW_GAP, result.history, period_end="2026-05-31") is None
    assert trend_figure(sample.HIGH_GAP, [], period_end="2026-05-31") is None


def test_forest_rows_cross_the_focus_and_cap(sample: SimpleNamespace) -> None:
    focus = sample.HIGH_GAP
    other_segment_other_group = sample.finding(group="X", segment={"category": "groceries"})
    same_segment = [sample.finding(group=f"G{i}", segment=focus.segment, q_value=i / 100) for i in range(30)]
    rows = sample.HIGH_GAP, sample.LOW_GAP, other_segment_other_group, sample.SUPPRESSED
    assert forest_rows(rows, focus=focus) == [sample.HIGH_GAP, sample.LOW_GAP]
    capped = forest_rows([*same_segment, focus], focus=focus, limit=5)
    assert capped == [focus, *same_segment[:4]]


def test_figures_are_valid_plotly_json(sample: SimpleNamespace) -> None:
    """The figures are plain dicts; plotly's own classes must accept every property and give them back
    unchanged (an unknown or misspelt property raises here instead of being ignored by the browser)."""
    import plotly.graph_objects as go

    result = sample.build_result()
    figures = [
        forest_figure([sample.HIGH_GAP, sample.LOW_GAP, sample.HOSTILE], focus=sample.HIGH_GAP),
        forest_figure([sample.MEDIUM_INCIDENCE], focus=sample.MEDIUM_INCIDENCE, thresholds={"adverse_impact_ratio": 0.8}),
        trend_figure(sample.HIGH_GAP, result.history, period_end="2026-05-31"),
    ]
    for figure in figures:
        assert figure is not None
        layouts = [figure["layout"], *([figure["narrow"]["layout"]] if "narrow" in figure else [])]
        for layout in layouts:
            plain = {"data": figure["data"], "layout": layout}
            checked = go.Figure(plain, skip_invalid=False).to_plotly_json()
            checked["layout"].pop("template", None)  # plotly adds its empty default
            assert checked == plain
    assert set(figures[0]) == {"data", "layout", "narrow"} and set(figures[2]) == {"data", "layout"}


def test_forest_narrow_layout_puts_labels_above_the_rows(sample: SimpleNamespace) -> None:
    figure = forest_figure([sample.HIGH_GAP, sample.LOW_GAP], focus=sample.HIGH_GAP)
    assert figure is not None
    narrow = figure["narrow"]
    # the longest label, "F vs M · category = personal_care", is 33 characters: 33 x 7 px, the margins
    # (16 + 24) and 260 px of plot
    assert narrow["below"] == 33 * 7 + 16 + 24 + 260 == 531
    layout = narrow["layout"]
    assert layout["yaxis"]["showticklabels"] is False and "ticktext" not in layout["yaxis"]
    labels = [(a["text"], a["y"], a["xref"], a["x"]) for a in layout["annotations"]]
    assert labels == [("<b>F vs M · category = personal_care</b>", 0, "paper", 0),
                      ("F vs M · category = groceries", 1, "paper", 0)]
    assert layout["height"] == 96 + 46 * 2
    assert layout["margin"]["l"] == 8
    assert layout["xaxis"]["title"]["text"] == "price ratio,<br>group / reference (1 = same price)"
    assert figure["layout"]["yaxis"]["ticktext"] == [label for label, *_ in labels]  # wide: the same labels


def test_forest_narrow_labels_are_shorter_and_escaped(sample: SimpleNamespace) -> None:
    long_group = sample.replace(sample.HOSTILE, group="<b>" + "x" * 60)
    figure = forest_figure([long_group], focus=long_group, thresholds={"adverse_impact_ratio": 0.8})
    assert figure is not None
    wide = figure["layout"]["yaxis"]["ticktext"][0]
    annotations = figure["narrow"]["layout"]["annotations"]
    assert annotations[0]["text"] == "four-fifths rule (0.8)"  # the rule's label is kept
    narrow = annotations[1]["text"]
    assert narrow == "<b>&lt;b&gt;" + "x" * 36 + "…</b>"  # 40 characters with the ellipsis, then escaped
    assert wide == "<b>&lt;b&gt;" + "x" * 52 + "…</b>"  # 56
    assert figure["narrow"]["below"] == 56 * 7 + 300
