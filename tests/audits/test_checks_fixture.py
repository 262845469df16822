"""Every check of the catalogue against a fixture of a dozen lines whose right answers are worked out by hand.

The fixture: one day, one channel, four customers. c1 and c2 are women (F), c3 and c4 men (M); c1 and
c3 joined years ago (existing), c2 and c4 this summer (new).

    product  customer  list   paid   qty  line_total  discount_amount
    P1       c1        10.50  10.50  1    10.50       0
    P1       c3        10.00  10.00  1    10.00       0
    P1       c4        10.00  10.00  1    10.00       0
    P2       c2        22.00  22.00  1    22.00       0
    P2       c3        20.00  20.00  1    20.00       0
    Q1       c1        10.00   8.00  1     8.00       2.00
    Q1       c2        10.00  10.00  1    10.00       0
    Q1       c3        10.00   9.00  1     9.00       1.00
    Q1       c4        10.00   7.50  1     7.50       2.50
    Q2       c1         5.00   5.00  1     5.00       0
    Q2       c3         5.00   4.00  1     4.00       1.00
    P3       c3         5.00   5.00  3    15.02       0      <- line total off by 2 cents
    Q3       c4        10.00   5.00  1     5.00       4.00   <- 50% off (policy 40%); discount 1 short
    Q4       c2         2.49   1.49  1     1.49       1.00   <- 40.2% off, but only by the cent rounding
"""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import pytest
from scipy import stats

from audits.config import parse_config
from audits.findings import AuditResult
from audits.sqlfiles import Fragment, load_sql
from tests.audits.conftest import audit

DAY = dt.date(2026, 8, 3)
LINES = [
    ("P1", "c1", "10.50", "10.50", 1, "10.50", "0"),
    ("P1", "c3", "10.00", "10.00", 1, "10.00", "0"),
    ("P1", "c4", "10.00", "10.00", 1, "10.00", "0"),
    ("P2", "c2", "22.00", "22.00", 1, "22.00", "0"),
    ("P2", "c3", "20.00", "20.00", 1, "20.00", "0"),
    ("Q1", "c1", "10.00", "8.00", 1, "8.00", "2.00"),
    ("Q1", "c2", "10.00", "10.00", 1, "10.00", "0"),
    ("Q1", "c3", "10.00", "9.00", 1, "9.00", "1.00"),
    ("Q1", "c4", "10.00", "7.50", 1, "7.50", "2.50"),
    ("Q2", "c1", "5.00", "5.00", 1, "5.00", "0"),
    ("Q2", "c3", "5.00", "4.00", 1, "4.00", "1.00"),
    ("P3", "c3", "5.00", "5.00", 3, "15.02", "0"),
    ("Q3", "c4", "10.00", "5.00", 1, "5.00", "4.00"),
    ("Q4", "c2", "2.49", "1.49", 1, "1.49", "1.00"),
]
CUSTOMERS = [("c1", "F", dt.date(2020, 1, 1)), ("c2", "F", dt.date(2026, 7, 1)),
             ("c3", "M", dt.date(2019, 5, 5)), ("c4", "M", dt.date(2026, 6, 1))]
ln = math.log


@pytest.fixture(scope="module")
def result() -> AuditResult:
    con = duckdb.connect(":memory:")
    from audits.warehouse import add_attribute_columns, apply_schema

    apply_schema(con)
    add_attribute_columns(con, "customers", ["gender"])
    for i, (product, customer, list_price, paid, qty, total, discount) in enumerate(LINES):
        con.execute(
            "insert into transactions (transaction_id, source, timestamp, customer_id, product_id, quantity, "
            "list_price, unit_price, category, channel, discount_amount, line_total, currency, batch_id) "
            "values (?, 'shop', ?, ?, ?, ?, ?, ?, 'all', 'online', ?, ?, 'EUR', 1)",
            [f"L{i}", dt.datetime.combine(DAY, dt.time(12)), customer, product, qty, list_price, paid, discount,
             total])
    con.executemany("insert into customers (customer_id, gender, customer_since, batch_id) values (?, ?, ?, 1)",
                    CUSTOMERS)
    config = parse_config({"audit": {"attributes": ["gender"], "controls": ["channel"]},
                           "thresholds": {"min_group_customers": 1, "count_rounding": 1}})  # hand-counted sizes
    yield audit(con, config, start=DAY, end=DAY)
    con.close()


def one(result: AuditResult, check: str, **match):
    found = [f for f in result.findings if f.check == check and all(getattr(f, k) == v for k, v in match.items())]
    assert len(found) == 1, found
    return found[0]


