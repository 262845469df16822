"""Privacy: small groups are suppressed, and no suppressed size can be recovered by subtracting published
counts, within one comparison or across the linked comparisons of a run (an attribute and its intersections).
"""

from __future__ import annotations

import pytest

from audits.config import parse_config
from audits.disparity import Dimension, RawTest
from audits.judgement import judge
from audits.sample import MarketSpec, generate_market
from tests.audits.conftest import audit_market, market_config

CONFIG = parse_config({"thresholds": {"min_group_customers": 11}})
GENDER = Dimension(dim_id=1, attribute="gender", columns=("gender",), reference=None, segment_column=None)
THRESHOLD = 11


def _test(dimension: Dimension, group: str, n_group: int, n_reference: int) -> RawTest:
    return RawTest(check="price_gap", metric="price_ratio", dimension=dimension, segment_value="", group=group,
                   n_customers_group=n_group, n_customers_reference=n_reference, estimate=1.001, ci_low=0.99,
                   ci_high=1.01, p_value=0.8)


def test_a_small_group_is_suppressed_and_every_other_count_is_rounded():
    # F 500, M 487, X 3: X = reference(F) - M would give X away if exact sizes were shown.
    tests = [_test(GENDER, "F", 500, 490), _test(GENDER, "M", 487, 503), _test(GENDER, "X", 3, 987)]
    found = {f.group: f for f in judge(tests, CONFIG)}
    assert found["X"].suppressed and found["X"].estimate is None and found["X"].n_customers_group is None
    assert found["X"].outcome == "suppressed" and "privacy" in found["X"].reason
    assert [(found[g].n_customers_group, found[g].n_customers_reference) for g in "FM"] == [(500, 490), (490, 500)]
    assert found["M"].estimate is not None  # an estimate over hundreds of customers discloses no one


def test_exact_counts_only_when_the_config_says_so():
    exact = parse_config({"thresholds": {"min_group_customers": 11, "count_rounding": 1}})
    found = {f.group: f for f in judge([_test(GENDER, "F", 503, 487), _test(GENDER, "M", 487, 503)], exact)}
    assert (found["F"].n_customers_group, found["M"].n_customers_group) == (503, 487)


# A market with several intersections, where the 3% of customers with gender X make small intersection
# cells (X & a region: about 11 customers each), some of them suppressed.
LINKED = {"attributes": ["gender", "age_band", "region"], "intersections": [["gender", "region"], ["gender", "age_band"]],
          "segment_by": ["category"], "controls": ["channel"]}


def _attack(result) -> list[tuple[str, int, int]]:
    """The subtraction attack over every published count of a run: for each check, segment and intersection
    A x B, and each value b, a margin count n(B = b) minus the shown counts n(a & b) leaves the suppressed
    cell's count when exactly one a & b is suppressed. Returns (cell, the attacker's value, its uncertainty)
    for each such cell: the uncertainty is the rounding of the counts subtracted (half the base per count)."""
    base = result.method["thresholds"]["count_rounding"]
    found = []
    by = {}
    for f in result.findings:
        if f.count is None:
            by[(f.check, tuple(sorted((f.segment or {}).items())), f.attribute, f.group)] = f
    for (check, segment, attribute, group), margin in list(by.items()):
        if " & " in attribute or margin.suppressed:
            continue
        for combo in LINKED["intersections"]:
            if attribute not in combo:
                continue
            other = next(c for c in combo if c != attribute)
            cells = [f for (c, s, a, g), f in by.items() if (c, s, a) == (check, segment, " & ".join(combo))
                     and g.split(" & ")[combo.index(attribute)] == group]
            hidden = [f for f in cells if f.suppressed]
            if len(hidden) != 1 or not cells:
                continue
            value = margin.n_customers_group - sum(f.n_customers_group for f in cells if not f.suppressed)
            uncertainty = (base // 2) * len(cells)  # each of the margin and the shown counts off by up to base / 2
            found.append((f"{check} {dict(segment)} {hidden[0].group} (by {other})", value, uncertainty))
    return found


@pytest.fixture(scope="module")
def market():
    return generate_market(MarketSpec(n_customers=3_000, days=30, n_products=60, seed=31))


def _recoverable(attacks) -> list:
    """Cells the attacker pins inside 1..threshold-1: the value there and the uncertainty too small to matter."""
    return [a for a in attacks if 0 < a[1] < THRESHOLD and 2 * a[2] < THRESHOLD - 1]


def test_no_suppressed_count_is_recoverable_by_subtraction_over_linked_comparisons(market):
    attacks = _attack(audit_market(market, market_config(audit=LINKED)))
    assert len(attacks) >= 5  # the run has suppressed cells the attack can aim at
    assert _recoverable(attacks) == []


def test_the_attack_recovers_small_cells_from_exact_counts(market):
    """The same attack on exact counts (count_rounding = 1) pins small groups: the test above can fail."""
    exact = market_config(audit=LINKED, thresholds={"count_rounding": 1})
    assert _recoverable(_attack(audit_market(market, exact)))
