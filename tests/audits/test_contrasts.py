"""Properties of the disparity engine (audits/contrasts.py) that hold whatever the data.

- A segment column that is not nested in the cells (region, a customer attribute) is compared within
  cells x segment value: each segment's figures equal those of an audit filtered to that segment.
- Pass 2's sums do not depend on the order the lines arrive in or on how customers are partitioned, nor
  on how many threads walk the partitions.
- A second segment column nested in the cells gets a pass of its own and changes nothing else.
  (Each model kind's figures against statsmodels: tests/audits/test_stats_statsmodels.py.)
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from audits import contrasts, disparity
from audits.lines import build_audit_lines
from audits.runner import code_audit_lines
from tests.audits.conftest import SMALL_SPEC, market_config

SPEC = SMALL_SPEC


def _tests(con, config, filters=None):
    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters=filters or {})
    return disparity.run_disparity(con, "price_gap", config, code_audit_lines(con, config))


def test_a_segment_not_nested_in_cells_equals_an_audit_filtered_to_it(con):
    audit = {"attributes": ["gender"], "intersections": [], "controls": ["channel"]}
    segmented = _tests(con, market_config(audit={**audit, "segment_by": ["region"]}))
    assert code_audit_lines(con, market_config(audit={**audit, "segment_by": ["region"]})) \
        .segments["region"].cell_key != "xi"  # region is a customer attribute: not nested
    by_region = {(t.segment_value, t.group): t for t in segmented if t.dimension.segment_column == "region"}
    regions = sorted({region for region, _ in by_region})[:2]
    assert regions
    for region in regions:
        for t in _tests(con, market_config(audit={**audit, "segment_by": []}), filters={"region": region}):
            within = by_region[(region, t.group)]
            assert (within.n_customers_group, within.n_customers_reference) == \
                (t.n_customers_group, t.n_customers_reference)
            for a, b in ((within.estimate, t.estimate), (within.ci_low, t.ci_low), (within.p_value, t.p_value)):
                assert a == pytest.approx(b, rel=1e-10)


def test_pass_two_sums_do_not_depend_on_line_order_or_partitions(con):
    config = market_config(audit={"attributes": ["gender", "age_band"], "intersections": [["gender", "age_band"]],
                                  "segment_by": ["category"], "controls": ["channel"]})
    captured = {}

    def capture(con, relation, state, partitions):
        captured["whole"] = contrasts.in_process(con, relation, state, partitions)
        lines = con.execute(f"select {', '.join(state.columns())} from {relation}").fetchnumpy()
        shuffled = np.random.default_rng(0).permutation(len(lines["y"]))
        halves = [shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2:]]
        by_customer = [np.isin(lines["ci"], np.unique(lines["ci"][half])) for half in halves]
        by_customer[1] &= ~by_customer[0]  # two disjoint sets of customers, lines in random order
        parts: dict = {}
        for mask in by_customer:
            order = shuffled[mask[shuffled]]
            contrasts.add_sums(parts, contrasts.partition_sums(state, {k: v[order] for k, v in lines.items()}))
        captured["parts"] = parts
        return captured["whole"]

    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
    disparity.run_disparity(con, "price_gap", config, code_audit_lines(con, config), capture)
    whole, parts = captured["whole"], captured["parts"]
    assert whole.keys() == parts.keys() and whole
    for name in whole:
        np.testing.assert_allclose(parts[name], whole[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_pass_two_in_worker_threads_gives_one_threads_sums_bit_for_bit(con, monkeypatch):
    """With two of DuckDB's threads allowed, pass 2 walks partitions in worker threads; their sums are
    added in partition order, so they equal one thread's exactly (and the threads really ran)."""
    config = market_config(audit={"attributes": ["gender", "age_band"], "segment_by": ["category"]})
    monkeypatch.setattr(contrasts, "LINES_PER_PARTITION", 500)
    captured: dict[int, dict] = {}
    walked_in: set[str] = set()
    original = contrasts.partition_sums

    def recorded(state, lines):
        walked_in.add(threading.current_thread().name)
        return original(state, lines)

    def both(con, relation, state, partitions):
        assert partitions > 4
        before = con.execute("select current_setting('threads')").fetchone()[0]
        for threads in (1, 2):
            con.execute(f"set threads = {threads}")
            captured[threads] = contrasts.in_process(con, relation, state, partitions)
        con.execute(f"set threads = {int(before)}")
        return captured[1]

    monkeypatch.setattr(contrasts, "partition_sums", recorded)
    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
    disparity.run_disparity(con, "price_gap", config, code_audit_lines(con, config), both)
    assert captured[1].keys() == captured[2].keys() and captured[1]
    for name in captured[1]:
        np.testing.assert_array_equal(captured[2][name], captured[1][name], err_msg=name)
    assert any(name.startswith("pass2") for name in walked_in) and threading.main_thread().name in walked_in


