"""The audit's estimators against statsmodels on a generated sample.

statsmodels fits the same regressions with explicit dummies for every fixed effect and
cov_type='cluster' by customer. Its CR1 multiplies the sandwich by G/(G-1) * (N-1)/(N-K); ours by
G/(G-1) only (the fixed effects are absorbed), so its standard error is compared after removing
(N-1)/(N-K). Both sides then agree to rounding: about 1e-12 relative.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

from audits import contrasts, disparity
from audits.contrast_model import LineSet, Model
from audits.disparity import _component_dummies
from audits.lines import build_audit_lines
from audits.runner import code_audit_lines
from audits.sample import NO_EFFECTS, MarketSpec, PlantedEffect, generate_market
from audits.stats import benjamini_hochberg
from audits.warehouse import apply_schema
from tests.audits.conftest import load_market, market_config

TOLERANCE = 1e-8
# Small enough that statsmodels' explicit dummies (one per cell) fit in about a second: the agreement is
# exact (to rounding) at any size, so the sample only has to hold every model kind's cases.
SPEC = MarketSpec(n_customers=250, days=6, n_products=12, seed=5,
                  effects=(PlantedEffect("price_gap", "age_band", "65+", None, 0.04, "test"),))


@pytest.fixture(scope="module")
def measured():
    """The price_gap measurements of a small market, audited by age band with channel and quantity band."""
    market = generate_market(SPEC)
    con = duckdb.connect(":memory:")
    apply_schema(con)
    load_market(con, market)
    config = market_config(audit={"attributes": ["age_band"], "intersections": [], "segment_by": [],
                                  "controls": ["channel", "quantity_band"]})
    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
    coding = code_audit_lines(con, config)
    tests = disparity.run_disparity(con, "price_gap", config, coding, leverage_adjusted=False)
    frame = con.execute("select * from measurements").df()
    yield con, coding, tests, frame
    con.close()


def engine_estimate(con, coding, kind, columns, group, reference=None):
    """One test of one model, fitted by the engine with plain CR1 errors (what statsmodels computes)."""
    group_set = coding.sets[columns]
    code = group_set.code(group)
    if reference is None:
        lineset, tested = LineSet(group_set.key, group_set.n_codes, (code,)), code
    else:
        lineset, tested = LineSet(group_set.key, group_set.n_codes, (0,), pair=(code, group_set.code(reference))), 0
    components = _component_dummies(group_set) if kind == "excess" else None
    state, sums = contrasts.fit_pass(
        con, "measurements", unit_key="xi", fe_key="fi", n_units=coding.n_cells, n_fe=coding.n_fe, segments=[],
        models=[Model(kind, lineset, components=components)],
        controls=tuple((key, levels) for _, key, levels in coding.controls), leverage_adjusted=False)
    return contrasts.results(state, sums)[0][(0, tested)].estimate()


def cluster_fit(frame: pd.DataFrame, formula: str):
    groups = pd.factorize(frame["ci"])[0]
    fit = smf.ols(formula, data=frame).fit(method="qr", cov_type="cluster", cov_kwds={"groups": groups})
    n, k = len(frame), fit.df_model + 1
    return fit.params["D"], fit.bse["D"] * np.sqrt((n - k) / (n - 1))


@pytest.mark.parametrize("group", ["18-24", "65+"])
def test_within_cell_contrast_matches_ols_with_cell_dummies_clustered_by_customer(measured, group):
    _, coding, tests, frame = measured
    test = next(t for t in tests if t.group == group)
    code = coding.sets[("age_band",)].code(group)
    frame = frame.assign(D=(frame["g0"] == code).astype(float))
    # statsmodels' sample: the cells where both sides bought (others carry no information about D)
    mixed = frame.groupby("xi")["D"].transform(lambda d: 0 < d.mean() < 1)
    beta, se = cluster_fit(frame[mixed], "y ~ D + C(xi)")
    assert test.difference.beta == pytest.approx(beta, rel=TOLERANCE)
    assert test.difference.se == pytest.approx(se, rel=TOLERANCE)
    if group == "65+":  # the planted 4% shows up, within three standard errors of a small sample
        assert abs(beta - np.log(1.04)) < 3 * se and beta > 2 * se


@pytest.mark.parametrize("reference", [None, "25-34"])
def test_regression_adjusted_estimate_matches_ols_with_additive_fixed_effects(measured, reference):
    con, coding, _, frame = measured
    estimate = engine_estimate(con, coding, "adjusted", ("age_band",), "65+", reference)
    labels = coding.sets[("age_band",)]
    sample = frame if reference is None else frame[frame["g0"].isin([labels.code("65+"), labels.code(reference)])]
    sample = sample.assign(D=(sample["g0"] == labels.code("65+")).astype(float))
    sample = sample[sample.groupby("fi")["y"].transform("size") > 1]  # single-line product-days
    beta, se = cluster_fit(sample, "y ~ D + C(q0) + C(q1) + C(fi)")
    assert estimate.beta == pytest.approx(beta, rel=TOLERANCE)
    assert estimate.se == pytest.approx(se, rel=TOLERANCE)


def test_intersection_excess_matches_ols_with_component_dummies_and_an_interaction():
    market = generate_market(MarketSpec(n_customers=250, days=6, n_products=12, seed=9, effects=NO_EFFECTS))
    con = duckdb.connect(":memory:")
    apply_schema(con)
    load_market(con, market)
    config = market_config(audit={"attributes": [], "intersections": [["gender", "age_band"]], "segment_by": []})
    build_audit_lines(con, config, period_start=market.spec.start, period_end=market.spec.end, filters={})
    coding = code_audit_lines(con, config)
    disparity.run_disparity(con, "price_gap", config, coding)
    frame = con.execute("select * from measurements").df()
    estimate = engine_estimate(con, coding, "excess", ("gender", "age_band"), "F & 35-44")
    con.close()
    group_set = coding.sets[("gender", "age_band")]
    n_age = group_set.radix[1]
    frame = frame[frame["g0"] >= 0]
    frame = frame.assign(D=(frame["g0"] == group_set.code("F & 35-44")).astype(float),
                         gender=frame["g0"] // n_age, age=frame["g0"] % n_age)
    frame = frame[frame.groupby("xi")["y"].transform("size") > 1]
    beta, se = cluster_fit(frame, "y ~ D + C(gender) + C(age) + C(xi)")
    assert estimate.beta == pytest.approx(beta, rel=TOLERANCE)
    assert estimate.se == pytest.approx(se, rel=TOLERANCE)


def test_benjamini_hochberg_matches_statsmodels():
    p_values = np.random.default_rng(3).uniform(size=200) ** 3
    expected = multipletests(p_values, alpha=0.05, method="fdr_bh")[1]
    assert benjamini_hochberg(list(p_values)) == pytest.approx(list(expected), rel=1e-12)
