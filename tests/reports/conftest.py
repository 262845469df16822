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

from audits.findings import AuditResult, CheckRun, DataQuality, Finding, HistoryPoint, RunInfo

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
    suppressed=True, summary="Group too small to report.",
)
DISPERSION = finding(
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
    """The report fixture: every kind of finding, an errored and a skipped check, two earlier runs."""
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
            CheckRun("price_gap", "ok", 1.2, n_tests=4),
            CheckRun("discount_incidence", "ok", 0.8, n_tests=3),
            CheckRun("discount_depth", "ok", 0.5, n_tests=1),
            CheckRun("price_dispersion", "ok", 0.3),
            CheckRun("price_arithmetic", "errored", 0.1, reason="Binder Error: column line_total not found"),
            CheckRun("discount_policy", "skipped", 0.0, reason="no discount codes in the data"),
            CheckRun("loyalty_penalty", "ok", 0.9, n_tests=1),
        ],
        method=METHOD,
        history=history,
    )
    base.update(overrides)
    return AuditResult(**base)


@pytest.fixture
def result() -> AuditResult:
    return build_result()


@pytest.fixture(scope="session")
def sample() -> SimpleNamespace:
    """The fixture's findings and builders by name (sample.HIGH_GAP, sample.build_result(...))."""
    names = ("HOSTILE_GROUP", "HOSTILE_SEGMENT", "HOSTILE_ATTRIBUTE", "HOSTILE_SUMMARY", "HIGH_GAP", "LOW_GAP",
             "MEDIUM_INCIDENCE", "LOW_INCIDENCE", "HOSTILE", "DEPTH", "SUPPRESSED", "DISPERSION", "RESOLVED",
             "ALL_FINDINGS", "METHOD", "finding", "build_result", "replace")
    return SimpleNamespace(**{name: globals()[name] for name in names})


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the demo market: `priceparity demo`'s market, config and 90-day window (about 8 s).

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
    from reports import render_report

    root = tmp_path_factory.mktemp("demo")
    write_sample_market(root / "landing", spec=MarketSpec())
    config_path = root / "priceparity.toml"
    config_path.write_text(resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8"))
    config = load_config(config_path)
    with open_warehouse(config.warehouse_path) as con:
        batches = ingest_all(con, config)
        quality = data_quality_summary(con, batch_ids=[b.batch_id for b in batches])
        end = con.execute("select max(timestamp)::date from transactions").fetchone()[0]
        result = run_audit(con, config, period_start=end - dt.timedelta(days=config.window_days - 1),
                           period_end=end, data_quality=quality)
    return render_report(result, root / "report")


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
