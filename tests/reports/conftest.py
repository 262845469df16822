"""A hand-built AuditResult for the report tests, and a tiny HTML tree to assert against.

Tests reach these through the `sample` and `parse` fixtures rather than `import conftest`, which
would depend on which test folder's conftest Python imported first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from audits.causes import RULES as GROUPING_RULES
from audits.findings import AuditResult, Cause, CheckRun, DataQuality, Finding, HistoryPoint, RunInfo

HOSTILE_GROUP = "<script>alert(1)</script>"
HOSTILE_SEGMENT = '<img src=x onerror="alert(2)">'
HOSTILE_ATTRIBUTE = "region<b onmouseover=alert(3)>"
HOSTILE_SUMMARY = 'Group "<script>alert(1)</script>" got 31% fewer discounts & <i>no</i> explanation.'


def finding(**overrides: Any) -> Finding:
    """A finding with neutral defaults; tests set only what they are about."""
    base: dict[str, Any] = dict(
        check="price_gap", attribute="gender", group="F", reference="M", segment=None, metric="price_ratio",
        estimate=1.0, ci_low=0.99, ci_high=1.01, p_value=0.5, q_value=0.8, n_customers_group=500,
        n_customers_reference=500, count=None, severity="low", status="persisting", summary="No difference.",
    )
    base.update(overrides)
    return Finding(**base)


HIGH_GAP = finding(
    outcome="flagged",
    segment={"category": "personal_care"}, estimate=1.05, ci_low=1.04, ci_high=1.06, p_value=1e-9, q_value=1e-8,
    n_customers_group=812, n_customers_reference=790, severity="high", status="new",
    summary="Women paid 5.0% more than men for the same personal-care product on the same day and channel.",
)
LOW_GAP = finding(
    segment={"category": "groceries"}, estimate=1.004, ci_low=0.998, ci_high=1.010, p_value=0.21, q_value=0.43,
    n_customers_group=1210, n_customers_reference=1185,
    summary="Women and men paid the same for groceries (difference +0.4%, not significant).",
)
MEDIUM_INCIDENCE = finding(
    outcome="flagged",
    check="discount_incidence", attribute="age_band", group="65+", reference="25-44", metric="adverse_impact_ratio",
    estimate=0.52, ci_low=0.45, ci_high=0.60, p_value=1e-6, q_value=2e-5, n_customers_group=140,
    n_customers_reference=900, severity="medium", status="persisting",
    summary="Customers aged 65+ received discounts at 0.52 times the rate of customers aged 25-44.",
)
LOW_INCIDENCE = finding(
    check="discount_incidence", attribute="age_band", group="18-24", reference="25-44",
    metric="adverse_impact_ratio", estimate=0.91, ci_low=0.80, ci_high=1.03, p_value=0.15, q_value=0.33,
    n_customers_group=310, n_customers_reference=900, summary="Customers aged 18-24: no adverse impact.",
)
HOSTILE = finding(
    outcome="flagged",
    check="discount_incidence", attribute=HOSTILE_ATTRIBUTE, group=HOSTILE_GROUP, reference="North",
    segment={"category": HOSTILE_SEGMENT}, metric="adverse_impact_ratio", estimate=0.69, ci_low=0.60,
    ci_high=0.78, p_value=1e-4, q_value=1e-3, n_customers_group=95, n_customers_reference=400,
    severity="medium", status="new", summary=HOSTILE_SUMMARY,
)
DEPTH = finding(
    check="discount_depth", attribute="region", group="South", reference="North", metric="discount_pct_diff",
    estimate=-0.031, ci_low=-0.05, ci_high=-0.012, p_value=0.004, q_value=0.02, n_customers_group=420,
    n_customers_reference=460, summary="Discounts in the South were 3.1 points shallower (below threshold).",
)
SUPPRESSED = finding(
    attribute="language", group="Sami", reference="all other customers", estimate=None, ci_low=None,
    ci_high=None, p_value=None, q_value=None, n_customers_group=None, n_customers_reference=None,
    suppressed=True, outcome="suppressed", summary="Group too small to report.",
)
DISPERSION = finding(
    outcome="flagged",
    check="price_dispersion", attribute=None, group=None, reference=None, metric="list_price_dispersion",
    estimate=0.000921,  # 37 of 40,174 transactions with a list price
    ci_low=None, ci_high=None, p_value=None, q_value=None, n_customers_group=None, n_customers_reference=None,
    count=37, severity="medium", status="new",
    summary="37 transactions were listed at a price other than the published one for the same product, day and channel.",
)
RESOLVED = finding(
    check="loyalty_penalty", attribute="tenure", group="existing", reference="new", estimate=1.002,
    ci_low=0.99, ci_high=1.014, p_value=0.7, q_value=0.9, n_customers_group=2000, n_customers_reference=600,
    severity="low", status="resolved", summary="Existing customers no longer pay more than new ones.",
)

ALL_FINDINGS = (HIGH_GAP, LOW_GAP, MEDIUM_INCIDENCE, LOW_INCIDENCE, HOSTILE, DEPTH, SUPPRESSED, DISPERSION, RESOLVED)

METHOD = {
    "thresholds": {"min_price_gap": 0.01, "adverse_impact_ratio": 0.8, "min_discount_depth": 0.02, "fdr": 0.05,
                   "min_group_customers": 11},
    "controls": ["channel"],
    "attributes": ["gender", "age_band", "region"],
    "intersections": [["gender", "age_band"]],
    "segment_by": ["category"],
    "reference": {"gender": "M"},
}


def build_result(**overrides: Any) -> AuditResult:
    """The report fixture: every kind of finding, an errored and a skipped check, two earlier runs; no causes
    (as in a findings.json of before them: each flagged finding is shown as a cause of its own)."""
    history = [
        HistoryPoint("run-2026-03", "2026-03-31", {
            HIGH_GAP.key: {"estimate": 1.02, "ci_low": 1.01, "ci_high": 1.03},
            MEDIUM_INCIDENCE.key: {"estimate": 0.61, "ci_low": 0.53, "ci_high": 0.70},
        }),
        HistoryPoint("run-2026-04", "2026-04-30", {
            HIGH_GAP.key: {"estimate": 1.03, "ci_low": 1.02, "ci_high": 1.04},
            MEDIUM_INCIDENCE.key: {"estimate": 0.55, "ci_low": 0.47, "ci_high": 0.63},
        }),
    ]
    base: dict[str, Any] = dict(
        run=RunInfo(
            run_id="run-2026-05", period_start="2026-05-01", period_end="2026-05-31", transactions=48213,
            customers=6120, config_sha256="c0ffee" + "0" * 58, data_sha256="da7a" + "1" * 60, version="0.1.0",
            scope="nightly", started_at="2026-06-01T02:00:00Z", finished_at="2026-06-01T02:03:10Z",
        ),
        data_quality=DataQuality(
            passed=True,
            expectations=[
                {"expectation": "expect_column_values_to_not_be_null", "column": "customer_id", "success": True,
                 "unexpected_count": 0, "batch": "shop-0001"},
                {"expectation": "expect_column_values_to_be_unique", "column": "transaction_id", "success": True,
                 "unexpected_count": 0, "batch": "shop-0001"},
                {"expectation": "expect_column_values_to_be_in_set", "column": "currency", "success": False,
                 "unexpected_count": 12, "batch": "shop-0001"},
            ],
            quarantined_rows=15,
            quarantine_reasons=[{"reason": "unknown currency", "rows": 12}, {"reason": "quantity not positive", "rows": 3}],
        ),
        findings=list(ALL_FINDINGS),
        checks=[
            CheckRun("price_gap", "ok", 1.2, n_tests=3, outcome="flagged",
                     outcomes={"flagged": 1, "clear": 1, "suppressed": 1, "not_assessed": 0}),
            CheckRun("discount_incidence", "ok", 0.8, n_tests=3, outcome="flagged",
                     outcomes={"flagged": 2, "clear": 1, "suppressed": 0, "not_assessed": 0}),
            CheckRun("discount_depth", "ok", 0.5, n_tests=1, outcome="clear",
                     outcomes={"flagged": 0, "clear": 1, "suppressed": 0, "not_assessed": 0}),
            CheckRun("price_dispersion", "ok", 0.3, n_tests=1, outcome="flagged",
                     outcomes={"flagged": 1, "clear": 0, "suppressed": 0, "not_assessed": 0}),
            CheckRun("price_arithmetic", "errored", 0.1, reason="Binder Error: column line_total not found"),
            CheckRun("discount_policy", "skipped", 0.0, reason="no discount codes in the data"),
            CheckRun("loyalty_penalty", "ok", 0.9, n_tests=1, outcome="clear",
                     outcomes={"flagged": 0, "clear": 1, "suppressed": 0, "not_assessed": 0}),
        ],
        method=METHOD,
        history=history,
    )
    base.update(overrides)
    return AuditResult(**base)


# A run with causes (audits/causes.py): a discount cause holding a segment flag and a price gap it explains
# (R1, R3: list prices checked), two flags of their own, a consistency rule with where to look, a rule reported
# but not judged, a resolved cause, coverage high and low, and what changed since the previous run.
HOSTILE_PRODUCT = "<script>alert(4)</script>"
INCIDENCE_65 = finding(
    check="discount_incidence", attribute="age_band", group="65+", reference="all others",
    metric="adverse_impact_ratio", estimate=0.64, ci_low=0.62, ci_high=0.66, p_value=1e-12, q_value=1e-11,
    n_customers_group=3138, n_customers_reference=15005, severity="high", status="persisting", outcome="flagged",
    coverage={"group_lines": 0.37, "reference_lines": 0.91, "group_customers": 0.914, "reference_customers": 0.997},
    summary="Customers with age_band = 65+ received discounts 0.64 times as often as all other customers.",
)
INCIDENCE_65_GROCERY = finding(
    check="discount_incidence", attribute="age_band", group="65+", reference="all others",
    segment={"category": "grocery"}, metric="adverse_impact_ratio", estimate=0.66, ci_low=0.60, ci_high=0.72,
    p_value=1e-8, q_value=1e-7, n_customers_group=2100, n_customers_reference=9000, severity="high",
    status="persisting", outcome="flagged",
    coverage={"group_lines": 0.88, "reference_lines": 0.62, "group_customers": 0.99, "reference_customers": 0.95},
    summary="Customers with age_band = 65+ received discounts 0.66 times as often (category grocery).",
)
GAP_65 = finding(
    attribute="age_band", group="65+", reference="all others", estimate=1.014, ci_low=1.013, ci_high=1.015,
    p_value=1e-10, q_value=1e-9, n_customers_group=3138, n_customers_reference=15005, severity="medium",
    status="new", outcome="flagged", list_estimate=1.001, list_ci_low=0.998, list_ci_high=1.004,
    coverage={"group_lines": 0.37, "reference_lines": 0.91, "group_customers": 0.914, "reference_customers": 0.997},
    summary="Customers with age_band = 65+ paid 1.4% more than all other customers.",
)
GAP_F = finding(
    segment={"category": "personal_care"}, reference="all others", estimate=1.051, ci_low=1.049, ci_high=1.052,
    p_value=1e-12, q_value=1e-11, n_customers_group=7307, n_customers_reference=7667, severity="high", status="new",
    outcome="flagged",
    coverage={"group_lines": 0.772, "reference_lines": 0.752, "group_customers": 0.99, "reference_customers": 0.98},
    summary="Customers with gender = F paid 5.1% more than all other customers (category personal_care).",
)
CLEAR_X = finding(
    group="X", reference="all others", estimate=1.003, ci_low=0.99, ci_high=1.016, outcome="clear",
    coverage={"group_lines": 0.133, "reference_lines": 0.93, "group_customers": 0.70, "reference_customers": 0.99},
    summary="Customers with gender = X paid 0.3% more, within what chance alone would produce.",
)
TOO_FEW = finding(
    check="discount_depth", attribute="region", group="Islands", reference="all others", metric="discount_pct_diff",
    estimate=-0.02, ci_low=-0.09, ci_high=0.05, p_value=0.5, q_value=0.8, n_customers_group=14,
    n_customers_reference=900, outcome="not_assessed",
    reason="fewer than 30 customers on one side: too few to judge, so it is shown but never flagged",
    summary="When discounted, customers with region = Islands got discounts as deep as all other customers.",
)
LIST_DISPERSION = finding(
    check="price_dispersion", attribute=None, group=None, reference=None, metric="list_price_dispersion",
    estimate=0.027, ci_low=None, ci_high=None, p_value=None, q_value=None, n_customers_group=None,
    n_customers_reference=None, count=27, severity="high", status="new", outcome="flagged",
    summary="27 lines out of 1,000 had a list price other than the one most customers were shown.",
    details={"lines_checked": 1000, "amount": 34438.15, "revenue": 886773.33, "revenue_share": 0.0936,
             "top": {"product_id": [{"value": "SB-0004", "lines": 20, "amount": 311.1},
                                    {"value": HOSTILE_PRODUCT, "lines": 7, "amount": 41.5}],
                     "discount_code": [],
                     "channel": [{"value": "app", "lines": 27, "amount": 352.6}],
                     "day": [{"value": "2026-05-19", "lines": 15, "amount": 200.0},
                             {"value": "2026-05-20", "lines": 12, "amount": 152.6}]},
             "cells": [{"product_id": "SB-0004", "day": "2026-05-19", "currency": "EUR",
                        "controls": {"channel": "app"}, "low": 7.21, "high": 7.65, "spread": 1.0610263522884882,
                        "lines": 8, "prices": 2},
                       {"product_id": HOSTILE_PRODUCT, "day": "2026-05-20", "currency": "EUR",
                        "controls": {"channel": "app"}, "low": 10.0, "high": 10.5, "spread": 1.05, "lines": 7,
                        "prices": 3}],
             "breach_rows": 27},
)
PAID_DISPERSION = finding(
    check="price_dispersion", attribute=None, group=None, reference=None, metric="paid_price_dispersion",
    estimate=0.66, ci_low=None, ci_high=None, p_value=None, q_value=None, n_customers_group=None,
    n_customers_reference=None, count=660, severity="low", status="new", outcome="not_assessed",
    reason="reported, not judged: with list prices, paid prices differ by design where discounts apply; "
           "list_price_dispersion judges whether one price was charged",
    summary="660 lines out of 1,000 had a unit price paid in a cell where customers paid more than one price.",
    details={"lines_checked": 1000, "amount": 5894.46, "revenue": 59559.4, "revenue_share": 0.63,
             "cells": [{"product_id": "SB-0007", "day": "2026-05-16", "currency": "EUR",
                        "controls": {"channel": "online"}, "low": 3.1, "high": 6.57, "spread": 2.1193548387096777,
                        "lines": 3, "prices": 3}]},
)
ARITHMETIC = finding(
    check="price_arithmetic", attribute=None, group=None, reference=None, metric="line_total_mismatch",
    estimate=0.036, ci_low=None, ci_high=None, p_value=None, q_value=None, n_customers_group=None,
    n_customers_reference=None, count=36, severity="medium", status="new", outcome="flagged",
    summary="36 lines out of 1,000 had line totals that do not equal unit price times quantity.",
    details={"lines_checked": 1000, "amount": 91.2, "revenue": 872.72, "revenue_share": 0.0009,
             "top": {"product_id": [{"value": "GR-0017", "lines": 3, "amount": 6.57}]}, "breach_rows": 20},
)
ARITHMETIC_CLEAR = finding(
    check="price_arithmetic", attribute=None, group=None, reference=None, metric="discount_mismatch",
    estimate=0.0, ci_low=None, ci_high=None, p_value=None, q_value=None, n_customers_group=None,
    n_customers_reference=None, count=0, severity="low", status="persisting", outcome="clear",
    summary="No discount amounts that do not equal list price minus unit price, times quantity were found.",
    details={"lines_checked": 1000, "amount": 0.0, "revenue": 0.0, "revenue_share": 0.0},
)
CAUSE_FINDINGS = (INCIDENCE_65, INCIDENCE_65_GROCERY, GAP_65, GAP_F, CLEAR_X, TOO_FEW, LIST_DISPERSION,
                  PAID_DISPERSION, ARITHMETIC, ARITHMETIC_CLEAR, SUPPRESSED)
CAUSES = (
    Cause(id="c-discount", headline="Customers with age_band = 65+ received discounts 0.64 times as often as all "
                                    "other customers. (2 related flags follow from it)",
          severity="high", finding_ids=[INCIDENCE_65.id, INCIDENCE_65_GROCERY.id, GAP_65.id],
          rule=GROUPING_RULES["segments"] + "; " + GROUPING_RULES["echo"],
          next_step="Review the coupon and discount targeting rules for customers with age_band = 65+: they "
                    "received discounts 0.64 times as often as all other customers.",
          check="discount_incidence", lead_id=INCIDENCE_65.id, status="persisting"),
    Cause(id="c-gap-f", headline="Customers with gender = F paid 5.1% more than all other customers (category "
                                 "personal_care).", severity="high", finding_ids=[GAP_F.id],
          rule=GROUPING_RULES["alone"], next_step="Review how price is set for customers with gender = F: they paid "
                                                   "5.1% more than all other customers (category personal_care).",
          check="price_gap", lead_id=GAP_F.id, status="new"),
    Cause(id="c-list", headline="27 lines out of 1,000 had a list price other than the one most customers were "
                                "shown.", severity="high", finding_ids=[LIST_DISPERSION.id], rule=GROUPING_RULES["alone"],
          next_step="Ask pricing why lines were charged at several prices: 27 lines out of 1,000 had a list price "
                    "other than the one most customers were shown.",
          check="price_dispersion", lead_id=LIST_DISPERSION.id, status="new"),
    Cause(id="c-arith", headline="36 lines out of 1,000 had line totals that do not equal unit price times quantity.",
          severity="medium", finding_ids=[ARITHMETIC.id], rule=GROUPING_RULES["alone"],
          next_step="Review the billing lines listed in breaches.csv: 36 lines out of 1,000 had line totals that do "
                    "not equal unit price times quantity.", check="price_arithmetic", lead_id=ARITHMETIC.id,
          status="new"),
    Cause(id="c-loyalty", headline="Existing customers paid 6.2% more than new customers.", severity="high",
          finding_ids=["0123456789ab", "ba9876543210"], rule=GROUPING_RULES["segments"],
          next_step="Review renewal pricing.", check="loyalty_penalty", lead_id="0123456789ab", status="resolved"),
)
SINCE_PREVIOUS = {
    "run_id": "run-2026-04", "period_end": "2026-04-30",
    "causes": {"new": 3, "persisting": 1, "resolved": 1},
    "config_changed": True,
    "thresholds_changed": {"min_price_gap": [0.02, 0.01], "max_dearer_ratio": [None, 1.25]},
    "scope_changed": {"attributes": [["gender"], ["gender", "age_band"]]},
}
NO_LINES = "no lines in the period after filters"
CAUSE_CHECKS = [
    CheckRun("price_arithmetic", "ok", 0.1, n_tests=2, outcome="flagged",
             outcomes={"flagged": 1, "clear": 1, "suppressed": 0, "not_assessed": 0}),
    CheckRun("price_dispersion", "ok", 0.3, n_tests=2, outcome="flagged",
             outcomes={"flagged": 1, "clear": 0, "suppressed": 0, "not_assessed": 1}),
    CheckRun("discount_policy", "skipped", 0.0, reason="the data has no list price (the price customers were shown)"),
    CheckRun("price_gap", "ok", 1.2, n_tests=4, outcome="flagged",
             outcomes={"flagged": 2, "clear": 1, "suppressed": 1, "not_assessed": 0}),
    CheckRun("discount_incidence", "ok", 0.8, n_tests=2, outcome="flagged",
             outcomes={"flagged": 2, "clear": 0, "suppressed": 0, "not_assessed": 0}),
    CheckRun("discount_depth", "ok", 0.5, n_tests=1, outcome="not_assessed", reason=TOO_FEW.reason,
             outcomes={"flagged": 0, "clear": 0, "suppressed": 0, "not_assessed": 1}),
    CheckRun("loyalty_penalty", "errored", 0.1, reason="Binder Error: column tenure not found"),
]


def build_causes_result(**overrides: Any) -> AuditResult:
    """A run with causes, coverage, consistency details and changes since the previous run."""
    base = build_result()
    values: dict[str, Any] = dict(
        run=dataclasses.replace(base.run, period_reason="the last 31 days: audit.window_days = 31",
                                filters={"channel": "online"}),
        findings=list(CAUSE_FINDINGS), checks=list(CAUSE_CHECKS), causes=list(CAUSES),
        since_previous=dict(SINCE_PREVIOUS), history=[],
    )
    values.update(overrides)
    return dataclasses.replace(base, **values)


def build_empty_result() -> AuditResult:
    """A run over a period with no lines: every check skipped, nothing assessed."""
    base = build_result()
    from audits.catalogue import CHECK_NAMES

    return dataclasses.replace(
        base, run=dataclasses.replace(base.run, transactions=0, customers=0,
                                      period_reason="the month to date: the 1st to yesterday"),
        findings=[], history=[], causes=[],
        checks=[CheckRun(c, "skipped", 0.0, NO_LINES) for c in CHECK_NAMES],
    )


@pytest.fixture
def result() -> AuditResult:
    return build_result()


@pytest.fixture(scope="session")
def sample() -> SimpleNamespace:
    """The fixture's findings and builders by name (sample.HIGH_GAP, sample.build_result(...))."""
    names = ("HOSTILE_GROUP", "HOSTILE_SEGMENT", "HOSTILE_ATTRIBUTE", "HOSTILE_SUMMARY", "HIGH_GAP", "LOW_GAP",
             "MEDIUM_INCIDENCE", "LOW_INCIDENCE", "HOSTILE", "DEPTH", "SUPPRESSED", "DISPERSION", "RESOLVED",
             "ALL_FINDINGS", "METHOD", "finding", "build_result", "replace",
             "HOSTILE_PRODUCT", "INCIDENCE_65", "INCIDENCE_65_GROCERY", "GAP_65", "GAP_F", "CLEAR_X", "TOO_FEW",
             "LIST_DISPERSION", "PAID_DISPERSION", "ARITHMETIC", "ARITHMETIC_CLEAR", "CAUSES", "SINCE_PREVIOUS",
             "NO_LINES", "build_causes_result", "build_empty_result")
    return SimpleNamespace(**{name: globals()[name] for name in names})