def within_cell(cells: list[tuple[list[float], list[float]]]) -> float:
    """The within-cell estimate by hand: sum of w (mean1 - mean0) / sum of w, w = n1 n0 / (n1 + n0)."""
    weights = [len(g) * len(r) / (len(g) + len(r)) for g, r in cells]
    differences = [sum(g) / len(g) - sum(r) / len(r) for g, r in cells]
    return sum(w * d for w, d in zip(weights, differences, strict=True)) / sum(weights)


def test_price_gap_is_the_weighted_mean_of_within_cell_log_differences(result):
    # F against all others (M), cell by cell; P3, Q3 and Q4 have one side only and do not count
    beta = within_cell([
        ([ln(10.5)], [ln(10), ln(10)]),                # P1: w = 2/3
        ([ln(22)], [ln(20)]),                          # P2: w = 1/2
        ([ln(8), ln(10)], [ln(9), ln(7.5)]),           # Q1: w = 1
        ([ln(5)], [ln(4)]),                            # Q2: w = 1/2
    ])
    finding = one(result, "price_gap", group="F")
    assert finding.estimate == pytest.approx(math.exp(beta), rel=1e-12)
    assert finding.ci_low < finding.estimate < finding.ci_high
    assert finding.n_customers_group == 2 and finding.n_customers_reference == 2
    # M against all others is the same comparison seen from the other side
    assert one(result, "price_gap", group="M").estimate == pytest.approx(math.exp(-beta), rel=1e-12)


def test_coverage_is_the_share_of_each_sides_lines_and_customers_with_a_comparable_line(result):
    # F's six lines: all but Q4 share a cell with a man (5 of 6); both women have such a line.
    # M's eight lines: all but P3 and Q3 (6 of 8); both men have such a line.
    finding = one(result, "price_gap", group="F")
    assert finding.coverage == {"group_lines": round(5 / 6, 2), "reference_lines": round(6 / 8, 2),
                                "group_customers": 1.0, "reference_customers": 1.0}
    assert not finding.low_coverage


def test_price_gap_standard_error_is_the_clustered_sandwich_computed_line_by_line(result):
    cells = {"P1": [(1, "c1", ln(10.5)), (0, "c3", ln(10)), (0, "c4", ln(10))],
             "P2": [(1, "c2", ln(22)), (0, "c3", ln(20))],
             "Q1": [(1, "c1", ln(8)), (1, "c2", ln(10)), (0, "c3", ln(9)), (0, "c4", ln(7.5))],
             "Q2": [(1, "c1", ln(5)), (0, "c3", ln(4))]}
    rows = []  # (customer, x demeaned in its cell, y demeaned in its cell, leverage scale sqrt(n/(n-1)))
    for lines in cells.values():
        n = len(lines)
        x_bar, y_bar = sum(x for x, _, _ in lines) / n, sum(y for _, _, y in lines) / n
        rows += [(c, x - x_bar, y - y_bar, math.sqrt(n / (n - 1))) for x, c, y in lines]
    sxx = sum(x * x for _, x, _, _ in rows)
    beta = sum(x * y for _, x, y, _ in rows) / sxx
    scores = dict.fromkeys(("c1", "c2", "c3", "c4"), 0.0)
    for c, x, y, k in rows:
        scores[c] += k * x * (y - beta * x)
    meat_f, meat_m = scores["c1"] ** 2 + scores["c2"] ** 2, scores["c3"] ** 2 + scores["c4"] ** 2
    se = math.sqrt(4 / 3 * (meat_f + meat_m) / sxx**2)  # G/(G-1) with G = 4 customers
    df = min(max((meat_f + meat_m) ** 2 / (meat_f**2 / 1 + meat_m**2 / 1), 1), 2)  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * se
    finding = one(result, "price_gap", group="F")
    assert (finding.ci_low, finding.ci_high) == (pytest.approx(math.exp(beta - half), rel=1e-9),
                                                 pytest.approx(math.exp(beta + half), rel=1e-9))
    assert finding.p_value == pytest.approx(2 * stats.t.sf(abs(beta) / se, df), rel=1e-9)


