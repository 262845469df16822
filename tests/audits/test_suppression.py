"""Privacy: small groups are suppressed, and no suppressed size can be recovered by subtraction."""

from __future__ import annotations

from audits.config import parse_config
from audits.disparity import Dimension, RawTest
from audits.judgement import judge

CONFIG = parse_config({"thresholds": {"min_group_customers": 11}})
GENDER = Dimension(dim_id=1, attribute="gender", columns=("gender",), reference=None, segment_column=None)
REGION = Dimension(dim_id=2, attribute="region", columns=("region",), reference=None, segment_column=None)


def _test(dimension: Dimension, group: str, n_group: int, n_reference: int) -> RawTest:
    return RawTest(check="price_gap", metric="price_ratio", dimension=dimension, segment_value="", group=group, n_customers_group=n_group,
                   n_customers_reference=n_reference, estimate=1.001, ci_low=0.99, ci_high=1.01, p_value=0.8)


def _by_group(findings, attribute):
    return {f.group: f for f in findings if f.attribute == attribute}


def test_a_small_group_is_suppressed_and_its_size_cannot_be_subtracted():
    # F 500, M 480, X 3: X = reference(F) - M would give X away if reference sizes were shown.
    tests = [_test(GENDER, "F", 500, 483), _test(GENDER, "M", 480, 503), _test(GENDER, "X", 3, 980)]
    found = _by_group(judge(tests, CONFIG), "gender")
    assert found["X"].suppressed and found["X"].estimate is None and found["X"].n_customers_group is None
    # complementary: the smallest other group's size is withheld too (3 + 480 >= 11), and no reference size shows
    assert found["M"].n_customers_group is None and not found["M"].suppressed and found["M"].estimate is not None
    assert found["F"].n_customers_group == 500
    assert all(f.n_customers_reference is None for f in found.values())


def test_two_small_groups_hide_each_other_only_when_together_large_enough():
    tests = [_test(REGION, "A", 400, 25), _test(REGION, "B", 12, 413), _test(REGION, "C", 6, 419),
             _test(REGION, "D", 7, 418)]
    found = _by_group(judge(tests, CONFIG), "region")
    assert found["C"].suppressed and found["D"].suppressed  # 6 + 7 = 13 >= 11 and two of them
    assert found["B"].n_customers_group == 12 and found["A"].n_customers_group == 400
    assert all(f.n_customers_reference is None for f in found.values())


def test_comparisons_without_small_groups_show_every_size():
    tests = [_test(GENDER, "F", 500, 480), _test(GENDER, "M", 480, 500)]
    found = _by_group(judge(tests, CONFIG), "gender")
    assert [(f.n_customers_group, f.n_customers_reference) for f in found.values()] == [(500, 480), (480, 500)]
