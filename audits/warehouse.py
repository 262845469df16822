"""The DuckDB warehouse: opening it safely, creating the schema, adding attribute columns.

DuckDB allows one writing process per file. `open_warehouse` waits for another run's lock up to
the configured timeout and then fails with a clear message; it never opens a second writer. It opens
only a DuckDB database file (DuckDB would also open a Parquet or CSV file as a read-only database), and
turns a lack of memory or disk inside its block into one line (exit 3): DuckDB has rolled the open
transaction back, and closing the connection removes its spill files.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from audits.errors import (
    ConfigError,
    InputError,
    ResourceError,
    WarehouseBusyError,
    data_free_reason,
    one_line,
    scrub,
)
from audits.sqlfiles import SQL_DIR

BUSY = (
    "{path}: the warehouse is in use by another PriceParity run (waited {seconds:.0f} s); "
    "wait for it to finish or raise warehouse.lock_timeout_seconds"
)
UNOPENABLE = "{path}: cannot open the warehouse ({reason}); check the path and that its folder is writable"
NOT_A_WAREHOUSE = (
    "{path}: key 'warehouse.path' names a file that is not a DuckDB database (a data file?); point it at the "
    "warehouse file, or at a new file name for a new warehouse"
)
OUT_OF_MEMORY = (
    "{path}: out of memory (warehouse.memory_limit = {limit}); nothing of this step was kept: raise "
    "warehouse.memory_limit or free memory, then run again"
)
DISK_FULL = (
    "{path}: no space left on the device of the warehouse or its spill files; nothing of this step was kept: "
    "free space there or move warehouse.path, then run again"
)
_DUCKDB_MAGIC = (8, b"DUCK")  # offset and bytes of a DuckDB database file's magic number
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
    if str(path) != ":memory:" and not _is_duckdb_file(path):
        raise ConfigError(NOT_A_WAREHOUSE.format(path=path))
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
    except (duckdb.OutOfMemoryException, MemoryError) as err:
        data_free_reason(err)  # the cause a traceback (a Prefect task's log) prints
        raise ResourceError(OUT_OF_MEMORY.format(path=path, limit=memory_limit)) from err
    except (duckdb.Error, OSError) as err:
        if not is_disk_full(err):
            scrub(err)  # a traceback of it (a bug's, a Prefect task's log) must not quote the data
            raise
        data_free_reason(err)
        raise ResourceError(DISK_FULL.format(path=path)) from err
    finally:
        con.close()


def _is_duckdb_file(path: Path) -> bool:
    """Whether `path` is missing or empty (DuckDB creates a warehouse there) or a DuckDB database file."""
    offset, magic = _DUCKDB_MAGIC
    try:
        with path.open("rb") as file:
            head = file.read(offset + len(magic))
    except FileNotFoundError:
        return True
    except OSError:
        return True  # unreadable: connect() names the reason (UNOPENABLE)
    return not head or head[offset:] == magic


def is_disk_full(err: BaseException) -> bool:
    """Whether an OS or DuckDB error (or its data-free rewording) says the device is full."""
    said = re.search(r"no space left on (the )?device", str(err), re.IGNORECASE)
    return getattr(err, "errno", None) == errno.ENOSPC or said is not None


def apply_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every warehouse table that does not exist yet (idempotent)."""
    con.execute((SQL_DIR / "schema" / "warehouse.sql").read_text(encoding="utf-8"))


def threads(con: duckdb.DuckDBPyConnection) -> int:
    """DuckDB's threads (warehouse.threads, or one per core): also how many of the audit's pass-2 walks and
    of the night's windows run at once."""
    return int(con.execute("select current_setting('threads')").fetchone()[0])


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
