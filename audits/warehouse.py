"""The DuckDB warehouse: opening it safely, creating the schema, adding attribute columns.

DuckDB allows one writing process per file. `open_warehouse` waits for another run's lock up to
the configured timeout and then fails with a clear message; it never opens a second writer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from audits.errors import InputError, WarehouseBusyError, one_line
from audits.sqlfiles import SQL_DIR

BUSY = (
    "{path}: the warehouse is in use by another PriceParity run (waited {seconds:.0f} s); "
    "wait for it to finish or raise warehouse.lock_timeout_seconds"
)
UNOPENABLE = "{path}: cannot open the warehouse ({reason}); check the path and that its folder is writable"
_LOCK_MESSAGE = re.compile(r"lock|conflicting|already open", re.IGNORECASE)


@contextmanager
def open_warehouse(
    path: Path,
    *,
    read_only: bool = False,
    memory_limit: str = "1.5GB",
    threads: int = 0,
    lock_timeout_seconds: float = 60.0,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (creating if needed) the warehouse, apply the schema, and close it on exit."""
    path = Path(path)
    if str(path) != ":memory:":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(UNOPENABLE.format(path=path, reason=err.strerror)) from err
    config = {"memory_limit": memory_limit}
    if threads:
        config["threads"] = threads
    deadline = time.monotonic() + lock_timeout_seconds
    delay = 0.1
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            break
        except duckdb.IOException as err:
            if not _LOCK_MESSAGE.search(str(err)):
                raise InputError(UNOPENABLE.format(path=path, reason=one_line(err))) from err
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(BUSY.format(path=path, seconds=lock_timeout_seconds)) from err
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    try:
        # DuckDB's own progress bar would scribble over the terminal and the logs; the ingest reports its own
        con.execute("set enable_progress_bar = false")
        if not read_only:
            apply_schema(con)
        yield con
    finally:
        con.close()


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every warehouse table that does not exist yet (idempotent)."""
    con.execute((SQL_DIR / "schema" / "warehouse.sql").read_text(encoding="utf-8"))


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "select column_name from information_schema.columns where table_name = ? order by ordinal_position",
        [table],
    ).fetchall()
    return [r[0] for r in rows]


def add_attribute_columns(con: duckdb.DuckDBPyConnection, table: str, names: list[str]) -> None:
    """Add VARCHAR attribute columns; names must already be validated identifiers."""
    existing = set(table_columns(con, table))
    for name in names:
        if name not in existing:
            con.execute(f'alter table {quote_identifier(table)} add column {quote_identifier(name)} varchar')


def quote_identifier(name: str) -> str:
    """Quote an identifier for DuckDB (embedded quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'