@pytest.fixture(scope="session")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    """The audit of the demo market: `priceparity demo`'s market, config and 90-day window (about 8 s).

    Built in this process, without the Prefect flow that the demo wraps around the same steps, whose
    temporary server would add 10-30 s; a first run, so no history, as for a new user.
    """
    import datetime as dt
    from importlib import resources

    from audits.config import load_config
    from audits.ingest import data_quality_summary, ingest_all
    from audits.runner import run_audit
    from audits.sample import MarketSpec, write_sample_market
    from audits.warehouse import open_warehouse

    root = tmp_path_factory.mktemp("demo")
    write_sample_market(root / "landing", spec=MarketSpec())
    config_path = root / "priceparity.toml"
    config_path.write_text(resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8"))
    config = load_config(config_path)
    with open_warehouse(config.warehouse_path) as con:
        batches = ingest_all(con, config)
        quality = data_quality_summary(con, batch_ids=[b.batch_id for b in batches])
        end = con.execute("select max(timestamp)::date from transactions").fetchone()[0]
        return run_audit(con, config, period_start=end - dt.timedelta(days=config.window_days - 1),
                         period_end=end, data_quality=quality)


@pytest.fixture(scope="session")
def demo_report(demo_result: AuditResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo market's report, with its breaches.csv beside it as the flows' publish step writes it."""
    from reports import render_report, write_breaches

    out = tmp_path_factory.mktemp("demo-report")
    write_breaches(demo_result, out)
    return render_report(demo_result, out)


@pytest.fixture(scope="session")
def parse() -> Callable[[str], Node]:
    return parse_html


@dataclass
class Node:
    tag: str
    attrs: dict[str, str | None]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self, tag: str | None = None) -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if tag is None or child.tag == tag:
                    found.append(child)
                found.extend(child.iter(tag))
        return found

    def by_id(self, node_id: str) -> Node:
        matches = [n for n in self.iter() if n.attrs.get("id") == node_id]
        assert len(matches) == 1, f"{len(matches)} elements with id {node_id!r}"
        return matches[0]

    def classed(self, name: str) -> list[Node]:
        return [n for n in self.iter() if name in (n.attrs.get("class") or "").split()]


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def replace(result: AuditResult, **changes: Any) -> AuditResult:
    return dataclasses.replace(result, **changes)
