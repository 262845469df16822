"""Flat exports (issue 23): derived columns, na_values, absent canonical columns, columns the audit names,
and column types that cannot hold what they are read as.

Fixtures are a few hand-written rows of a policy book or a loan book; each right answer is worked out
by hand in the test.
"""

from __future__ import annotations

import datetime as dt
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
from audits.ingest import ingest_all
from tests.audits.test_postgres_ingest import config_for as postgres_config
from tests.audits.test_postgres_ingest import pg, sales  # noqa: F401 - fixtures

POLICIES = "IDpol,Year,Premium,BonusMalus,Gender,DrivAge\n" + "\n".join([
    "7,2023,100.5,50,F,30",
    "7,2024,110.0,55,F,31",
    "8,2024,90.25,100,null,45",
    "9,2024,80.0,NA,M,19",
])


def policy_book(root: Path, text: str = POLICIES, **source) -> tuple[Path, dict]:
    (root / "policies.csv").write_text(text + "\n", encoding="utf-8")
    body = {"name": "policies", "kind": "csv", "path": "policies.csv", "currency": "EUR",
            "columns": {"customer_id": "IDpol", "premium": "Premium", "gender": "Gender", "age": "DrivAge"},
            "derive": {"transaction_id": "IDpol || '-' || Year", "bonus_malus": "CAST(BonusMalus AS INTEGER)"},
            **source}
    return root, body


def config(root: Path, source: dict, *, audit: dict | None = None, **sections):
    audit = audit or {"attributes": ["gender", "age"], "cell": ["bonus_malus"], "controls": [],
                      "outcome": {"column": "premium"}}
    return parse_config({"sources": [source], "audit": audit, **sections}, base_dir=root, file="book.toml")


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_a_policy_book_loads_with_derived_ids_and_kept_columns_without_a_timestamp(warehouse, tmp_path):
    root, source = policy_book(tmp_path)
    [batch] = ingest_all(warehouse, config(root, source, validation={"max_bad_share": 0.5}))
    # the fourth row's BonusMalus is 'NA': missing (na_values), so its derived value is null, not a failure
    assert (batch.rows_read, batch.rows_loaded, batch.rows_quarantined) == (4, 4, 0)
    assert rows(warehouse, """
        select transaction_id, timestamp, customer_id, product_id, quantity, unit_price, premium, gender, age,
               bonus_malus from transactions order by 1""") == [
        ("7-2023", None, "7", "(all)", Decimal("1.000"), None, "100.5", "F", "30", "50"),
        ("7-2024", None, "7", "(all)", Decimal("1.000"), None, "110.0", "F", "31", "55"),
        ("8-2024", None, "8", "(all)", Decimal("1.000"), None, "90.25", None, "45", "100"),
        ("9-2024", None, "9", "(all)", Decimal("1.000"), None, "80.0", "M", "19", None)]
    # only the columns kept: BonusMalus (read by a derived column) and Year are not attributes
    columns = {r[0] for r in rows(warehouse, "describe transactions")}
    assert {"premium", "gender", "age", "bonus_malus"} <= columns and not {"year", "bonusmalus"} & columns
    names = {e["column"] for e in batch.expectations}
    assert "timestamp" not in names and "unit_price" not in names and "customer_id" in names


def test_a_snapshot_file_is_loaded_once_by_its_fingerprint(warehouse, tmp_path):
    root, source = policy_book(tmp_path)
    cfg = config(root, source)
    ingest_all(warehouse, cfg)
    [again] = ingest_all(warehouse, cfg)
    assert (again.rows_read, again.files_skipped) == (0, 1)
    os.utime(root / "policies.csv", ns=(1, 1))  # touched, not changed: read again, every row recognised
    [touched] = ingest_all(warehouse, cfg)
    assert (touched.rows_read, touched.rows_loaded, touched.rows_duplicate) == (4, 0, 4)


def test_a_failed_derived_value_quarantines_its_row_without_the_value(warehouse, tmp_path):
    root, source = policy_book(tmp_path, POLICIES.replace("100,null", "1O0,null"))  # a letter O
    [batch] = ingest_all(warehouse, config(root, source, validation={"max_bad_share": 0.5}))
    assert (batch.rows_loaded, batch.rows_quarantined) == (3, 1)
    [(row, reason, raw)] = rows(warehouse, "select source_row, reason, raw from quarantine")
    assert (row, reason) == (3, "bonus_malus: derived expression failed")
    assert json.loads(raw)["BonusMalus"] == "1O0"  # the row as read stays in the quarantine table


def test_na_values_are_read_as_missing_in_every_text_column_after_trimming(warehouse, tmp_path):
    root, source = policy_book(tmp_path, POLICIES.replace("F,30", " n/a ,30").replace("M,19", "NA,19"),
                               na_values=["n/a"])
    [batch] = ingest_all(warehouse, config(root, source, validation={"max_bad_share": 0.5}))
    # 'n/a' is missing; 'null' is a value when the source's na_values do not list it
    assert rows(warehouse, "select gender, count(*) from transactions group by 1 order by 1") == [
        ("F", 1), ("null", 1), (None, 1)]
    # ... and so is 'NA', which the derived bonus_malus cannot cast: the fourth row is quarantined
    assert batch.rows_quarantined == 1
    assert rows(warehouse, "select source_row, reason from quarantine") == [(4, "bonus_malus: derived expression failed")]