def test_discount_incidence_is_the_adverse_impact_ratio_on_the_cells_weights(result):
    # discounted lines: Q1 c1, c3, c4; Q2 c3 (Q3, Q4 have one side only). F against M, cell by cell:
    beta = within_cell([([0], [0, 0]), ([0], [0]), ([1, 0], [1, 1]), ([0], [1])])
    # the reference's rate on the same weights: each reference line weighs n1 / n of its cell
    weights = [1 / 3, 1 / 3, 1 / 2, 1 / 2, 1 / 2, 1 / 2]  # P1 c3, c4; P2 c3; Q1 c3, c4; Q2 c3
    discounted = [0, 0, 0, 1, 1, 1]
    reference_rate = sum(w * d for w, d in zip(weights, discounted, strict=True)) / sum(weights)
    assert reference_rate == pytest.approx(9 / 16)
    finding = one(result, "discount_incidence", group="F")
    assert finding.metric == "adverse_impact_ratio"
    assert finding.estimate == pytest.approx((reference_rate + beta) / reference_rate, rel=1e-12)


def test_discount_depth_compares_discount_percentages_among_discounted_lines(result):
    # only Q1 has discounted lines on both sides: F {c1: 20%} against M {c3: 10%, c4: 25%}
    finding = one(result, "discount_depth", group="F")
    assert finding.estimate == pytest.approx(0.20 - (0.10 + 0.25) / 2, abs=1e-12)
    assert finding.metric == "discount_pct_diff"


def test_loyalty_penalty_compares_existing_with_new_customers(result):
    beta = within_cell([
        ([ln(10.5), ln(10)], [ln(10)]),                # P1: existing c1, c3 | new c4
        ([ln(20)], [ln(22)]),                          # P2: existing c3 | new c2
        ([ln(8), ln(9)], [ln(10), ln(7.5)]),           # Q1
    ])                                                 # Q2 has no new customer
    finding = one(result, "loyalty_penalty", group="existing")
    assert finding.reference == "new"
    assert finding.estimate == pytest.approx(math.exp(beta), rel=1e-12)


def test_price_arithmetic_counts_amounts_that_do_not_add_up(result):
    totals = one(result, "price_arithmetic", metric="line_total_mismatch")
    assert (totals.count, totals.estimate) == (1, pytest.approx(1 / 14))  # P3: 3 x 5.00 is not 15.02
    discounts = one(result, "price_arithmetic", metric="discount_mismatch")
    assert discounts.count == 1  # Q3: (10 - 5) x 1 is not 4.00; Q4's 1.00 is exact
    assert "1 line out of 14" in discounts.summary


def test_price_dispersion_counts_lines_off_their_cells_list_price(result):
    finding = one(result, "price_dispersion", metric="list_price_dispersion")
    assert finding.count == 2  # P1: 10.50 against 10.00 twice; P2: 22 against 20 (a tie counts once)
    assert finding.estimate == pytest.approx(2 / 14)
    assert finding.details["amount"] == pytest.approx(0.5 + 2.0)  # P1 0.50 off; P2's tie: 20 taken, 22 is 2 off
    assert finding.details["currency"] == "EUR"  # the lines' one currency: the amount is in it
    assert {row["value"]: row["lines"] for row in finding.details["top"]["product_id"]} == {"P1": 1, "P2": 1}
    worst = finding.details["cells"][0]  # the widest spread: P2, 22 / 20
    assert (worst["product_id"], worst["low"], worst["high"], worst["lines"]) == ("P2", 20.0, 22.0, 2)
    assert worst["spread"] == pytest.approx(1.1)


def test_paid_price_dispersion_is_reported_not_judged_when_list_prices_exist(result):
    finding = one(result, "price_dispersion", metric="paid_price_dispersion")
    # cells with more than one paid price: P1 (10.50, 10, 10), P2 (22, 20), Q1 (8, 10, 9, 7.50), Q2 (5, 4)
    assert finding.count == 3 + 2 + 4 + 2
    assert finding.details["amount"] == pytest.approx(0.5 + 2 + (0.5 + 2.5 + 1.5) + 1)  # above each cell's lowest
    assert (finding.outcome, finding.severity) == ("not_assessed", "low") and "discounts" in finding.reason
    assert "breach_rows" not in finding.details  # not judged: no lines in breaches.csv
    assert "top" not in finding.details  # nor lists of where to look; its cells show how far prices differ
    worst = finding.details["cells"][0]  # the widest spread: Q1, 10 / 7.50
    assert (worst["product_id"], worst["low"], worst["high"], worst["lines"], worst["prices"]) == ("Q1", 7.5, 10.0, 4, 4)
    assert [c["product_id"] for c in finding.details["cells"]] == ["Q1", "Q2", "P2", "P1"]


