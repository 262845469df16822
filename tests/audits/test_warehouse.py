"""The warehouse file: the schema applies idempotently and upgrades warehouses built by older versions."""

from __future__ import annotations

import duckdb

from audits.warehouse import apply_schema, open_warehouse


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_apply_schema_upgrades_an_older_warehouse():
    con = duckdb.connect()
    con.execute("create table ingest_batches (batch_id bigint not null, source varchar not null, started_at "
                "timestamp not null, finished_at timestamp, status varchar not null, watermark_from varchar, "
                "watermark_to varchar, rows_read bigint, rows_loaded bigint, rows_replaced bigint, rows_duplicate "
                "bigint, rows_quarantined bigint, seconds double, message varchar)")
    con.execute("create table quarantine (batch_id bigint not null, source varchar not null, source_row bigint "
                "not null, reason varchar not null, raw varchar not null)")
    con.execute("insert into quarantine values (1, 'shop', 3, 'unit_price: negative', '{}')")
    apply_schema(con)
    apply_schema(con)
    columns = {r[0] for r in con.execute("describe ingest_batches").fetchall()}
    assert {"watermark_column", "files_read", "files_skipped"} <= columns
    assert rows(con, "select reason, source_file from quarantine") == [("unit_price: negative", None)]


def test_open_warehouse_creates_the_schema_and_keeps_duckdb_quiet(tmp_path):
    with open_warehouse(tmp_path / "sub" / "wh.duckdb") as con:
        tables = {r[0] for r in rows(con, "select table_name from information_schema.tables")}
        assert {"transactions", "customers", "ingest_batches", "ingest_files", "quarantine"} <= tables
        assert rows(con, "select current_setting('enable_progress_bar')") == [(False,)]
    with open_warehouse(tmp_path / "sub" / "wh.duckdb") as con:  # a second open changes nothing
        assert rows(con, "select count(*) from ingest_batches") == [(0,)]