def test_a_book_without_customer_ids_makes_each_row_its_own_customer_with_stable_ids(warehouse, tmp_path):
    (tmp_path / "loans.csv").write_text("grade,rate_pct\nA,6.5\nA,6.5\nB,9.1\n", encoding="utf-8")
    source = {"name": "loans", "kind": "csv", "path": "loans.csv", "derive": {"rate": "CAST(rate_pct AS DOUBLE)"}}
    cfg = config(tmp_path, source, audit={"attributes": [], "cell": ["grade"], "controls": [],
                                          "outcome": {"column": "rate", "scale": "points"}})
    [batch] = ingest_all(warehouse, cfg)
    assert batch.rows_loaded == 3  # two identical loans are two loans
    first = rows(warehouse, "select transaction_id, customer_id, grade, rate from transactions order by 3, 1")
    assert len({r[0] for r in first}) == 3 and len({r[1] for r in first}) == 3
    assert [(r[2], r[3]) for r in first] == [("A", "6.5"), ("A", "6.5"), ("B", "9.1")]
    warehouse.execute("delete from ingest_files")
    [again] = ingest_all(warehouse, cfg)
    assert (again.rows_loaded, again.rows_duplicate) == (0, 3)
    assert rows(warehouse, "select transaction_id, customer_id, grade, rate from transactions order by 3, 1") == first


def test_an_absent_timestamp_cannot_be_cut_into_days(warehouse, tmp_path):
    root, source = policy_book(tmp_path)
    cfg = config(root, source, audit={"attributes": ["gender", "age"], "cell": ["product_id", "day"],
                                      "outcome": {"column": "premium"}})
    with pytest.raises(ConfigError, match=r"source 'policies' has no timestamp column .* audit.cell has 'day'"):
        ingest_all(warehouse, cfg)


def test_unit_price_is_required_while_it_is_the_outcome(warehouse, tmp_path):
    root, source = policy_book(tmp_path)
    with pytest.raises(InputError, match=r"column 'unit_price' \(canonical 'unit_price'\) is not in source"):
        ingest_all(warehouse, config(root, source, audit={"attributes": ["gender", "age"], "cell": ["bonus_malus"],
                                                          "segment_by": ["premium"]}))


@pytest.mark.parametrize(("expression", "what"), [
    ("(select max(Premium) from policies)", "a subquery"),
    ("Premium from read_csv('policies.csv')", "a FROM clause"),
    ("read_text('policies.csv')", "function 'read_text', which is not one of DuckDB's scalar functions"),
    ("Premium; drop table transactions", "not an SQL expression"),
    ("sum(Premium)", "function 'sum'"),
    ("geomean([Premium])", "does not work over the source's columns"),  # an aggregate behind a macro
    ("random()", "function 'random', which is not a value of the row alone"),
    ("t.Premium", "column 't.Premium' of another table"),
    ("Premum * 2", "reads column 'Premum', which is not in source 'policies'"),
    ("CAST(Premium AS NOSUCHTYPE)", "type 'NOSUCHTYPE', which is not one of DuckDB's built-in types"),
    ("CAST(Premium AS INET)", "type 'INET', which is not one of DuckDB's built-in types"),  # an extension's
    ("date_diff('day', Premium, Year)", "does not work over the source's columns"),  # text is not a date
])
def test_a_derived_expression_that_is_not_one_scalar_over_the_row_is_refused_naming_the_key(
        warehouse, tmp_path, expression, what):
    root, source = policy_book(tmp_path)
    source["derive"] = {**source["derive"], "loading": expression}
    with pytest.raises(ConfigError) as caught:
        ingest_all(warehouse, config(root, source))
    assert str(caught.value).startswith("book.toml: key 'sources[0].derive.loading' ")
    assert what in str(caught.value)
    assert rows(warehouse, "select count(*) from transactions") == [(0,)]


def write_parquet(path: Path, **columns: pa.Array) -> None:
    pq.write_table(pa.table(columns), path)


LINE = {"order_id": pa.array(["T1", "T2"]), "client": pa.array(["C1", "C2"]), "sku": pa.array(["P1", "P1"]),
        "sold_at": pa.array([dt.datetime(2026, 8, 1, 10), dt.datetime(2026, 8, 1, 11)]),
        "qty": pa.array([1, 2]), "price": pa.array([9.5, 8.0])}
SHOP = {"name": "shop", "kind": "parquet", "path": "tx.parquet",
        "columns": {"transaction_id": "order_id", "customer_id": "client", "product_id": "sku",
                    "timestamp": "sold_at", "quantity": "qty", "unit_price": "price"}}


