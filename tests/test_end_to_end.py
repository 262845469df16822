"""The walking skeleton end to end on a sample market: planted unfairness found, confounders not.

Uses the demo's own config (flows/demo.toml) on a smaller market than the demo's so it runs in
seconds; the pipeline is the real one (file ingest, Great Expectations, DuckDB checks, report).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from audits.config import load_config
from audits.findings import AuditResult
from audits.ingest import data_quality_summary, ingest_all
from audits.runner import run_audit
from audits.sample import MarketSpec, write_sample_market
from audits.warehouse import open_warehouse

CONTRACT_RUN_KEYS = {"run_id", "period_start", "period_end", "transactions", "customers", "config_sha256",
                     "data_sha256", "version"}
CONTRACT_FINDING_KEYS = {"check", "attribute", "group", "reference", "segment", "metric", "estimate", "ci_low",
                         "ci_high", "p_value", "q_value", "n_customers_group", "n_customers_reference", "count",
                         "severity", "status", "summary"}


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> tuple[AuditResult, Path]:
    root = tmp_path_factory.mktemp("market")
    spec = MarketSpec(n_customers=8_000, days=60, seed=11)
    write_sample_market(root / "landing", spec=spec)
    config_path = root / "priceparity.toml"
    config_path.write_text(resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8"))
    config = load_config(config_path)
    with open_warehouse(config.warehouse_path) as con:
        batches = ingest_all(con, config)
        quality = data_quality_summary(con, batch_ids=[b.batch_id for b in batches])
        end = con.execute("select max(timestamp)::date from transactions").fetchone()[0]
        start = con.execute("select min(timestamp)::date from transactions").fetchone()[0]
        result = run_audit(con, config, period_start=start, period_end=end, data_quality=quality)
    path = result.write(root / "out" / "findings.json")
    return result, path


def _flagged(result: AuditResult, check: str, attribute: str, group: str, segment: dict | None):
    return [f for f in result.findings if f.check == check and f.attribute == attribute and f.group == group
            and f.segment == segment and f.is_flagged]


@pytest.mark.parametrize(
    ("check", "attribute", "group", "segment", "low", "high"),
    [
        ("price_gap", "gender", "F", {"category": "personal_care"}, 1.035, 1.065),
        ("price_gap", "region", "North-East", {"category": "electronics"}, 1.02, 1.04),
        ("discount_incidence", "age_band", "65+", None, 0.4, 0.8),
    ],
)
def test_planted_unfairness_is_flagged_with_the_right_size(audited, check, attribute, group, segment, low, high):
    result, _ = audited
    found = _flagged(result, check, attribute, group, segment)
    assert len(found) == 1, f"{check} {attribute}={group} {segment} not flagged"
    assert low <= found[0].estimate <= high
    assert found[0].ci_low <= found[0].estimate <= found[0].ci_high
    assert found[0].q_value < 0.05


def test_the_premium_mix_confounder_is_not_flagged(audited):
    result, _ = audited
    capital = [f for f in result.findings if f.group and "Capital" in f.group and f.is_flagged]
    assert capital == [], [f.summary for f in capital]


def test_findings_json_follows_the_contract(audited):
    _, path = audited
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["schema_version"] == 1
    assert CONTRACT_RUN_KEYS <= set(data["run"])
    assert {"passed", "expectations", "quarantined_rows"} <= set(data["data_quality"])
    assert data["data_quality"]["passed"] is True
    assert data["findings"]
    for finding in data["findings"]:
        assert CONTRACT_FINDING_KEYS <= set(finding)
        assert finding["severity"] in ("high", "medium", "low")
        assert finding["status"] in ("new", "persisting", "resolved")
        assert finding["summary"]
        if finding["suppressed"]:
            assert finding["estimate"] is None and finding["n_customers_group"] is None
    assert AuditResult.from_dict(data).to_dict() == data


def test_no_customer_id_leaks_into_findings(audited):
    _, path = audited
    assert "C0" not in path.read_text(encoding="utf-8")  # sample customer ids look like C000123


def test_the_report_renders_the_result(audited, tmp_path):
    from reports.render import render_report

    result, _ = audited
    report = render_report(result, tmp_path)
    html = report.read_text(encoding="utf-8")
    assert "<html" in html and result.run.run_id in html
    markup = re.sub(r"<script[^>]*>.*?</script>", "<script></script>", html, flags=re.DOTALL)
    assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup) is None  # nothing fetched from elsewhere