def test_breaches_list_transaction_ids_and_amounts_never_customers(result):
    table = result.breaches
    assert "customer_id" not in table.column_names
    rows = table.to_pylist()
    assert {(r["check"], r["rule"]) for r in rows} == {
        ("price_arithmetic", "line_total_mismatch"), ("price_arithmetic", "discount_mismatch"),
        ("price_dispersion", "list_price_dispersion"), ("discount_policy", "discount_above_policy")}
    assert len(rows) == 1 + 1 + 2 + 1 and all(r["transaction_id"] and r["amount"] >= 0 for r in rows)


def test_discount_policy_counts_discounts_beyond_the_maximum_not_cent_rounding(result):
    finding = one(result, "discount_policy")
    assert finding.count == 1  # Q3 at 50% off; Q4 is 40% off 2.49 = 1.494, rounded to 1.49
    assert finding.severity == "high"


def test_every_check_of_the_catalogue_ran(result):
    assert {c.check: c.status for c in result.checks} == {
        **dict.fromkeys(["price_arithmetic", "price_dispersion", "discount_policy", "price_gap",
                         "discount_incidence", "discount_depth", "loyalty_penalty"], "ok"),
        "dearer_price": "skipped"}  # the fixture has list prices: price_gap answers the same question


def test_groups_of_two_customers_are_never_flagged_however_large_the_gap(result):
    assert not [f for f in result.findings if f.is_flagged and f.count is None]
    judged = [f for f in result.findings if f.count is None and f.estimate is not None]
    assert judged and all(f.outcome == "not_assessed" and "too few to judge" in f.summary for f in judged)


def test_within_cell_helper_matches_numpy_least_squares():
    # the helper above is the FE regression by Frisch-Waugh-Lovell: check it once against lstsq
    cells = [([1.0, 2.0], [0.5]), ([3.0], [1.0, 4.0, 2.0])]
    y, x, dummies = [], [], []
    for c, (g, r) in enumerate(cells):
        for value, in_group in [(v, 1) for v in g] + [(v, 0) for v in r]:
            y.append(value)
            x.append(in_group)
            dummies.append([1.0 if c == j else 0.0 for j in range(len(cells))])
    design = np.column_stack([x, dummies])
    coefficients = np.linalg.lstsq(design, np.array(y), rcond=None)[0]
    assert within_cell(cells) == pytest.approx(coefficients[0], rel=1e-12)


@pytest.mark.parametrize("max_rows", [1, 2, 3, 4, 5, 6, 50])
def test_breaches_csv_keeps_the_largest_amounts_ties_broken_by_transaction_id(max_rows):
    """breach_lines joins only the lines at or above the max_rows-th amount: the same rows as sorting all."""
    amounts = {"t5": 3.0, "t1": 3.0, "t9": 5.0, "t2": None, "t7": 1.0, "t3": 3.0}
    con = duckdb.connect()
    con.execute("create temp table audit_lines (transaction_id varchar, product_id varchar, day date, channel varchar, "
                "discount_code varchar, currency varchar, quantity decimal(18,3), list_price decimal(18,4), "
                "unit_price decimal(18,4), line_total decimal(18,4), discount_amount decimal(18,4))")
    con.executemany("insert into audit_lines (transaction_id) values (?)", [[t] for t in amounts])
    con.execute("create temp table breaches as select 'rule' as metric, rowid as line, "
                "[" + ", ".join("null" if a is None else str(a) for a in amounts.values()) + "][rowid + 1] as amount "
                "from audit_lines")
    sql, params = load_sql("audit/breach_lines").prepare({"check": "c", "metric": "rule", "max_rows": max_rows})
    cursor = con.execute(sql, params)
    column = [d[0] for d in cursor.description].index("transaction_id")
    listed = [row[column] for row in cursor.fetchall()]
    everything = sorted(amounts, key=lambda t: (amounts[t] is None, -(amounts[t] or 0), t))
    assert listed == everything[:max_rows]


def test_a_rule_query_ending_in_a_comment_is_summed_and_its_breaches_kept():
    """The check's SQL is wrapped as a subquery; a comment on its last line must not swallow the wrapper."""
    rules = Fragment("select 'r' as metric, 7 as line, true as is_breach, 2.0 as amount, 3.0 as revenue  -- a note")
    con = duckdb.connect()
    assert con.execute(load_sql("audit/breach_summary").render(rules=rules)).fetchall() == [("r", 1, 1, 2.0, 3.0, 3.0)]
    con.execute(load_sql("audit/breaches").render(rules=rules), {"metrics": ["r"]})
    assert con.execute("select metric, line from breaches").fetchall() == [("r", 7)]
