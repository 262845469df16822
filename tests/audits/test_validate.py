"""Great Expectations as the independent gate: it catches what the row rules would let through.

The staged tables here are written by hand, as if the SQL rules had a hole, so each expectation's
unexpected count is known in advance.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from audits.config import parse_config
from audits.validate import validate_transactions

GOOD = ("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 1, 10.0, 9.0, "EUR")


def staged(con: duckdb.DuckDBPyConnection, lines: list[tuple], *, reasons: dict[int, list[str]] | None = None,
           repeats: set[int] = frozenset()) -> None:
    """A staged table like audits/staging.py makes: one row per line, with reasons, is_repeat and id_hash."""
    con.execute("""create or replace temp table staged (
        source_row bigint, transaction_id varchar, timestamp timestamp, customer_id varchar, product_id varchar,
        quantity decimal(18, 3), list_price decimal(18, 4), unit_price decimal(18, 4), currency varchar,
        reasons varchar[], is_repeat boolean, id_hash ubigint)""")
    for row, line in enumerate(lines):
        tid, ts, customer, product, quantity, list_price, unit_price, currency = line
        con.execute("insert into staged values ($row, $tid, $ts, $c, $p, $q, $lp, $up, $cur, $reasons, $repeat, "
                    "hash($tid))", {"row": row, "tid": tid.format(n=row), "ts": ts, "c": customer, "p": product,
                                    "q": quantity, "lp": list_price, "up": unit_price, "cur": currency,
                                    "reasons": (reasons or {}).get(row, []), "repeat": row in repeats})


def by_name(results: list[dict]) -> dict[str, tuple[bool, int, int]]:
    return {f"{r['expectation']}:{r['column']}": (r["success"], r["unexpected_count"], r["element_count"])
            for r in results}


def test_clean_rows_pass_every_expectation():
    con = duckdb.connect()
    staged(con, [GOOD] * 5)
    results = validate_transactions(con, "staged", config=parse_config({}))
    assert results and all(r["success"] for r in results)
    assert {r["element_count"] for r in results} == {5}
    assert "expect_column_values_to_be_in_type_list:timestamp" in by_name(results)


def test_each_broken_contract_fails_its_expectation():
    con = duckdb.connect()
    staged(con, [
        GOOD,
        ("T{n}", dt.datetime(2026, 8, 1, 10), None, "P1", 1, 10.0, 9.0, "EUR"),       # no customer
        ("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 1, 10.0, -2.0, "EUR"),      # negative price
        ("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 1, 10.0, 12.0, "EUR"),      # above the list price
        ("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 1, 10.0, 9.0, "XYZ"),       # unknown currency
        ("T{n}", dt.datetime(2999, 1, 1), "C1", "P1", 1, 10.0, 9.0, "EUR"),           # in the future
        ("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 0, 10.0, 9.0, "EUR"),       # zero quantity
    ])
    results = by_name(validate_transactions(con, "staged", config=parse_config({})))
    assert results["expect_column_values_to_not_be_null:customer_id"] == (False, 1, 7)
    assert results["expect_column_values_to_be_between:unit_price"][:2] == (False, 1)
    assert results["expect_column_pair_values_a_to_be_greater_than_b:list_price >= unit_price"][:2] == (False, 1)
    assert results["expect_column_values_to_be_in_set:currency"][:2] == (False, 1)
    assert results["expect_column_values_to_be_between:timestamp"][:2] == (False, 1)
    assert results["expect_column_values_to_be_between:quantity"][:2] == (False, 1)
    assert results["expect_column_values_to_not_be_null:product_id"] == (True, 0, 7)


def test_uniqueness_holds_over_the_batch_not_just_a_chunk():
    con = duckdb.connect()
    lines = [GOOD] * 40 + [("DUP", *GOOD[1:])] * 2
    staged(con, lines)
    config = parse_config({"validation": {"chunk_rows": 5}})  # about 9 chunks: the two DUP rows are far apart
    results = by_name(validate_transactions(con, "staged", config=config))
    assert results["expect_column_values_to_be_unique:transaction_id"][:2] == (False, 2)
    assert results["expect_column_values_to_not_be_null:transaction_id"][2] == 42  # every row, once


@pytest.mark.parametrize("chunk_rows", [1, 1_000])  # several chunks (sorted into a temp table) and one
def test_quarantined_and_repeated_rows_are_not_validated(chunk_rows):
    con = duckdb.connect()
    bad = ("T{n}", dt.datetime(2026, 8, 1, 10), None, "P1", 1, 10.0, -1.0, "EUR")
    staged(con, [GOOD, GOOD, bad, ("T0", *GOOD[1:])], reasons={2: ["customer_id: missing"]}, repeats={3})
    results = validate_transactions(con, "staged", config=parse_config({"validation": {"chunk_rows": chunk_rows}}))
    assert all(r["success"] and r["element_count"] == 2 for r in results)
    assert not con.execute("select count(*) from duckdb_tables() where table_name = 'validation_chunks'").fetchone()[0]


def test_optional_columns_and_policy_shape_the_suite():
    con = duckdb.connect()
    staged(con, [("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 1, 10.0, 12.0, "EUR")])
    allowed = by_name(validate_transactions(con, "staged", config=parse_config({"policy": {"allow_above_list": True}}),
                                            optional_columns=["list_price"]))
    assert all(ok for ok, _, _ in allowed.values())
    assert not any("currency" in name or ">=" in name for name in allowed)


def test_great_expectations_still_has_the_fingerprint_switch():
    from great_expectations.execution_engine import pandas_execution_engine

    assert hasattr(pandas_execution_engine, "HASH_THRESHOLD"), (
        "GE dropped HASH_THRESHOLD: validation now hashes every chunk (~1 s per million rows); "
        "see disable_batch_fingerprint in audits/validate.py")


@pytest.mark.parametrize("chunk_rows", [1, 3, 1_000])
def test_chunking_does_not_change_the_result(chunk_rows):
    con = duckdb.connect()
    staged(con, [GOOD] * 6 + [("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 1, 10.0, -1.0, "EUR")])
    config = parse_config({"validation": {"chunk_rows": chunk_rows}})
    results = by_name(validate_transactions(con, "staged", config=config))
    assert results["expect_column_values_to_be_between:unit_price"][:2] == (False, 1)
    assert results["expect_column_values_to_not_be_null:customer_id"] == (True, 0, 7)


FRESH_PROCESS = """
import datetime as dt, json, sys
import duckdb
from audits.config import parse_config
from audits.validate import DEFERRED_FOR_GE, validate_transactions
from tests.audits.test_validate import GOOD, by_name, staged

