"""Columns of the wrong type and derived columns a user gets wrong, through the real CLI as a subprocess
(issue 21, item 9; issue 23): what reaches the terminal is one line on stderr with the right exit code,
no traceback and no data value, and the warehouse holds nothing it should not.

Each case writes a tiny Parquet or CSV export whose ids and values are marked (SECRET-...), so that any
data value in the output is seen.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

N = 40
MAPPING = """[sources.columns]
transaction_id = "order_id"
customer_id = "client"
product_id = "sku"
timestamp = "sold_at"
quantity = "qty"
unit_price = "price"
"""


def export(**replace: pa.Array) -> pa.Table:
    columns = {
        "order_id": pa.array([f"SECRET-T{i}" for i in range(N)]),
        "client": pa.array([f"SECRET-C{i % 7}" for i in range(N)]),
        "sku": pa.array([f"SECRET-P{i % 3}" for i in range(N)]),
        "sold_at": pa.array([dt.datetime(2026, 8, 1, 10) + dt.timedelta(hours=i) for i in range(N)]),
        "qty": pa.array([1] * N),
        "price": pa.array([12.25 + i for i in range(N)]),
    }
    return pa.table({**columns, **replace})


def run_cli(folder: Path, config: str, *command: str) -> subprocess.CompletedProcess:
    (folder / "config.toml").write_text('[warehouse]\npath = "warehouse.duckdb"\n\n' + config, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "flows.cli", *command, "--config", "config.toml"], cwd=folder,
                          capture_output=True, text=True, timeout=300)


def counts(folder: Path) -> tuple[int, int]:
    if not (folder / "warehouse.duckdb").exists():
        return 0, 0
    con = duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True)
    try:
        return (con.execute("select count(*) from transactions").fetchone()[0],
                con.execute("select count(*) from quarantine").fetchone()[0])
    finally:
        con.close()


def assert_one_line(done: subprocess.CompletedProcess, exit_code: int, expected: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == exit_code, output
    assert "Traceback" not in output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], done.stderr
    assert "SECRET" not in output


SOURCE = '[[sources]]\nname = "shop"\nkind = "parquet"\npath = "tx.parquet"\n'


@pytest.mark.parametrize(("column", "values", "expected"), [
    ("price", pa.array([i % 2 == 0 for i in range(N)]),
     "column 'price' (canonical 'unit_price') has type BOOLEAN, which cannot be read as a number"),
    ("client", pa.array([[f"SECRET-C{i}"] for i in range(N)]),
     "column 'client' (canonical 'customer_id') has type VARCHAR[], which cannot be read as a single value"),
    ("order_id", pa.array([{"ref": f"SECRET-T{i}"} for i in range(N)]),
     "column 'order_id' (canonical 'transaction_id') has type STRUCT("),
], ids=["boolean_price", "list_customer_id", "struct_transaction_id"])
def test_a_column_of_the_wrong_type_is_refused_naming_it(tmp_path, column, values, expected):
    pq.write_table(export(**{column: values}), tmp_path / "tx.parquet")
    done = run_cli(tmp_path, SOURCE + MAPPING, "ingest")
    assert_one_line(done, 2, expected)
    assert counts(tmp_path) == (0, 0)


def test_timestamp_format_on_typed_parquet_timestamps_is_accepted_with_a_note(tmp_path):
    pq.write_table(export(), tmp_path / "tx.parquet")
    done = run_cli(tmp_path, SOURCE + 'timestamp_format = "%d/%m/%Y %H:%M"\n' + MAPPING, "ingest")
    assert done.returncode == 0 and done.stderr.strip() == "", done.stdout + done.stderr
    assert "shop: timestamp_format not used: column 'sold_at' is already a typed timestamp" in done.stdout
    assert "SECRET" not in done.stdout
    assert counts(tmp_path) == (N, 0)


@pytest.mark.parametrize(("expression", "expected"), [
    ("(select max(price) from read_parquet('tx.parquet'))", "key 'sources[0].derive.list_price' must be a single "
                                                            "scalar expression over the source's columns, but has a "
                                                            "subquery"),
    ("price from read_csv('/etc/passwd')", "but has a FROM clause"),
])
def test_a_derived_expression_that_reads_beyond_the_row_is_refused_naming_the_key(tmp_path, expression, expected):
    pq.write_table(export(), tmp_path / "tx.parquet")
    done = run_cli(tmp_path, SOURCE + MAPPING + f'[sources.derive]\nlist_price = "{expression}"\n', "ingest")
    assert_one_line(done, 2, expected)
    assert counts(tmp_path) == (0, 0)


def test_a_value_a_derived_expression_fails_on_is_quarantined_without_showing_it(tmp_path):
    prices = [f"{12.25 + i}" for i in range(N)]
    prices[5] = "SECRET-twelve"
    pq.write_table(export(price_text=pa.array(prices)), tmp_path / "tx.parquet")
    mapping = MAPPING.replace('unit_price = "price"\n', "")
    done = run_cli(tmp_path, SOURCE + mapping + '[sources.derive]\nunit_price = "CAST(price_text AS DECIMAL(10, 2))"\n',
                   "ingest")
    assert done.returncode == 0 and done.stderr.strip() == "", done.stdout + done.stderr
    assert "1 quarantined" in done.stdout and "SECRET" not in done.stdout
    assert counts(tmp_path) == (N - 1, 1)
