"""The runner: every check of the catalogue, every planned comparison, failures isolated, reasons stated."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import threading
from html.parser import HTMLParser

import duckdb
import pytest

from audits import disparity
from audits.findings import ALL_CHECKS, AuditResult
from audits.disparity import plan_dimensions
from audits.lines import build_audit_lines
from audits.sample import NO_EFFECTS, MarketSpec, PlantedEffect, generate_market
from audits.sqlfiles import SqlQuery, load_sql
from audits.warehouse import apply_schema
from tests.audits.conftest import SMALL_SPEC, audit, audit_market, load_market, load_tables, market_config

SMALL = MarketSpec(n_customers=1_500, days=21, n_products=40, seed=4, effects=NO_EFFECTS)


@pytest.fixture(scope="module")
def small_market():
    return generate_market(SMALL)


def test_dimensions_cover_every_attribute_intersection_and_segment_column():
    config = market_config(audit={"reference": {"gender": "M"}})
    planned = {(d.attribute, d.reference, d.segment_column) for d in plan_dimensions(config, check="price_gap")}
    assert planned == {
        (a, ref, seg) for seg in (None, "category")
        for a, ref in (("gender", "M"), ("age_band", None), ("region", None), ("gender & age_band", None))}
    loyalty = plan_dimensions(config, check="loyalty_penalty")
    assert [(d.attribute, d.reference, d.segment_column) for d in loyalty] == [
        ("tenure", "new", None), ("tenure", "new", "category")]


def test_every_group_of_every_dimension_and_segment_value_is_tested(small_market):
    config = market_config(audit={"reference": {"gender": "M"}})
    result = audit_market(small_market, config)
    price = [f for f in result.findings if f.check == "price_gap"]
    categories = {"grocery", "personal_care", "apparel", "electronics", "subscriptions"}
    for segment in [None, *({"category": c} for c in sorted(categories))]:
        here = {(f.attribute, f.group, f.reference) for f in price if f.segment == segment}
        assert {("gender", "F", "M"), ("gender", "X", "M")} <= here  # the fixed reference is not tested
        assert ("gender", "M", "M") not in here
        assert {g for a, g, _ in here if a == "age_band"} == {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
        assert len({g for a, g, _ in here if a == "region"}) == 8
        assert all(ref == "all others" for a, _, ref in here if a != "gender")
        assert len({g for a, g, _ in here if a == "gender & age_band"}) >= 16  # small X cells may be empty
    assert {c.check for c in result.checks if c.status == "ok"} == set(ALL_CHECKS) - {"dearer_price"}  # list prices


def test_small_groups_are_suppressed_without_any_figure(small_market):
    result = audit_market(small_market, market_config(thresholds={"min_group_customers": 40}))
    suppressed = [f for f in result.findings if f.suppressed]
    assert suppressed, "X & 18-24 has well under 40 customers"
    for f in suppressed:
        assert (f.estimate, f.ci_low, f.ci_high, f.p_value, f.q_value, f.n_customers_group,
                f.n_customers_reference, f.adjusted_estimate, f.excess_estimate) == (None,) * 9
        assert f.severity == "low" and "fewer than 40 customers" in f.summary
    shown = [f for f in result.findings if f.count is None and not f.suppressed and f.estimate is not None]
    # every size shown is at least the minimum, rounded to tens (tests/audits/test_suppression.py: why)
    assert all(n >= 40 and n % 10 == 0 for f in shown for n in (f.n_customers_group, f.n_customers_reference))
    assert all(f.p_value is not None and f.q_value is not None and f.q_value >= f.p_value for f in shown)


def test_a_failing_check_is_recorded_as_errored_and_the_others_still_run(small_market, monkeypatch, tmp_path):
    def broken_loader(relative: str) -> SqlQuery:
        query = load_sql(relative)
        if relative == "checks/discount_depth":
            return SqlQuery(query.name, query.path, "select no_such_column from coded_lines", (), query.doc)
        return query

    monkeypatch.setattr(disparity, "load_sql", broken_loader)
    result = audit_market(small_market)
    status = {c.check: c for c in result.checks}
    assert status["discount_depth"].status == "errored"
    assert "no_such_column" in status["discount_depth"].reason
    assert all(status[c].status == "ok" for c in ALL_CHECKS if c not in ("discount_depth", "dearer_price"))
    assert not [f for f in result.findings if f.check == "discount_depth"]
    assert [f for f in result.findings if f.check == "discount_incidence"]

    written = json.loads(result.write(tmp_path / "findings.json").read_text())
    assert {c["check"]: c["status"] for c in written["checks"]}["discount_depth"] == "errored"
    assert AuditResult.from_dict(written).checks == result.checks

    from reports.render import render_report

    page = render_report(result, tmp_path).read_text()
    problems = _text_of(page, "problem-checks")
    assert "discount_depth" in problems and "errored" in problems and "no_such_column" in problems


def test_checks_needing_a_list_price_are_skipped_with_the_reason_and_paid_prices_are_checked(small_market):
    con = duckdb.connect(":memory:")
    apply_schema(con)
    load_tables(con, small_market.transactions, small_market.customers)
    con.execute("update transactions set list_price = null, discount_amount = null, line_total = null")
    result = audit(con, market_config(), start=SMALL.start, end=SMALL.end)
    status = {c.check: (c.status, c.reason) for c in result.checks}
    for check in ("discount_policy", "discount_incidence", "discount_depth"):
        assert status[check][0] == "skipped" and status[check][1].startswith("the data has no list price")
    assert status["price_arithmetic"][0] == "skipped" and "line total" in status["price_arithmetic"][1]
    assert status["price_gap"][0] == status["loyalty_penalty"][0] == "ok"
    # without list prices, dispersion is judged on the prices paid, and dearer_price runs
    assert status["price_dispersion"][0] == status["dearer_price"][0] == "ok"
    assert {f.metric for f in result.findings if f.check == "price_dispersion"} == {"paid_price_dispersion"}
    assert not [f for f in result.findings
                if f.check not in ("price_gap", "loyalty_penalty", "price_dispersion", "dearer_price")]


def test_intersections_explained_by_their_components_are_flags_inside_the_components_causes():
    effects = (PlantedEffect("price_gap", "gender", "F", None, 0.05, "every woman pays 5% more"),
               PlantedEffect("price_gap", "age_band", "65+", None, 0.04, "everyone aged 65+ pays 4% more"))
    market = generate_market(MarketSpec(n_customers=3_000, days=30, n_products=60, seed=21, effects=effects))
    result = audit_market(market, market_config(audit={"segment_by": []}))
    price = {(f.attribute, f.group): f for f in result.findings if f.check == "price_gap"}
    assert price[("gender", "F")].is_flagged and price[("age_band", "65+")].is_flagged
    women_65 = price[("gender & age_band", "F & 65+")]
    assert women_65.estimate > 1.05 and women_65.q_value < 1e-6  # every figure is still there
    assert women_65.explained_by == "gender = F; age_band = 65+"
    assert "follows from gender = F and age_band = 65+" in women_65.summary
    for age in ("25-34", "35-44", "45-54"):
        finding = price[("gender & age_band", f"F & {age}")]
        assert finding.q_value < 0.05 and finding.explained_by == "gender = F"
        assert finding.excess_ci_low < 1.01 and finding.excess_estimate < 1.01
    # two planted effects, two causes; every flag in exactly one, the explained intersections in their
    # components' causes (F & 65+: the larger of its two components' gaps, the 5% of women)
    causes = {result_finding(result, c.lead_id).attribute: c for c in result.causes
              if c.check not in ("price_dispersion", "price_arithmetic", "discount_policy")}
    assert set(causes) == {"gender", "age_band"}
    inside = [i for c in result.causes for i in c.finding_ids]
    assert sorted(inside) == sorted(f.id for f in result.flagged)
    assert women_65.id in causes["gender"].finding_ids and "R2 intersection" in causes["gender"].rule
    assert all(price[("gender & age_band", f"F & {age}")].id in causes["gender"].finding_ids
               for age in ("25-34", "35-44", "45-54"))


def result_finding(result, finding_id):
    return next(f for f in result.findings if f.id == finding_id)


def test_an_intersection_treated_unfairly_on_its_own_stays_flagged():
    effects = (PlantedEffect("price_gap", "age_band", "65+", {"gender": "M"}, 0.06, "only men aged 65+"),)
    market = generate_market(MarketSpec(n_customers=3_000, days=30, n_products=60, seed=22, effects=effects))
    result = audit_market(market, market_config(audit={"segment_by": []}))
    price = {(f.attribute, f.group): f for f in result.findings if f.check == "price_gap"}
    men_65 = price[("gender & age_band", "M & 65+")]
    assert men_65.is_flagged and men_65.explained_by is None
    assert men_65.excess_estimate == pytest.approx(1.06, abs=0.015) and men_65.excess_p_value < 1e-6
    assert "beyond what its attributes predict together" in men_65.summary
    flagged = {(f.attribute, f.group) for f in result.findings if f.is_flagged and f.count is None}
    assert flagged <= {("gender & age_band", "M & 65+"), ("age_band", "65+"), ("gender", "M")}


def _text_of(page: str, element_id: str) -> str:
    """The text inside the element with this id (parsed, not pattern-matched)."""

    class Finder(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth, self.text = 0, []

        def handle_starttag(self, tag, attrs):
            if self.depth or dict(attrs).get("id") == element_id:
                self.depth += 1

        def handle_endtag(self, tag):
            if self.depth:
                self.depth -= 1

        def handle_data(self, data):
            if self.depth:
                self.text.append(data)

    finder = Finder()
    finder.feed(page)
    return " ".join(" ".join(finder.text).split())


@pytest.mark.parametrize(("bands", "labels"), [
    ([1, 2, 5, 10, 50], ["other", "≥1.0", "≥2.0", "≥5.0", "≥50.0"]),
    ([5], ["other", "other", "other", "≥5.0", "≥5.0"]),
    ([], ["other"] * 5),
])
def test_quantity_band_is_the_highest_band_at_or_below_the_quantity(bands, labels):
    con = duckdb.connect()
    apply_schema(con)
    con.execute("insert into customers (customer_id, batch_id) values ('C1', 1)")
    con.execute("""
        insert into transactions (source, transaction_id, timestamp, customer_id, product_id, quantity, unit_price, batch_id)
        select 'shop', 'T' || q, timestamp '2026-01-05 10:00', 'C1', 'P1', q, 1, 1
        from unnest([0.5, 1, 2.5, 7, 100]::decimal(18, 3)[]) as u(q)""")
    config = market_config(audit={"attributes": ["quantity_band"], "intersections": [], "segment_by": [],
                                  "controls": [], "quantity_bands": bands})
    build_audit_lines(con, config, period_start=dt.date(2026, 1, 1),
                      period_end=dt.date(2026, 1, 31), filters={})
    assert [b for (b,) in con.execute("select quantity_band from audit_lines order by quantity").fetchall()] == labels


@pytest.mark.parametrize("tolerance", [0.005, 0.5])
def test_a_dispersion_rules_worst_cells_are_the_cells_with_its_breaching_lines(con, monkeypatch, tolerance):
    """The worst cells come from the audited lines per cell (sql/audit/breach_cells.sql restates the rule's
    tolerance): they must be exactly the cells holding a breaching line of the rule's own SQL."""
    from audits import consistency

    monkeypatch.setattr(consistency, "TOP_CELLS", 10**9)  # every such cell, not the worst ten
    config = market_config(audit={"price_tolerance": tolerance})
    build_audit_lines(con, config, period_start=SMALL_SPEC.start, period_end=SMALL_SPEC.end, filters={})
    rules = load_sql("checks/price_dispersion")
    for metric in consistency.DISPERSION_PRICE:
        cells, lines = con.execute(
            f"select count(distinct l.cell_key), count(*) from ({rules.sql}) as b join audit_lines as l "
            "on l.rowid = b.line where b.is_breach and b.metric = $metric",
            {**rules.bind(config.sql_values()), "metric": metric}).fetchone()
        listed = consistency._cells(con, metric, config)
        assert cells > 0 and len(listed) == cells, metric
        if metric == "paid_price_dispersion":  # every line of such a cell breaches the rule
            assert sum(c["lines"] for c in listed) == lines