@pytest.mark.parametrize(("column", "values", "message"), [
    ("price", pa.array([True, False]),
     "column 'price' (canonical 'unit_price') has type BOOLEAN, which cannot be read as a number"),
    ("client", pa.array([["C1"], ["C2"]]),
     "column 'client' (canonical 'customer_id') has type VARCHAR[], which cannot be read as a single value"),
    ("order_id", pa.array([{"id": 1}, {"id": 2}]),
     "column 'order_id' (canonical 'transaction_id') has type STRUCT(id BIGINT), which cannot be read as a single"),
    ("sold_at", pa.array([1, 2]),
     "column 'sold_at' (canonical 'timestamp') has type BIGINT, which cannot be read as a timestamp or date"),
])
def test_a_column_whose_type_cannot_hold_its_canonical_column_is_refused(warehouse, tmp_path, column, values,
                                                                         message):
    write_parquet(tmp_path / "tx.parquet", **{**LINE, column: values})
    with pytest.raises(InputError) as caught:
        ingest_all(warehouse, parse_config({"sources": [SHOP]}, base_dir=tmp_path))
    assert str(caught.value).startswith(f"source 'shop': {message}")
    assert rows(warehouse, "select count(*) from transactions") == [(0,)]


def test_a_derived_column_of_the_wrong_type_is_refused_naming_its_key(warehouse, tmp_path):
    write_parquet(tmp_path / "tx.parquet", **LINE)
    source = {**SHOP, "columns": {k: v for k, v in SHOP["columns"].items() if k != "unit_price"},
              "derive": {"unit_price": "price > 9"}}
    with pytest.raises(InputError, match=r"key 'sources\[0\].derive.unit_price' gives type BOOLEAN, which cannot "
                                         r"be read as a number; cast it in the expression"):
        ingest_all(warehouse, parse_config({"sources": [source]}, base_dir=tmp_path))


def test_timestamp_format_is_not_used_for_typed_timestamps_and_says_so(warehouse, tmp_path):
    write_parquet(tmp_path / "tx.parquet", **LINE)
    said: list[str] = []
    [batch] = ingest_all(warehouse, parse_config({"sources": [{**SHOP, "timestamp_format": "%d/%m/%Y %H:%M"}]},
                                                 base_dir=tmp_path), progress=said.append)
    assert batch.rows_loaded == 2
    assert rows(warehouse, "select max(timestamp) from transactions") == [(dt.datetime(2026, 8, 1, 11),)]
    assert "shop: timestamp_format not used: column 'sold_at' is already a typed timestamp" in said


def test_customers_derive_their_id_and_attributes(warehouse, tmp_path):
    (tmp_path / "customers.csv").write_text("ref,born\n7,1980\n8,NA\n", encoding="utf-8")
    cfg = parse_config({"customers": {"kind": "csv", "path": "customers.csv",
                                      "derive": {"customer_id": "'P' || ref", "birth_decade": "CAST(born AS INTEGER) // 10 * 10"}}},
                       base_dir=tmp_path)
    ingest_all(warehouse, cfg)
    assert rows(warehouse, "select customer_id, birth_decade from customers order by 1") == [
        ("P7", "1980"), ("P8", None)]


def test_a_column_the_audit_names_may_be_mapped_without_an_attributes_list():
    source = {"name": "loans", "kind": "csv", "path": "loans.csv", "columns": {"age": "borrower_age"}}
    parsed = parse_config({"sources": [source], "audit": {"attributes": ["age"]}})
    assert parsed.sources[0].source_column("age") == "borrower_age" and parsed.sources[0].attributes == ()
    with pytest.raises(ConfigError, match=r"key 'sources\[0\].columns.age' is not a canonical column"):
        parse_config({"sources": [source]})


@pytest.mark.parametrize(("derive", "what"), [({"age": "borrower_age + 1"}, "mapped in its columns too"),
                                              ({"batch_id": "1"}, "a bookkeeping column")])
def test_a_derived_name_that_is_taken_is_refused(derive, what):
    source = {"name": "loans", "kind": "csv", "path": "loans.csv", "columns": {"age": "borrower_age"},
              "derive": derive}
    with pytest.raises(ConfigError, match=f"key 'sources\\[0\\].derive.{next(iter(derive))}' names .*, {what}"):
        parse_config({"sources": [source], "audit": {"attributes": ["age"]}})


@pytest.mark.postgres
def test_a_postgres_source_derives_columns_and_refuses_a_boolean_price(sales, warehouse):
    # ROWS of tests/audits/test_postgres_ingest.py (line 5's negative price is quarantined there too)
    [batch] = ingest_all(warehouse, postgres_config(sales, derive={"ship_zone": "upper(ship_country) || '-EU'"}))
    assert (batch.rows_loaded, batch.rows_quarantined) == (4, 1)
    assert rows(warehouse, "select ship_zone, count(*) from transactions group by 1 order by 1") == [
        ("DE-EU", 3), ("FR-EU", 1)]
    sales.execute(f"alter table {sales.table} add column is_paid boolean default true")
    columns = {**postgres_config(sales).sources[0].columns, "unit_price": "is_paid"}
    with pytest.raises(InputError, match=r"column 'is_paid' \(canonical 'unit_price'\) has type BOOLEAN"):
        ingest_all(warehouse, postgres_config(sales, columns=columns))
