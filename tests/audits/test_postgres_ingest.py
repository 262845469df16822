"""PostgreSQL sources against the real server on 127.0.0.1:5432: incremental by watermark, idempotent,
corrections replace, bad rows quarantined, credentials never shown, a killed load completed.

Each test gets its own table in a schema unique to the session, dropped at the end. The dsn carries
a password that trust authentication never checks, so every message can be searched for it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pytest

from audits.config import load_config, parse_config
from audits.errors import ConfigError, DataQualityError, InputError
from audits.ingest import ingest_all
from audits.sources import postgres_incremental_query
from audits.warehouse import apply_schema, open_warehouse
from tests.audits.ingest_fixtures.killed_load import run_until_paused, snapshot

SECRET = "pp-not-a-real-secret"
DSN = f"postgresql://postgres:{SECRET}@127.0.0.1:5432/test"
DSN_VARIABLE = "PP_TEST_SALES_DSN"
COLUMNS = {"transaction_id": "line_id", "timestamp": "sold_at", "customer_id": "client", "product_id": "sku",
           "quantity": "qty", "unit_price": "paid"}
B = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0, tzinfo=None) - dt.timedelta(days=10)
H = dt.timedelta(hours=1)
ROWS = [  # line_id, sold_at (UTC), client, sku, qty, list_price, paid, ship_country
    (1, B - 120 * H, "C1", "P1", 1, "10.00", "10.00", "DE"),
    (2, B - 72 * H, "C2", "P1", 2, "10.00", "9.00", "FR"),
    (3, B - 24 * H, "C1", "P2", 1, "5.50", "5.50", "DE"),
    (4, B - H, "C3", "P2", 1, "5.50", "5.00", "DE"),
    (5, B, "C2", "P3", 1, "3.00", "-3.00", "FR"),  # negative price: quarantined, and not the watermark
]
_tables = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[SimpleNamespace]:
    """A schema of our own on the real server, dropped after the session."""
    import psycopg

    # No skip: `make test` starts the server, so an unreachable one is a broken set-up, not an optional test.
    try:
        connection = psycopg.connect(DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({err}); start it with `make system-deps`")
    schema = f"pp_ingest_{os.getpid()}_{secrets.token_hex(4)}"
    connection.execute(f'create schema "{schema}"')
    try:
        yield SimpleNamespace(schema=schema, execute=connection.execute)
    finally:
        connection.execute(f'drop schema "{schema}" cascade')
        connection.close()


@pytest.fixture
def sales(pg, monkeypatch) -> SimpleNamespace:
    """A fresh `sales` table holding ROWS, and the dsn in the environment as the config expects."""
    table = f"{pg.schema}.sales_{next(_tables)}"
    pg.execute(f"""create table {table} (line_id bigint primary key, sold_at timestamptz not null, client text,
                   sku text, qty integer, list_price numeric(12, 2), paid numeric(12, 2), currency text default 'EUR',
                   ship_country text)""")
    for row in ROWS:
        insert(pg, table, *row)
    monkeypatch.setenv(DSN_VARIABLE, DSN)
    return SimpleNamespace(table=table, execute=pg.execute)


def insert(pg, table: str, line_id, sold_at, client, sku, qty, list_price, paid, country) -> None:
    pg.execute(f"insert into {table} (line_id, sold_at, client, sku, qty, list_price, paid, ship_country) "
               "values (%s, %s, %s, %s, %s, %s, %s, %s)",
               (line_id, sold_at.replace(tzinfo=dt.UTC), client, sku, qty, list_price, paid, country))


def source_config(sales, **source) -> dict:
    return {"name": "pos", "kind": "postgres", "dsn": f"env:{DSN_VARIABLE}", "table": sales.table,
            "columns": dict(COLUMNS), "attributes": ["ship_country"], **source}


def config_for(sales, *, max_bad_share: float = 0.5, **source):
    return parse_config({"sources": [source_config(sales, **source)], "validation": {"max_bad_share": max_bad_share}})


def warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    apply_schema(con)
    return con


def counts(batch) -> tuple[int, int, int, int, int]:
    return batch.rows_read, batch.rows_loaded, batch.rows_replaced, batch.rows_duplicate, batch.rows_quarantined


@pytest.mark.postgres
def test_first_load_reads_everything_and_quarantines_the_bad_row(sales):
    con = warehouse()
    messages: list[str] = []
    [batch] = ingest_all(con, config_for(sales), progress=messages.append)
    assert counts(batch) == (5, 4, 0, 0, 1)
    assert batch.watermark_from is None and batch.watermark_to == (B - H).isoformat()
    assert con.execute("select transaction_id, timestamp, unit_price, ship_country from transactions "
                       "where transaction_id = '2'").fetchall() == [("2", B - 72 * H, Decimal("9"), "FR")]
    [(reason, raw)] = con.execute("select reason, raw from quarantine").fetchall()
    assert reason == "unit_price: negative" and json.loads(raw)["line_id"] == 5
    assert any("read 5 rows from PostgreSQL" in m and "rows/s" in m for m in messages)


@pytest.mark.postgres
def test_a_rerun_reads_only_the_lookback_window_and_loads_nothing_twice(sales):
    con = warehouse()
    config = config_for(sales, lookback_hours=48)
    ingest_all(con, config)
    [again] = ingest_all(con, config)
    assert again.watermark_from == (B - H - 48 * H).isoformat() + "+00:00"
    assert counts(again) == (3, 0, 0, 2, 1)  # rows 3, 4 and 5 are at or past B - 49 h
    assert con.execute("select count(*), count(distinct transaction_id) from transactions").fetchall() == [(4, 4)]


@pytest.mark.postgres
def test_corrected_and_late_rows_within_the_lookback_replace_and_join(sales):
    con = warehouse()
    config = config_for(sales, lookback_hours=48)
    ingest_all(con, config)
    sales.execute(f"update {sales.table} set paid = 5.00 where line_id = 3")  # a correction, 24 h back
    insert(sales, sales.table, 6, B - 40 * H, "C4", "P1", 1, "10.00", "10.00", "DE")   # late, within the lookback
    insert(sales, sales.table, 7, B - 240 * H, "C4", "P1", 1, "10.00", "10.00", "DE")  # late, beyond it
    insert(sales, sales.table, 8, B + H, "C1", "P1", 1, "10.00", "10.00", "DE")        # new
    [batch] = ingest_all(con, config)
    assert counts(batch) == (5, 2, 1, 1, 1)
    assert batch.watermark_to == (B + H).isoformat()
    assert con.execute("select transaction_id, unit_price from transactions "
                       "where transaction_id in ('3', '6', '7', '8') order by 1").fetchall() == [
        ("3", Decimal("5")), ("6", Decimal("10")), ("8", Decimal("10"))]


@pytest.mark.postgres
def test_a_query_source_with_an_id_watermark(sales):
    con = warehouse()
    query = f"select line_id, sold_at, client, sku, qty, paid, currency from {sales.table} where currency = 'EUR'"
    source = {k: v for k, v in source_config(sales, watermark="transaction_id", attributes=[]).items() if k != "table"}
    config = parse_config({"sources": [{**source, "query": query}], "validation": {"max_bad_share": 0.5}})
    [first] = ingest_all(con, config)
    assert counts(first) == (5, 4, 0, 0, 1) and first.watermark_to == "4"  # the highest accepted id
    insert(sales, sales.table, 9, B - 300 * H, "C5", "P1", 1, "10.00", "10.00", "DE")  # old timestamp, new id
    [second] = ingest_all(con, config)
    assert counts(second) == (2, 1, 0, 0, 1)  # ids above 4: the bad 5 again, and 9
    assert second.watermark_to == "9"


def test_the_watermark_is_a_bound_parameter_typed_like_its_column():
    source = parse_config({"sources": [{"name": "pos", "kind": "postgres", "dsn": "x", "table": "sales.lines",
                                        "columns": {"timestamp": "sold_at"}, "lookback_hours": 6}]}).sources[0]
    schema = pa.schema([("sold_at", pa.timestamp("us", tz="UTC")), ("line_id", pa.int64())])
    sql, params, lower = postgres_incremental_query(source, schema, watermark="2026-08-10T12:00:00")
    assert sql == 'select * from "sales"."lines"\nwhere "sold_at" >= $1'
    assert params == (dt.datetime(2026, 8, 10, 6, tzinfo=dt.UTC),) and lower == "2026-08-10T06:00:00+00:00"
    assert "2026" not in sql
    by_id = parse_config({"sources": [{"name": "pos", "kind": "postgres", "dsn": "x", "query": "select 1;",
                                       "columns": {"transaction_id": "line_id"}, "watermark": "transaction_id"}]})
    sql, params, _ = postgres_incremental_query(by_id.sources[0], schema, watermark="41")
    assert sql == 'select * from (\nselect 1\n) as src\nwhere "line_id" > $1' and params == (41,)
    assert postgres_incremental_query(source, schema, watermark=None)[1:] == ((), None)  # first load: everything


@pytest.mark.parametrize(("watermark", "column_type", "message"), [
    ("timestamp", pa.string(), "watermark column 'sold_at' has type string; an incremental read needs a timestamp"),
    ("transaction_id", pa.string(), "watermark column 'line_id' has type string"),
    ("transaction_id", pa.int64(), "the stored watermark '2026-08-10T12:00:00' does not fit column 'line_id'"),
])
def test_a_watermark_that_cannot_order_rows_is_refused(watermark, column_type, message):
    source = parse_config({"sources": [{"name": "pos", "kind": "postgres", "dsn": "x", "table": "lines",
                                        "columns": {"timestamp": "sold_at", "transaction_id": "line_id"},
                                        "watermark": watermark}]}).sources[0]
    column = "sold_at" if watermark == "timestamp" else "line_id"
    with pytest.raises(InputError, match=message):
        postgres_incremental_query(source, pa.schema([(column, column_type)]), watermark="2026-08-10T12:00:00")


@pytest.mark.postgres
def test_a_missing_mapped_column_names_column_and_source(sales):
    con = warehouse()
    with pytest.raises(InputError) as caught:
        ingest_all(con, config_for(sales, columns={**COLUMNS, "unit_price": "paid_eur"}))
    assert str(caught.value).startswith(f"postgres:{sales.table}: column 'paid_eur' (canonical 'unit_price') "
                                        "is not in source 'pos'")


@pytest.mark.postgres
def test_credentials_never_reach_a_message_or_the_warehouse(sales, monkeypatch):
    con = warehouse()
    messages: list[str] = []
    ingest_all(con, config_for(sales), progress=messages.append)
    monkeypatch.setenv(DSN_VARIABLE, DSN.replace("5432", "1"))  # nothing listens on port 1
    with pytest.raises(InputError) as caught:
        ingest_all(con, config_for(sales))
    assert "source 'pos': cannot connect to PostgreSQL" in str(caught.value)
    monkeypatch.delenv(DSN_VARIABLE)
    with pytest.raises(InputError, match=f"environment variable {DSN_VARIABLE} \\(its dsn\\) is not set"):
        ingest_all(con, config_for(sales))
    recorded = con.execute("select string_agg(coalesce(message, ''), ' ') from ingest_batches").fetchone()[0]
    for text in (*messages, str(caught.value), recorded):
        assert SECRET not in text


@pytest.mark.postgres
def test_too_many_bad_rows_stop_with_exit_3_and_the_quarantine_committed(sales, tmp_path):
    with open_warehouse(tmp_path / "wh.duckdb") as con:
        with pytest.raises(DataQualityError) as caught:
            ingest_all(con, config_for(sales, max_bad_share=0.1))
    assert caught.value.exit_code == 3 and "1 of 5 rows (20.0%) of source 'pos'" in str(caught.value)
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        assert con.execute("select status, watermark_to from ingest_batches").fetchall() == [
            ("failed_quality", None)]
        assert con.execute("select reason from quarantine").fetchall() == [("unit_price: negative",)]
        assert con.execute("select count(*) from transactions").fetchall() == [(0,)]


@pytest.mark.postgres
@pytest.mark.parametrize("point", ["ingest_after_upsert", "ingest_before_commit"])
def test_a_killed_load_rolls_back_and_the_rerun_equals_an_uninterrupted_one(sales, tmp_path, point):
    def write(name: str) -> Path:
        mapping = "".join(f'{k} = "{v}"\n' for k, v in COLUMNS.items())
        path = tmp_path / f"{name}.toml"
        path.write_text(f'[warehouse]\npath = "{name}.duckdb"\n[validation]\nmax_bad_share = 0.5\n[[sources]]\n'
                        f'name = "pos"\nkind = "postgres"\ndsn = "env:{DSN_VARIABLE}"\ntable = "{sales.table}"\n'
                        f'attributes = ["ship_country"]\n[sources.columns]\n{mapping}', encoding="utf-8")
        return path

    def ingest(path: Path) -> None:
        config = load_config(path)
        with open_warehouse(config.warehouse_path) as con:
            ingest_all(con, config)

    clean, crashed = write("clean"), write("crashed")
    ingest(clean)
    shutil.copy(tmp_path / "clean.duckdb", tmp_path / "crashed.duckdb")
    after_night1 = snapshot(tmp_path / "crashed.duckdb")
    sales.execute(f"update {sales.table} set paid = 4.50 where line_id = 4")
    for line_id in range(10, 40):
        insert(sales, sales.table, line_id, B + line_id * H, "C9", "P1", 1, "10.00", "9.50", "DE")
    ingest(clean)
    run_until_paused(crashed, point, env={DSN_VARIABLE: DSN})
    assert snapshot(tmp_path / "crashed.duckdb") == after_night1
    ingest(crashed)
    assert snapshot(tmp_path / "crashed.duckdb") == snapshot(tmp_path / "clean.duckdb")
    with duckdb.connect(str(tmp_path / "crashed.duckdb"), read_only=True) as con:
        assert con.execute("select count(*), sum(unit_price) filter (transaction_id = '4') from transactions"
                           ).fetchall() == [(34, Decimal("4.5"))]


@pytest.mark.postgres
def test_customers_from_a_postgres_query(pg, monkeypatch):
    table = f"{pg.schema}.clients_{next(_tables)}"
    pg.execute(f"create table {table} (ref text, since date, \"Age Band\" text, region text)")
    pg.execute(f"insert into {table} values ('C1', '2020-01-31', '25-34', 'North'), ('C2', null, '65+', 'South'), "
               "(null, null, '18-24', 'East')")
    monkeypatch.setenv(DSN_VARIABLE, DSN)
    config = parse_config({"customers": {"kind": "postgres", "dsn": f"env:{DSN_VARIABLE}",
                                         "query": f"select ref, since, \"Age Band\", region from {table}",
                                         "columns": {"customer_id": "ref", "customer_since": "since"}},
                           "validation": {"max_bad_share": 0.5}})
    con = warehouse()
    [batch] = ingest_all(con, config)
    assert counts(batch) == (3, 2, 0, 0, 1)
    assert con.execute("select customer_id, customer_since, age_band, region from customers order by 1").fetchall() == [
        ("C1", dt.date(2020, 1, 31), "25-34", "North"), ("C2", None, "65+", "South")]
    assert con.execute("select reason from quarantine").fetchall() == [("customer_id: missing",)]


@pytest.mark.postgres
def test_a_value_postgres_refuses_is_not_quoted(sales, tmp_path):
    """A query whose cast fails on a customer id: PostgreSQL's message quotes the id (it reaches us through
    DuckDB's read of the driver's stream); the one line names the source and the condition, through the real
    CLI, and the batch's record holds no id either."""
    import subprocess

    from tests.flows.conftest import PRICEPARITY, direct_env

    sales.execute(f"update {sales.table} set client = 'SECRETCLIENT-' || line_id")
    mapping = "".join(f'{k} = "{v}"\n' for k, v in COLUMNS.items())
    config = tmp_path / "pg.toml"
    config.write_text(f'[warehouse]\npath = "wh.duckdb"\n[[sources]]\nname = "pos"\nkind = "postgres"\n'
                      f'dsn = "env:{DSN_VARIABLE}"\nquery = "select *, client::integer as client_number from '
                      f'{sales.table}"\n[sources.columns]\n{mapping}', encoding="utf-8")
    done = subprocess.run([str(PRICEPARITY), "ingest", "--config", str(config)], capture_output=True, text=True,
                          env=direct_env(**{DSN_VARIABLE: DSN}), timeout=120)
    assert done.returncode == 2, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert "source 'pos': PostgreSQL rejected the read of its query (a value that does not convert" in line
    assert "SECRETCLIENT" not in done.stdout + done.stderr and SECRET not in done.stderr
    assert "Traceback" not in done.stderr
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        recorded = con.execute("select string_agg(coalesce(message, ''), ' ') from ingest_batches").fetchone()[0]
        assert con.execute("select count(*) from transactions").fetchone() == (0,)
    assert "a value that does not convert" in recorded and "SECRETCLIENT" not in recorded


