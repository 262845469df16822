"""Interval and test always agree (issue 20): for every metric, the confidence interval excludes the
no-difference value exactly when p < 1 - confidence, because both come from the same estimate and
standard error (the rate ratio's test is the inversion of its log-scale interval).

Checked twice: over many random estimates through `metric_interval` (what every finding's figures go
through), and over every test of every disparity check on random small markets audited by the real
engine, at several confidence levels. A flagged finding never has an interval that contains no difference.
"""

from __future__ import annotations

import math

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audits import disparity
from audits.catalogue import CHECKS, no_difference
from audits.disparity import metric_interval
from audits.judgement import judge
from audits.lines import build_audit_lines
from audits.runner import code_audit_lines
from audits.sample import MarketSpec, PlantedEffect, generate_market
from audits.stats import clustered_estimate
from audits.warehouse import apply_schema
from tests.audits.conftest import load_market, market_config

DISPARITY = [c for c in CHECKS if c.kind == "disparity"]
METRICS = sorted({(c.metric_for(scale), c.contrast == "rate") for c in DISPARITY for scale in ("ratio", "points")})
LEVELS = (0.9, 0.95, 0.99)


def _agrees(low: float, high: float, p: float, metric: str, confidence: float) -> bool:
    """The interval excludes no difference exactly when p < 1 - confidence (ties at the boundary aside)."""
    alpha = 1 - confidence
    if math.isclose(p, alpha, rel_tol=1e-9, abs_tol=1e-12):
        return True
    nothing = no_difference(metric)
    return (low > nothing or high < nothing) == (p < alpha)


@settings(max_examples=600, deadline=None)
@given(metric=st.sampled_from(METRICS), confidence=st.sampled_from(LEVELS),
       beta=st.floats(-0.5, 0.5, allow_nan=False), sandwich=st.floats(1e-8, 0.05),
       clusters=st.integers(2, 5_000), df=st.floats(1, 5_000), rate=st.floats(0.02, 0.98),
       rate_variance=st.floats(0, 1e-3))
def test_every_metrics_interval_excludes_no_difference_exactly_when_p_is_below_alpha(
        metric, confidence, beta, sandwich, clusters, df, rate, rate_variance):
    name, is_rate = metric
    estimate = clustered_estimate(beta, sandwich, n_clusters=clusters, df=df)
    value, low, high, p = metric_interval(name, estimate, (rate, rate_variance) if is_rate else None,
                                          confidence=confidence, rate=is_rate)
    if value is None or low is None:  # a rate ratio at or below zero has no log interval
        return
    assert low <= value <= high
    assert _agrees(low, high, p, name, confidence), (name, value, low, high, p)


@pytest.mark.parametrize("seed", range(6))
def test_every_test_of_every_check_on_random_small_markets_agrees(seed):
    """Small markets (cells of two or three lines, groups of a few customers) at every confidence level."""
    spec = MarketSpec(n_customers=150, days=4, n_products=10, seed=100 + seed,
                      effects=(PlantedEffect("price_gap", "age_band", "65+", None, 0.05, "test"),
                               PlantedEffect("discount_incidence", "gender", "F", None, 0.6, "test")))
    con = duckdb.connect(":memory:")
    apply_schema(con)
    load_market(con, generate_market(spec))
    confidence = LEVELS[seed % len(LEVELS)]
    config = market_config(audit={"attributes": ["age_band", "gender"], "intersections": [["gender", "region"]],
                                  "segment_by": ["category"]},
                           thresholds={"confidence": confidence, "min_group_customers": 3})
    build_audit_lines(con, config, period_start=spec.start, period_end=spec.end, filters={})
    coding = code_audit_lines(con, config)
    checked = 0
    for check in DISPARITY:
        if check.name == "dearer_price":  # runs on data without list prices; this market has them
            continue
        for test in disparity.run_disparity(con, check.name, config, coding):
            for figures in ((test.ci_low, test.ci_high, test.p_value), (test.adjusted or (None,) * 4)[1:]):
                low, high, p = figures
                if low is None or p is None:
                    continue
                assert _agrees(low, high, p, test.metric, confidence), (check.name, test.group, figures)
                checked += 1
    assert checked > 100
    con.close()


def test_no_flagged_finding_has_an_interval_that_contains_no_difference():
    """Judged with the run's FDR: a test can have q below fdr while its interval, at the run's confidence,
    still contains no difference (p just above alpha); it is then not flagged."""
    spec = MarketSpec(n_customers=400, days=7, n_products=20, seed=3,
                      effects=(PlantedEffect("discount_incidence", "gender", "F", None, 0.5, "test"),))
    con = duckdb.connect(":memory:")
    apply_schema(con)
    load_market(con, generate_market(spec))
    config = market_config(audit={"attributes": ["gender", "age_band"], "intersections": [], "segment_by": []},
                           thresholds={"fdr": 0.2, "min_group_customers": 5})
    build_audit_lines(con, config, period_start=spec.start, period_end=spec.end, filters={})
    coding = code_audit_lines(con, config)
    tests = [t for c in DISPARITY if c.name != "dearer_price"
             for t in disparity.run_disparity(con, c.name, config, coding)]
    findings = judge(tests, config)
    flagged = [f for f in findings if f.outcome == "flagged"]
    assert flagged
    for finding in flagged:
        nothing = no_difference(finding.metric)
        assert finding.ci_low > nothing or finding.ci_high < nothing, finding
    con.close()
