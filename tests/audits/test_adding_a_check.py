"""Adding a check is one SQL file, one catalogue entry and its tests (docs/checks.md): shown end to end.

A copy of the code gets a new disparity check, full-price incidence (how often a group pays the full
list price, against its reference in the same cells), as exactly two additions: `sql/checks/
full_price_incidence.sql` and its `[[check]]` entry. Nothing else is touched. A market with the sample's
planted effects is then audited by that copy in a process of its own: the check runs, is judged and
worded as its entry says, finds the planted effect (customers aged 65+ get coupons half as often, so they pay full price
more often) and appears in the report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SQL = """\
-- name: full_price_incidence
-- Detects groups paying the full list price more often than their reference on the same product,
-- day and controls. Measurement: 1 when the line was not discounted, else 0.
-- Input: temp view `coded_lines`. Output grain: one row per measured line (see price_gap.sql).
with

lines as (
    select * from coded_lines
),

final as (
    select *, (not is_discounted)::double as y
    from lines
    where is_discounted is not null
)

select * from final
"""

ENTRY = '''
[[check]]
name = "full_price_incidence"
kind = "disparity"
title = "Full-price incidence"
explanation = "Compares how often a group paid the full list price with how often the reference group did, for {cell}."
basis = "Internal policy: discounts are offered to every customer alike"
needs = [["list_price"], ["discount_amount"]]
metric = "full_price_ratio"
contrast = "rate"
display = "ratio"
axis_title = "full-price-rate ratio, group / reference (1 = same rate)"
threshold = "thresholds.max_dearer_ratio"
adverse = "higher"
next_step = "review who is left out of coupons and promotions: {who}: {evidence}"
finding = "{Who} paid the full list price {ratio} times as often as {against} for {cell}{segment} (flagged above {threshold})"
'''

# run by the copy of the code, in a process of its own: the catalogue is read once, when audits is imported
AUDIT = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import audits
    from audits.sample import MarketSpec, generate_market
    from reports.render import render_report
    from tests.audits.conftest import audit_market

    result = audit_market(generate_market(MarketSpec(n_customers=3000, days=30, n_products=30, seed=5)))
    report = render_report(result, Path(sys.argv[1]))
    print(json.dumps({
        "audits": audits.__file__,
        "checks": {c.check: c.status for c in result.checks},
        "findings": [f for f in result.to_dict()["findings"] if f["check"] == "full_price_incidence"],
        "report": report.read_text(encoding="utf-8"),
    }))
""")


@pytest.mark.slow
def test_a_check_added_as_one_sql_file_and_one_entry_runs_is_judged_and_reported(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for part in ("audits", "sql", "reports"):
        shutil.copytree(REPO / part, tree / part, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "sql" / "checks" / "full_price_incidence.sql").write_text(SQL, encoding="utf-8")
    with (tree / "sql" / "checks" / "catalogue.toml").open("a", encoding="utf-8") as catalogue:
        catalogue.write(ENTRY)

    done = subprocess.run(
        [sys.executable, "-c", AUDIT, str(tmp_path / "report")], capture_output=True, text=True, timeout=600,
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{REPO}"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])

    assert Path(out["audits"]).is_relative_to(tree)  # the copy with the new check audited, not the repository
    assert out["checks"]["full_price_incidence"] == "ok"
    assert out["checks"]["discount_incidence"] == "ok"  # the other checks still run beside it
    findings = out["findings"]
    assert findings and {f["metric"] for f in findings} == {"full_price_ratio"}
    planted = next(f for f in findings if f["attribute"] == "age_band" and f["group"] == "65+" and not f["segment"])
    assert planted["ci_low"] > 1  # coupons half as often: the full price more often, and surely so
    # worded as the entry says (with how sure it is, as every finding), not as a metric and a number
    assert planted["summary"].startswith(f"Customers with age_band = 65+ paid the full list price "
                                         f"{planted['estimate']:.2f} times as often as all other customers for the "
                                         "same product on the same day and channel (flagged above 1.25); 95% ")
    report = out["report"]
    assert "Full-price incidence" in report
    assert "Compares how often a group paid the full list price" in report