@pytest.mark.postgres
def test_a_renamed_postgres_source_is_recognised_by_its_table_and_nothing_is_loaded_twice(sales):
    """The same table under a new name: the old name's rows, batches and watermark are taken over, only the
    lookback window is read again, and no row counts twice; a second source on the same table is refused."""
    con = warehouse()
    ingest_all(con, config_for(sales))
    messages: list[str] = []
    [again] = ingest_all(con, config_for(sales, name="till"), progress=messages.append)
    assert any("till: recognised as source 'pos' renamed (it reads the same table): its 4 rows" in m
               for m in messages), messages
    assert again.watermark_from is not None and again.rows_loaded == 0
    assert con.execute("select source, count(*), count(distinct transaction_id) from transactions group by 1"
                       ).fetchall() == [("till", 4, 4)]
    [(origin,)] = con.execute("select distinct origin from ingest_batches").fetchall()
    assert origin == f"postgres://127.0.0.1:5432/test table {sales.table}" and SECRET not in origin
    both = parse_config({"sources": [source_config(sales, name="till"), source_config(sales, name="copy")],
                         "validation": {"max_bad_share": 0.5}})
    with pytest.raises(ConfigError, match=f"source 'copy': postgres://127.0.0.1:5432/test table {sales.table} was "
                                          "loaded by source 'till'; two sources must not read the same table"):
        ingest_all(con, both)


@pytest.mark.postgres
def test_a_dsn_with_a_port_that_is_not_a_number_is_the_connections_error(sales, monkeypatch):
    """Looking for a renamed source reads the dsn before the connection does: a malformed port must still end
    as the one line naming the source, not a traceback from parsing it."""
    monkeypatch.setenv(DSN_VARIABLE, f"postgresql://postgres:{SECRET}@127.0.0.1:54x2/test")
    with pytest.raises(InputError, match="source 'pos': cannot connect to PostgreSQL") as raised:
        ingest_all(warehouse(), config_for(sales))
    assert SECRET not in str(raised.value)
