"""breaches.csv: the consistency rules' breaching lines next to the report, never a customer id."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa

from audits.findings import AuditResult
from reports import write_breaches


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def breaches_table() -> pa.Table:
    schema = pa.schema([("check", pa.string()), ("rule", pa.string()), ("transaction_id", pa.string()),
                        ("customer_id", pa.string()), ("product_id", pa.string()), ("day", pa.date32()),
                        ("discount_code", pa.string()), ("amount", pa.decimal128(12, 2))])
    return pa.table({
        "check": ["price_arithmetic", "discount_policy", "discount_policy"],
        "rule": ["line_total_mismatch", "discount_above_policy", "discount_above_policy"],
        "transaction_id": ["T9", "T1", "T5"],
        "customer_id": ["C000001", "C000002", "C000003"],
        "product_id": ["GR-0017", "=HYPERLINK(\"http://x\")", "EL-0038"],
        "day": [dt.date(2026, 5, 3), dt.date(2026, 5, 1), dt.date(2026, 5, 2)],
        "discount_code": [None, "STAFF-50", "-50%"],
        "amount": [decimal.Decimal("30.57"), decimal.Decimal("-1.50"), decimal.Decimal("0.82")],
    }, schema=schema)


def test_writes_the_rows_as_given_with_a_header_and_no_customer_id(tmp_path: Path, sample: SimpleNamespace) -> None:
    result = sample.build_result(breaches=breaches_table())
    path = write_breaches(result, tmp_path / "run")
    assert path == tmp_path / "run" / "breaches.csv"
    assert read_csv(path) == [
        ["check", "rule", "transaction_id", "product_id", "day", "discount_code", "amount"],
        ["price_arithmetic", "line_total_mismatch", "T9", "GR-0017", "2026-05-03", "", "30.57"],
        # a text value a spreadsheet would run as a formula is quoted; numbers are written as they are
        ["discount_policy", "discount_above_policy", "T1", "'=HYPERLINK(\"http://x\")", "2026-05-01", "STAFF-50",
         "-1.50"],
        ["discount_policy", "discount_above_policy", "T5", "EL-0038", "2026-05-02", "'-50%", "0.82"],
    ]
    assert "C00000" not in path.read_text(encoding="utf-8")
    assert sorted(os.listdir(path.parent)) == ["breaches.csv"]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_no_breaches_no_file_and_a_stale_one_removed(tmp_path: Path, sample: SimpleNamespace) -> None:
    stale = tmp_path / "breaches.csv"
    stale.write_text("check,rule\nold,run\n", encoding="utf-8")
    assert write_breaches(sample.build_result(), tmp_path) is None  # breaches None: nothing to write
    assert not stale.exists()
    assert write_breaches(sample.build_result(), tmp_path / "new") is None
    assert not (tmp_path / "new").exists()


def test_rewrites_atomically(tmp_path: Path, sample: SimpleNamespace) -> None:
    first = write_breaches(sample.build_result(breaches=breaches_table()), tmp_path)
    first.write_text("half a fil", encoding="utf-8")
    one_row = breaches_table().slice(0, 1)
    assert write_breaches(sample.build_result(breaches=one_row), tmp_path) == first
    assert len(read_csv(first)) == 2 and sorted(os.listdir(tmp_path)) == ["breaches.csv"]


def test_the_demo_audit_writes_the_file_its_report_links(demo_result: AuditResult, demo_report: Path,
                                                         parse: Callable) -> None:
    path = demo_report.parent / "breaches.csv"  # written by the fixture, as the publish step does
    rows = read_csv(path)
    assert rows[0] == demo_result.breaches.column_names and "customer_id" not in rows[0]
    assert len(rows) - 1 == demo_result.breaches.num_rows
    assert not re.search(r"\bC\d{5,}\b", path.read_text(encoding="utf-8"))  # sample customer ids: C000123
    # each rule's rows in breaches.csv, as its finding says; the report links the file where it has rows
    flagged = {f.metric: f.details["breach_rows"] for f in demo_result.findings if (f.details or {}).get("breach_rows")}
    assert {rule: sum(1 for r in rows[1:] if r[1] == rule) for rule in flagged} == flagged
    doc = parse(demo_report.read_text(encoding="utf-8"))
    links = [a for a in doc.iter("a") if a.attrs.get("href") == "breaches.csv"]
    assert len(links) == len(flagged) and (demo_report.parent / links[0].attrs["href"]).exists()
