"""Hostile data: names carrying markup, script, SQL, very long and right-to-left text flow through
ingest, audit and report as plain data — never executed, never breaking the warehouse or the page.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from audits.config import parse_config
from audits.ingest import data_quality_summary, ingest_all
from audits.runner import run_audit
from audits.sample import MarketSpec, TRANSACTION_COLUMN_MAP, generate_market
from audits.warehouse import open_warehouse

SCRIPT = "<script>alert('region')</script>"
IMG = '<img src=x onerror="alert(1)">'
SQL = "'); drop table transactions; --"
LONG = "L" * 5_000
RTL = "\u202eمنطقة الشمال"
HOSTILE_REGIONS = {"Capital": SCRIPT, "North-East": SQL, "South-West": LONG, "East": RTL}
HOSTILE_CATEGORY = {"electronics": IMG}


def _replace(table: pa.Table, column: str, mapping: dict[str, str]) -> pa.Table:
    values = table[column]
    for old, new in mapping.items():
        values = pc.if_else(pc.equal(values, old), new, values)
    return table.set_column(table.schema.get_field_index(column), column, values)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("hostile")
    market = generate_market(MarketSpec(n_customers=3_000, days=30, seed=5))
    pq.write_table(_replace(market.transactions, "category", HOSTILE_CATEGORY), root / "tx.parquet")
    pq.write_table(_replace(market.customers, "region", HOSTILE_REGIONS), root / "customers.parquet")
    config = parse_config({
        "warehouse": {"path": "wh.duckdb"},
        "sources": [{"name": "shop", "path": "tx.parquet", "columns": dict(TRANSACTION_COLUMN_MAP)}],
        "customers": {"path": "customers.parquet", "columns": {"customer_id": "client_ref"}},
        "audit": {"attributes": ["region"], "segment_by": ["category"]},
        "thresholds": {"min_group_customers": 5},
    }, base_dir=root)
    with open_warehouse(config.warehouse_path) as con:
        batches = ingest_all(con, config)
        quality = data_quality_summary(con, batch_ids=[b.batch_id for b in batches])
        start, end = con.execute("select min(timestamp)::date, max(timestamp)::date from transactions").fetchone()
        result = run_audit(con, config, period_start=start, period_end=end, data_quality=quality)
        counts = dict(con.execute(
            "select 'transactions', count(*) from transactions union all select 'customers', count(*) from customers"
        ).fetchall())
    from reports.render import render_report

    report = render_report(result, root / "report")
    result.write(root / "report" / "findings.json")
    return report, {"counts": counts, "result": result, "n_lines": market.transactions.num_rows}


def test_sql_in_data_is_only_data(hostile):
    _, facts = hostile
    assert facts["counts"]["transactions"] == facts["n_lines"]
    groups = {f.group for f in facts["result"].findings}
    assert {SCRIPT, SQL, LONG, RTL} <= groups


def test_findings_json_keeps_names_verbatim(hostile):
    report, _ = hostile
    data = json.loads((report.parent / "findings.json").read_text(encoding="utf-8"))
    groups = {f["group"] for f in data["findings"]}
    segments = {value for f in data["findings"] if f["segment"] for value in f["segment"].values()}
    assert SCRIPT in groups and RTL in groups
    assert IMG in segments


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_markup_in_names_renders_as_text(hostile):
    report, _ = hostile
    html = report.read_text(encoding="utf-8")
    parsed = _Elements()
    parsed.feed(html)
    assert not [t for t in parsed.tags if t[0] == "img"], "a name injected an <img> element"
    assert not [t for t in parsed.tags if any(k.startswith("on") for k in t[1])], "an event handler was injected"
    text = "".join(parsed.text)
    assert SCRIPT in text or "&lt;script&gt;" in html
    assert "alert('region')</script>" not in html.replace("\\u003c", "<").split("<script")[0]


@pytest.mark.browser
def test_nothing_executes_in_a_real_browser(hostile, browser_page):
    report, _ = hostile
    dialogs: list[str] = []
    browser_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    browser_page.goto(report.as_uri())
    browser_page.wait_for_timeout(500)
    assert dialogs == []
    assert SCRIPT in browser_page.inner_text("body")
