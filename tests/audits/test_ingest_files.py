"""File sources: CSV (plain, gzip), Parquet, globs and hive folders; column mapping errors; quarantine.

Fixtures are a few hand-written lines; each test computes its right answer by hand.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audits.config import parse_config
from audits.errors import ConfigError, InputError
from audits.ingest import ingest_all, ingest_customers, ingest_transactions

HEADER = "order_id,sold_at,client,sku,qty,list_price,unit_price,currency"
LINES = [
    "T1,2026-08-01 10:00:00,C1,P1,1,10.00,10.00,EUR",
    "T2,2026-08-01 11:00:00,C2,P1,2,10.00,9.00,EUR",
    "T3,2026-08-02 09:30:00,C1,P2,1,5.50,5.50,EUR",
]
COLUMNS = {"transaction_id": "order_id", "timestamp": "sold_at", "customer_id": "client", "product_id": "sku",
           "quantity": "qty"}


def write_csv(path: Path, lines: list[str], *, header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([header, *lines]) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def config_for(root: Path, path: str, *, kind: str = "csv", max_bad_share: float = 0.05, **source):
    return parse_config({
        "sources": [{"name": "shop", "kind": kind, "path": path, "columns": dict(COLUMNS), **source}],
        "validation": {"max_bad_share": max_bad_share},
    }, base_dir=root)


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_csv_rows_are_typed_and_accounted_for(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", LINES)
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx.csv"))
    assert (batch.status, batch.rows_read, batch.rows_loaded, batch.rows_quarantined, batch.files_read) == (
        "loaded", 3, 3, 0, 1)
    assert rows(warehouse, "select transaction_id, timestamp, quantity, unit_price, currency from transactions "
                           "where transaction_id = 'T2'") == [
        ("T2", dt.datetime(2026, 8, 1, 11), Decimal("2.000"), Decimal("9.0000"), "EUR")]
    assert batch.watermark_to == "2026-08-02T09:30:00"
    assert all(e["success"] and e["element_count"] == 3 for e in batch.expectations)


def test_text_in_a_price_column_is_quarantined_naming_the_column(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", [*LINES, "T4,2026-08-02 10:00:00,C3,P2,1,5.50,five,EUR"])
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx.csv", max_bad_share=0.5))
    assert (batch.rows_read, batch.rows_loaded, batch.rows_quarantined) == (4, 3, 1)
    [(row, reason, raw, file)] = rows(warehouse, "select source_row, reason, raw, source_file from quarantine")
    assert reason == "unit_price: not a valid number"
    assert row == 4  # the fourth data line of the file
    assert json.loads(raw)["unit_price"] == "five" and json.loads(raw)["order_id"] == "T4"
    assert file == str(tmp_path / "tx.csv")
    assert rows(warehouse, "select count(*) from transactions where transaction_id = 'T4'") == [(0,)]


def test_every_broken_rule_is_a_reason(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", [
        *LINES,
        "T5,,C1,P1,0,10.00,-1,XXX",           # no timestamp, zero quantity, negative price, unknown currency
        "T6,2026-08-01 10:00:00,C1,P1,1,10.00,12.00,EUR",  # above the list price
        "T7,1999-12-31 23:00:00,,P1,1,nan,1.00,EUR",       # too early, no customer, list price not a number
    ])
    ingest_all(warehouse, config_for(tmp_path, "tx.csv", max_bad_share=0.6))
    reasons = dict(rows(warehouse, "select json_extract_string(raw, '$.order_id'), reason from quarantine"))
    assert reasons["T5"] == ("timestamp: missing; quantity: zero or negative (a return or cancellation?); "
                             "unit_price: negative; currency: unknown code")
    assert reasons["T6"] == "unit_price: above list_price"
    assert reasons["T7"] == "customer_id: missing; list_price: not a valid number; timestamp: implausibly early"


def test_gzip_csv_loads_like_plain_csv(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv.gz", LINES)
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx.csv.gz"))
    assert batch.rows_loaded == 3


def test_a_glob_reads_every_matching_file_and_nothing_else(warehouse, tmp_path):
    write_csv(tmp_path / "landing" / "day1.csv", LINES[:2])
    write_csv(tmp_path / "landing" / "day2.csv", LINES[2:])
    write_csv(tmp_path / "landing" / "notes.txt", ["not,a,transaction"])
    [batch] = ingest_all(warehouse, config_for(tmp_path, "landing/*.csv"))
    assert (batch.files_read, batch.rows_loaded) == (2, 3)


def test_a_hive_folder_gives_its_partition_as_a_transaction_attribute(warehouse, tmp_path):
    table = pa.table({"order_id": ["T1", "T2", "T3"], "sold_at": [dt.datetime(2026, 8, 1, 10)] * 3,
                      "client": ["C1", "C2", "C1"], "sku": ["P1", "P1", "P2"], "qty": [1, 2, 1],
                      "unit_price": pa.array([Decimal("10.00"), Decimal("9.00"), Decimal("5.50")],
                                             pa.decimal128(12, 2))})
    for country, index in (("DE", [0, 1]), ("FR", [2])):
        folder = tmp_path / "tx" / f"ship_country={country}"
        folder.mkdir(parents=True)
        pq.write_table(table.take(index), folder / "part-0.parquet")
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx", kind="parquet", attributes=["ship_country"]))
    assert (batch.files_read, batch.rows_loaded) == (2, 3)
    assert rows(warehouse, "select transaction_id, ship_country from transactions order by 1") == [
        ("T1", "DE"), ("T2", "DE"), ("T3", "FR")]


@pytest.mark.parametrize(("content", "what"), [("", "is empty (0 bytes)"), (HEADER + "\n", "has no rows")],
                         ids=["zero_bytes", "header_only"])
def test_an_empty_file_is_an_input_error_naming_it(warehouse, tmp_path, content, what):
    write_csv(tmp_path / "landing" / "day1.csv", LINES)
    (tmp_path / "landing" / "day2.csv").write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        ingest_all(warehouse, config_for(tmp_path, "landing/*.csv"))
    assert str(caught.value) == (f"{tmp_path / 'landing' / 'day2.csv'}: file of source 'shop' {what}; "
                                 "remove it or fix the export that wrote it")
    assert rows(warehouse, "select count(*) from transactions") == [(0,)]


def test_a_missing_mapped_column_names_column_and_source(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", LINES)
    config = config_for(tmp_path, "tx.csv", columns={**COLUMNS, "timestamp": "sold_on"})
    with pytest.raises(InputError) as caught:
        ingest_all(warehouse, config)
    message = str(caught.value)
    assert "column 'sold_on' (canonical 'timestamp') is not in source 'shop'" in message
    assert message.startswith(str(tmp_path / "tx.csv")) and "\n" not in message
    [(status, text)] = rows(warehouse, "select status, message from ingest_batches")
    assert status == "failed" and "sold_on" in text


def test_a_path_matching_nothing_is_an_input_error(warehouse, tmp_path):
    with pytest.raises(InputError, match=r"no files match for source 'shop'; check the source's path"):
        ingest_all(warehouse, config_for(tmp_path, "landing/*.csv"))


def test_an_attribute_that_is_a_canonical_column_is_a_config_error(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", LINES)
    with pytest.raises(ConfigError, match="attribute 'currency' in sources\\[\\].attributes is a column"):
        ingest_all(warehouse, config_for(tmp_path, "tx.csv", attributes=["currency"]))


def test_duplicate_ids_within_a_batch(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", [
        *LINES,
        LINES[0],                                          # T1 again, verbatim: a duplicate, not a problem
        "T2,2026-08-01 11:00:00,C2,P1,2,10.00,8.00,EUR",  # T2 again with another price: the last one wins
    ])
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx.csv", max_bad_share=0.5))
    assert (batch.rows_read, batch.rows_loaded, batch.rows_duplicate, batch.rows_quarantined) == (5, 3, 1, 1)
    assert rows(warehouse, "select reason, source_row from quarantine") == [
        ("transaction_id: duplicate within batch with other values (last row kept)", 2)]
    assert rows(warehouse, "select unit_price from transactions where transaction_id = 'T2'") == [(Decimal("8"),)]


def test_text_timestamps_honour_offsets_and_the_configured_format(warehouse, tmp_path):
    write_csv(tmp_path / "iso.csv", ["T1,2026-08-01T10:00:00+02:00,C1,P1,1,10,10,EUR",
                                     "T2,2026-08-01T10:00:00Z,C1,P1,1,10,10,EUR"])
    write_csv(tmp_path / "uk.csv", ["T3,01/08/2026 10:00,C1,P1,1,10,10,EUR"])
    config = parse_config({"sources": [
        {"name": "iso", "kind": "csv", "path": "iso.csv", "columns": COLUMNS},
        {"name": "uk", "kind": "csv", "path": "uk.csv", "columns": COLUMNS, "timestamp_format": "%d/%m/%Y %H:%M"},
    ]}, base_dir=tmp_path)
    ingest_all(warehouse, config)
    assert rows(warehouse, "select transaction_id, timestamp from transactions order by 1") == [
        ("T1", dt.datetime(2026, 8, 1, 8)), ("T2", dt.datetime(2026, 8, 1, 10)), ("T3", dt.datetime(2026, 8, 1, 10))]


def test_a_source_without_line_ids_gets_stable_derived_ids(warehouse, tmp_path):
    header = "sold_at,client,sku,qty,unit_price"
    lines = ["2026-08-01 10:00:00,C1,P1,1,2.00"] * 2 + ["2026-08-01 11:00:00,C2,P1,1,2.00"]
    write_csv(tmp_path / "tx.csv", lines, header=header)
    columns = {k: v for k, v in COLUMNS.items() if k != "transaction_id"}
    config = config_for(tmp_path, "tx.csv", columns=columns)
    [first] = ingest_all(warehouse, config)
    assert first.rows_loaded == 3  # two identical lines are two purchases
    ids = rows(warehouse, "select transaction_id from transactions order by 1")
    os.utime(tmp_path / "tx.csv", ns=(1, 1))  # the same content written again: read again, loaded once
    [again] = ingest_all(warehouse, config)
    assert (again.rows_loaded, again.rows_duplicate) == (0, 3)
    assert rows(warehouse, "select transaction_id from transactions order by 1") == ids


def test_customers_from_csv_with_attributes_and_a_bad_date(warehouse, tmp_path):
    write_csv(tmp_path / "customers.csv", ["C1,2020-01-31,F,North", "C2,yesterday,M,South", "C3,,F,South"],
              header="client_ref,customer_since,Gender,region")
    config = parse_config({"customers": {"kind": "csv", "path": "customers.csv",
                                         "columns": {"customer_id": "client_ref"}},
                           "validation": {"max_bad_share": 0.5}}, base_dir=tmp_path)
    batch = ingest_customers(warehouse, config.customers, config)
    assert (batch.rows_loaded, batch.rows_quarantined) == (2, 1)
    assert rows(warehouse, "select customer_id, customer_since, gender, region from customers order by 1") == [
        ("C1", dt.date(2020, 1, 31), "F", "North"), ("C3", None, "F", "South")]
    assert rows(warehouse, "select reason from quarantine") == [("customer_since: not a valid date",)]
    write_csv(tmp_path / "customers.csv", ["C1,2020-01-31,F,East", "C3,,F,South"],
              header="client_ref,customer_since,Gender,region")
    again = ingest_customers(warehouse, config.customers, config)
    assert (again.rows_loaded, again.rows_replaced, again.rows_duplicate) == (0, 1, 1)
    assert rows(warehouse, "select region from customers where customer_id = 'C1'") == [("East",)]


def test_progress_reports_rows_per_second(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", LINES)
    messages: list[str] = []
    ingest_transactions(warehouse, config_for(tmp_path, "tx.csv").sources[0],
                        config_for(tmp_path, "tx.csv"), progress=messages.append)
    assert any(m.startswith("shop: read 3 rows from 1 new file(s)") and "rows/s" in m for m in messages)
    assert messages[-1].startswith("shop: 3 new, 0 replaced, 0 unchanged, 0 quarantined in ")


def test_zoned_parquet_timestamps_are_stored_in_utc_and_native_numbers_need_no_text(warehouse, tmp_path):
    berlin = pa.array([dt.datetime(2026, 8, 1, 8), dt.datetime(2026, 8, 1, 9)], pa.timestamp("us", tz="UTC")).cast(
        pa.timestamp("us", tz="Europe/Berlin"))
    pq.write_table(pa.table({"order_id": ["T1", "T2"], "sold_at": berlin, "client": ["C1", "C2"], "sku": ["P1", "P1"],
                             "qty": pa.array([1, 2], pa.int16()), "unit_price": [9.5, float("nan")]}),
                   tmp_path / "tx.parquet")
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx.parquet", kind="parquet", max_bad_share=0.5))
    assert rows(warehouse, "select transaction_id, timestamp, quantity, unit_price from transactions") == [
        ("T1", dt.datetime(2026, 8, 1, 8), Decimal("1"), Decimal("9.5"))]
    assert rows(warehouse, "select reason from quarantine") == [("unit_price: not a valid number",)]
    assert batch.rows_quarantined == 1


def _parquet_lines(ids: list[str], prices: list[float]) -> pa.Table:
    n = len(ids)
    return pa.table({"order_id": ids, "sold_at": [dt.datetime(2026, 8, 1, 10)] * n, "client": ["C1"] * n,
                     "sku": ["P1"] * n, "qty": [1] * n, "unit_price": prices})


def test_parquet_is_staged_from_the_files_with_rows_numbered_within_each(warehouse, tmp_path):
    """Parquet rows are staged straight from the files: quarantined rows still name their file and row
    within it, the raw values as read, and of a duplicated id the row read last (later file) is kept."""
    folder = tmp_path / "tx"
    folder.mkdir()
    pq.write_table(_parquet_lines(["T1", "T2", "T3"], [10.0, -1.0, 7.0]), folder / "a.parquet")
    pq.write_table(_parquet_lines(["T4", "T3", "T5"], [5.0, 8.0, float("nan")]), folder / "b.parquet")
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx/*.parquet", kind="parquet", max_bad_share=0.6))
    assert (batch.rows_read, batch.rows_loaded, batch.rows_quarantined, batch.files_read) == (6, 3, 3, 2)
    quarantined = rows(warehouse, "select source_file, source_row, reason, raw::json->>'order_id' from quarantine "
                                  "order by source_file, source_row")
    assert [(Path(f).name, r, reason.split(":")[0], tid) for f, r, reason, tid in quarantined] == [
        ("a.parquet", 2, "unit_price", "T2"),
        ("a.parquet", 3, "transaction_id", "T3"),
        ("b.parquet", 3, "unit_price", "T5")]
    assert rows(warehouse, "select transaction_id, unit_price from transactions order by 1") == [
        ("T1", Decimal("10")), ("T3", Decimal("8")), ("T4", Decimal("5"))]


def test_a_damaged_parquet_page_is_an_input_error_naming_the_file(warehouse, tmp_path):
    """The footer reads (columns, row counts), a data page does not: the error comes when staging reads the
    rows, and it is the same one-line input error as for a file that cannot be opened."""
    path = tmp_path / "tx.parquet"
    n = 50_000
    pq.write_table(_parquet_lines([f"T{i}" for i in range(n)], [float(i % 90 + 1) for i in range(n)]), path,
                   compression="snappy")
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 2_000):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"tx\.parquet: cannot read source 'shop' as parquet"):
        ingest_all(warehouse, config_for(tmp_path, "tx.parquet", kind="parquet"))
    assert rows(warehouse, "select count(*) from transactions") == [(0,)]


def test_great_expectations_is_imported_beside_the_staging_and_its_error_stops_the_batch(warehouse, tmp_path,
                                                                                         monkeypatch):
    """GE's import starts on its own thread once a batch has rows; the validation waits on it, and an error
    of that import stops the batch there (recorded as failed, nothing loaded), not swallowed on the thread."""
    import threading

    from audits import validate

    imported_on: list[str] = []
    real = validate.import_great_expectations

    def recorded():
        imported_on.append(threading.current_thread().name)
        return real()

    monkeypatch.setattr(validate, "import_great_expectations", recorded)
    write_csv(tmp_path / "tx.csv", LINES)
    [batch] = ingest_all(warehouse, config_for(tmp_path, "tx.csv"))
    assert batch.status == "loaded" and imported_on[0] == "great-expectations-import"

    def broken():
        raise ImportError("great_expectations is damaged")

    monkeypatch.setattr(validate, "import_great_expectations", broken)
    write_csv(tmp_path / "more" / "tx.csv", [line.replace("T", "U", 1) for line in LINES])
    with pytest.raises(ImportError, match="damaged"):
        ingest_all(warehouse, config_for(tmp_path, "more/tx.csv"))
    assert rows(warehouse, "select count(*) from transactions where transaction_id like 'U%'") == [(0,)]
    assert rows(warehouse, "select status from ingest_batches order by batch_id desc limit 1") == [("failed",)]