def test_a_second_nested_segment_column_gets_a_pass_of_its_own_and_changes_nothing_else(con, monkeypatch):
    """With two segment columns nested in the cells (category, and currency, constant within product x day
    x currency), the first shares the main pass and the second gets a pass of its own: the overall and
    per-category tests equal those audited with category alone, and the market has one currency, so each
    test within it equals the overall one."""
    audit = {"attributes": ["gender", "age_band"], "intersections": [["gender", "age_band"]], "controls": ["channel"]}
    passes: list[tuple[str, ...]] = []
    original = contrasts.fit_pass

    def counted(*args, **kwargs):
        passes.append(tuple(column for column, _, _ in kwargs["segments"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(contrasts, "fit_pass", counted)

    def tests(segment_by):
        config = market_config(audit={**audit, "segment_by": segment_by})
        build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
        found = disparity.run_disparity(con, "price_gap", config, code_audit_lines(con, config))
        return {(t.dimension.columns, t.dimension.segment_column, t.segment_value, t.group): t for t in found}

    alone = tests(["category"])
    passes.clear()
    both = tests(["category", "currency"])
    assert passes == [("category",), ("currency",)]
    within_currency = {key: t for key, t in both.items() if key[1] == "currency"}
    assert {t.segment_value for t in within_currency.values()} == {"EUR"}
    assert alone and alone.keys() <= both.keys()
    pairs = [(a, both[key]) for key, a in alone.items()]
    pairs += [(both[(key[0], None, "", key[3])], t) for key, t in within_currency.items()]
    for a, b in pairs:
        assert (a.n_customers_group, a.n_customers_reference) == (b.n_customers_group, b.n_customers_reference)
        for x, y in ((a.estimate, b.estimate), (a.ci_low, b.ci_low), (a.p_value, b.p_value)):
            assert x == y if x is None or y is None else x == pytest.approx(y, rel=1e-10, abs=1e-14)


def test_many_partitions_of_customers_give_what_one_gives(con, monkeypatch):
    """Pass 2 over many partitions of customers (streamed from DuckDB one range at a time) gives the tests
    one partition gives, the secondary estimates included."""
    config = market_config(audit={"attributes": ["gender", "age_band"], "intersections": [["gender", "age_band"]],
                                  "segment_by": ["category"], "controls": ["channel"]})
    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
    coding = code_audit_lines(con, config)
    partitions: list[int] = []
    original = contrasts.in_process

    def counted(con, relation, state, n_partitions):
        partitions.append(n_partitions)
        return original(con, relation, state, n_partitions)

    for check in ("price_gap", "discount_incidence"):
        partitions.clear()
        one = disparity.run_disparity(con, check, config, coding, counted, is_candidate=lambda test: True)
        assert set(partitions) == {1}
        partitions.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(contrasts, "LINES_PER_PARTITION", 700)
            many = disparity.run_disparity(con, check, config, coding, counted, is_candidate=lambda test: True)
        assert min(partitions) > 5
        assert len(one) == len(many) and one
        assert any(t.excess is not None for t in one)
        assert check != "price_gap" or any(t.adjusted is not None for t in one)
        for a, b in zip(one, many, strict=True):
            assert (a.dimension, a.segment_value, a.group, a.n_customers_group, a.n_customers_reference) == \
                (b.dimension, b.segment_value, b.group, b.n_customers_group, b.n_customers_reference)
            assert (a.adjusted is None, a.excess is None) == (b.adjusted is None, b.excess is None)
            pairs = [(a.estimate, b.estimate), (a.ci_low, b.ci_low), (a.p_value, b.p_value)]
            pairs += list(zip(a.adjusted or (), b.adjusted or (), strict=True))
            if a.excess is not None:
                pairs += [(getattr(a.excess, f), getattr(b.excess, f)) for f in ("beta", "se", "p_value")]
            for x, y in pairs:
                assert x == y if x is None or y is None else x == pytest.approx(y, rel=1e-10, abs=1e-14)


def test_pass_one_sums_pairs_by_sorting_as_in_place_in_arrays(con, monkeypatch):
    """Pass 1 sums a wide line set by sorting its lines' (unit, code) pairs instead of in units x codes arrays
    (contrast_fit.DENSE_PER_LINE): the same pairs and sums, to the bit in one scan, and to rounding over
    several scans (each pair's sums are added scan by scan)."""
    from audits import contrast_fit

    config = market_config(audit={"attributes": ["gender", "age_band"], "intersections": [["gender", "age_band"]],
                                  "segment_by": ["category"], "controls": ["channel"]})
    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
    coding = code_audit_lines(con, config)
    counts, tests, lines = {}, {}, []
    for way, per_line, scan in (("arrays", 10**9, 2_000_000), ("sorted", 0, 2_000_000), ("sorted, scans", 0, 700)):
        monkeypatch.setattr(contrast_fit, "DENSE_PER_LINE", per_line)
        monkeypatch.setattr(contrasts, "LINES_PER_SCAN", scan)

        def kept(con, relation, state, partitions, way=way):
            counts.setdefault(way, []).append(state.counts)
            lines.append(con.execute(f"select count(*) from {relation}").fetchone()[0])
            return contrasts.in_process(con, relation, state, partitions)

        tests[way] = disparity.run_disparity(con, "price_gap", config, coding, kept, is_candidate=lambda t: True)
    assert max(lines) > 2 * 700  # the last way really reads its lines in several scans
    assert any(t.estimate is not None for t in tests["arrays"])
    for way, exact in (("sorted", True), ("sorted, scans", False)):
        for dense, other in zip(counts["arrays"], counts[way], strict=True):
            assert dense.keys() == other.keys() and dense
            for key in dense:
                a, b = dense[key], other[key]
                np.testing.assert_array_equal(b.unit, a.unit)
                np.testing.assert_array_equal(b.code, a.code)
                np.testing.assert_array_equal(b.n, a.n)
                if exact:
                    np.testing.assert_array_equal(b.sy, a.sy)
                else:
                    np.testing.assert_allclose(b.sy, a.sy, rtol=1e-12)
        check = (lambda x, y: x == y) if exact else (lambda x, y: x == pytest.approx(y, rel=1e-9))
        assert all(check(b.estimate, a.estimate) and check(b.p_value, a.p_value)
                   for a, b in zip(tests["arrays"], tests[way], strict=True) if a.estimate is not None)


def test_compiled_loops_have_one_signature_which_compile_kernels_builds(con):
    """Every model kind (contrast with rates, adjusted, excess) calls the compiled loops with the same
    argument types as `compile_kernels` (the bench compiles them before timing): no audit compiles again."""
    from audits import line_sums

    line_sums.compile_kernels()
    config = market_config(audit={"attributes": ["gender", "age_band"], "intersections": [["gender", "age_band"]],
                                  "segment_by": ["category"], "controls": ["channel"]})
    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
    coding = code_audit_lines(con, config)
    for check in ("price_gap", "discount_incidence"):
        tests = disparity.run_disparity(con, check, config, coding, is_candidate=lambda test: True)
        assert any(t.adjusted is not None for t in tests) or check != "price_gap"
        assert any(t.excess is not None for t in tests)
    for loop in (line_sums.add_cluster_scores, line_sums.add_unit_counts, line_sums.add_pair_slot_sums,
                 line_sums.add_pair_slot_products, line_sums.add_slot_products):
        assert len(loop.signatures) == 1, loop


def test_compiled_loops_do_not_need_a_writable_cache_folder(monkeypatch):
    """Where numba finds no folder to cache compiled code in, the loops are compiled in each process
    instead of the import failing."""
    from numba import njit
    from numba.core import caching

    from audits import line_sums

    def twice(x):
        return 2 * x

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    with pytest.raises(RuntimeError, match="cannot cache"):  # what plain njit(cache=True) does then
        njit(cache=True)(twice)
    assert line_sums._compiled(twice)(21) == 42


def test_secondary_estimates_do_not_depend_on_which_others_are_asked_for(con):
    """The adjusted and excess models compute only the (segment value, group) tests asked for: a test's
    figures are the same whether it is asked for alone or with every other test."""
    config = market_config(audit={"attributes": ["gender", "age_band"], "intersections": [["gender", "age_band"]],
                                  "segment_by": ["category"], "controls": ["channel"]})
    build_audit_lines(con, config, period_start=SPEC.start, period_end=SPEC.end, filters={})
    coding = code_audit_lines(con, config)

    def key(t):
        return (t.dimension.columns, t.segment_value, t.group)

    everything = {key(t): t for t in disparity.run_disparity(con, "price_gap", config, coding,
                                                             is_candidate=lambda test: True)}
    segment = sorted({t.segment_value for t in everything.values() if t.segment_value})[1]
    asked = {k for k, t in everything.items() if t.segment_value == segment and t.estimate is not None}
    some = {key(t): t for t in disparity.run_disparity(con, "price_gap", config, coding,
                                                       is_candidate=lambda test: key(test) in asked)}
    assert some.keys() == everything.keys() and asked
    checked = 0
    for k, t in some.items():
        if k not in asked:
            assert t.adjusted is None and t.excess is None
            continue
        full = everything[k]
        assert (t.adjusted is None) == (full.adjusted is None) and (t.excess is None) == (full.excess is None)
        if t.adjusted is not None and t.adjusted[0] is not None:
            assert t.adjusted == pytest.approx(full.adjusted, rel=1e-9)
            checked += 1
        if t.excess is not None:
            assert (t.excess.beta, t.excess.se) == pytest.approx((full.excess.beta, full.excess.se), rel=1e-9)
            checked += 1
    assert checked >= 5