def test_windows_audited_side_by_side_equal_each_window_audited_alone(con, monkeypatch):
    """run_audits audits its windows at once, each on its own cursor (as many as DuckDB's threads): every
    field of every finding equals the window's audit alone; `then` gets each result on its window's thread,
    in the caller's context; a window that fails stops the others and its error is raised."""
    from audits import runner
    from audits.findings import DataQuality
    from audits.runner import run_audit, run_audits
    from tests.audits.conftest import assert_same_findings

    config = market_config()
    start, end = SMALL_SPEC.start, SMALL_SPEC.end
    windows = {"late": (end - dt.timedelta(days=6), end), "all": (start, end),
               "early": (start, start + dt.timedelta(days=9))}
    seen: dict[str, str] = {}
    caller = contextvars.ContextVar("caller")
    caller.set("the flow's task")  # as Prefect's run context: what say() needs to log into the task run

    def then(cursor, result):
        assert cursor.execute("select count(*) from coded_lines").fetchone()[0] > 0  # the window's own tables
        assert caller.get(None) == "the flow's task"
        seen[result.run.scope] = threading.current_thread().name
        return result

    before = con.execute("select current_setting('threads')").fetchone()[0]
    con.execute("set threads = 3")
    try:
        side = run_audits(con, config, windows, data_quality=DataQuality(passed=True),
                          run_ids=dict.fromkeys(windows, "test"), then=then)
        assert list(side) == list(windows)
        assert len(set(seen.values())) == 3 and all(name.startswith("window") for name in seen.values())
        for scope, (first, last) in windows.items():
            alone = run_audit(con, config, period_start=first, period_end=last, scope=scope,
                              data_quality=DataQuality(passed=True), run_id="test")
            assert (side[scope].run.scope, side[scope].run.period_start) == (scope, first.isoformat())
            assert side[scope].run.transactions == alone.run.transactions
            assert [c.status for c in side[scope].checks] == [c.status for c in alone.checks]
            assert_same_findings(alone.findings, side[scope].findings, rel=1e-12)

        # a window that fails stops the others at their next query: they never reach `then`
        real, finished = runner.run_audit, []

        def fails_at_once(cursor, config, **kwargs):
            if kwargs["scope"] == "broken":
                raise ValueError("the broken window's audit failed")
            return real(cursor, config, **kwargs)

        monkeypatch.setattr(runner, "run_audit", fails_at_once)
        with pytest.raises(ValueError, match="broken window"):
            run_audits(con, config, {"broken": (start, end), **windows}, data_quality=DataQuality(passed=True),
                       then=lambda cursor, result: finished.append(result.run.scope) or result)
        assert finished == []
    finally:
        con.execute(f"set threads = {int(before)}")
