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

from audits import disparity
from audits.adjusted import FixedEffectsTest, fixed_effects_contrasts
from audits.runner import build_audit_lines
from audits.sample import NO_EFFECTS, MarketSpec, PlantedEffect, generate_market
from audits.stats import benjamini_hochberg, within_cell_contrast
from audits.warehouse import apply_schema
from tests.audits.conftest import load_market, market_config

pytestmark = pytest.mark.slow  # statsmodels fits thousands of dummies: about 15 s
TOLERANCE = 1e-8
SPEC = MarketSpec(n_customers=600, days=14, n_products=30, seed=5,
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
    tests = disparity.run_disparity(con, "price_gap", config)
    frame = con.execute("select * from measurements").df()
    yield con, tests, frame
    con.close()


def cluster_fit(frame: pd.DataFrame, formula: str):
    groups = pd.factorize(frame["customer_id"])[0]
    fit = smf.ols(formula, data=frame).fit(cov_type="cluster", cov_kwds={"groups": groups})
    n, k = len(frame), fit.df_model + 1
    return fit.params["D"], fit.bse["D"] * np.sqrt((n - k) / (n - 1))


@pytest.mark.parametrize("group", ["18-24", "65+"])
def test_within_cell_contrast_matches_ols_with_cell_dummies_clustered_by_customer(measured, group):
    _, tests, frame = measured
    test = next(t for t in tests if t.group == group)
    frame = frame.assign(D=(frame["group_value"] == group).astype(float))
    # statsmodels' sample: the cells where both sides bought (others carry no information about D)
    mixed = frame.groupby("cell_key")["D"].transform(lambda d: 0 < d.mean() < 1)
    beta, se = cluster_fit(frame[mixed], "y ~ D + C(cell_key)")
    plain = within_cell_contrast(test.sums, leverage_adjusted=False)
    assert plain.beta == pytest.approx(beta, rel=TOLERANCE)
    assert plain.se == pytest.approx(se, rel=TOLERANCE)
    assert test.difference.beta == pytest.approx(beta, rel=TOLERANCE)
    if group == "65+":  # the planted 4% shows up
        assert np.exp(beta) == pytest.approx(1.04, abs=0.01)


@pytest.mark.parametrize("reference", [None, "25-34"])
def test_regression_adjusted_estimate_matches_ols_with_additive_fixed_effects(measured, reference):
    con, _, frame = measured
    con.execute("create or replace temp table fe_input as select dim_id, segment_value, fe_key, "
                "control_levels as levels, customer_id, group_value, y from measurements")
    estimate = fixed_effects_contrasts(con, [FixedEffectsTest(0, 1, "", "65+", reference)],
                                       leverage_adjusted=False)[0]
    sample = frame if reference is None else frame[frame["group_value"].isin(["65+", reference])]
    sample = sample.assign(D=(sample["group_value"] == "65+").astype(float),
                           channel=sample["control_levels"].str[0], band=sample["control_levels"].str[1])
    sample = sample[sample.groupby("fe_key")["y"].transform("size") > 1]  # single-line product-days
    beta, se = cluster_fit(sample, "y ~ D + C(channel) + C(band) + C(fe_key)")
    assert estimate.beta == pytest.approx(beta, rel=TOLERANCE)
    assert estimate.se == pytest.approx(se, rel=TOLERANCE)


def test_intersection_excess_matches_ols_with_component_dummies_and_an_interaction():
    market = generate_market(MarketSpec(n_customers=500, days=10, n_products=20, seed=9, effects=NO_EFFECTS))
    con = duckdb.connect(":memory:")
    apply_schema(con)
    load_market(con, market)
    config = market_config(audit={"attributes": [], "intersections": [["gender", "age_band"]], "segment_by": []})
    build_audit_lines(con, config, period_start=market.spec.start, period_end=market.spec.end, filters={})
    disparity.run_disparity(con, "price_gap", config)
    frame = con.execute("select * from measurements").df()
    con.execute("create or replace temp table fe_input as select dim_id, segment_value, cell_key as fe_key, "
                "group_parts as levels, customer_id, group_value, y from measurements")
    estimate = fixed_effects_contrasts(con, [FixedEffectsTest(0, 1, "", "F & 35-44", None)],
                                       leverage_adjusted=False)[0]
    con.close()
    frame = frame.assign(D=(frame["group_value"] == "F & 35-44").astype(float),
                         gender=frame["group_parts"].str[0], age=frame["group_parts"].str[1])
    frame = frame[frame.groupby("cell_key")["y"].transform("size") > 1]
    beta, se = cluster_fit(frame, "y ~ D + C(gender) + C(age) + C(cell_key)")
    assert estimate.beta == pytest.approx(beta, rel=TOLERANCE)
    assert estimate.se == pytest.approx(se, rel=TOLERANCE)


def test_benjamini_hochberg_matches_statsmodels():
    p_values = np.random.default_rng(3).uniform(size=200) ** 3
    expected = multipletests(p_values, alpha=0.05, method="fdr_bh")[1]
    assert benjamini_hochberg(list(p_values)) == pytest.approx(list(expected), rel=1e-12)