con = duckdb.connect()
staged(con, [GOOD] * 3 + [("T{n}", dt.datetime(2026, 8, 1, 10), "C1", "P1", 1, 10.0, -1.0, "EUR")])
results = by_name(validate_transactions(con, "staged", config=parse_config({})))
executed = [m for m in ("scipy.stats._stats_py", "altair.vegalite") if m in sys.modules]
stand_ins = [m for m in DEFERRED_FOR_GE if type(sys.modules.get(m)).__name__ == "_Deferred"]
import scipy.stats.distributions
from scipy import stats
import altair
print(json.dumps({"unit_price": results["expect_column_values_to_be_between:unit_price"][:2],
                  "executed": executed, "stand_ins": stand_ins, "t": float(stats.t.sf(2.0, 10)),
                  "same": stats.norm is scipy.stats.distributions.norm, "altair": bool(altair.Chart),
                  "real": type(sys.modules["scipy.stats"]).__name__}))
"""


@pytest.mark.slow  # a fresh interpreter imports Great Expectations
def test_great_expectations_runs_without_the_modules_it_never_uses():
    """In a fresh interpreter (this one has scipy.stats already): GE validates with scipy.stats and
    altair standing in unloaded, and both load whole, once, on first use."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS], cwd=root, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["unit_price"] == [False, 1]
    assert seen["executed"] == [] and seen["stand_ins"] == ["scipy.stats", "altair"]
    assert seen["t"] == pytest.approx(0.036694, rel=1e-4)
    assert seen["same"] and seen["altair"] and seen["real"] == "module"
