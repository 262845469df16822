"""Sources: find what is new in a source and copy it into DuckDB as the temp table `src_rows`.

Reading is separate from loading (audits/ingest.py) so that each kind of source decides for itself
what "new" means, and the loader sees one shape whatever the source:

- Files (Parquet, CSV, gzip CSV; one file, a glob, or a hive-partitioned folder) are incremental by
  file. A file whose path, size and modification time match a file of an earlier loaded batch
  (table `ingest_files`) is skipped; any other file is read whole, whatever the timestamps in it,
  so a late row arriving in a new or rewritten file is always loaded. Rows already in the warehouse
  are then recognised by key (identical: counted, not written; changed: replaced). Size and mtime
  are what make and rsync trust; a content hash would cost a full read of every file every night.
  Files are listed (and their size and mtime taken) before they are read, so a file still being
  written while we read it looks changed next time and is read again: late lines are not lost.
  A file that disappears from the folder leaves its rows in the warehouse. A change of the source's
  column mapping or of the validation rules changes the batch fingerprint: every file is read again
  once, so a newly mapped attribute is filled in and rows are judged by the current rules.
- PostgreSQL is incremental by watermark: only rows whose watermark column is at or past the stored
  watermark minus `lookback_hours` are read (a `transaction_id` watermark reads ids above the stored
  one). The predicate is part of the SQL sent to the server, with the value as a bound parameter,
  so the server's indexes do the filtering. The rows stream through Arrow into DuckDB (bounded memory).
  A row corrected in place further back than the lookback, or deleted at the source, is not seen:
  set `lookback_hours` to the longest delay after which corrections still happen.

The rows are staged from `SourceRead.relation`: the source's columns as read plus `SOURCE_FILE_COLUMN`,
with `SourceRead.row_id` numbering the rows in read order (how staged and quarantined rows point back
at the raw values). CSV files and PostgreSQL rows are copied into temp table `src_rows` (its `rowid`);
Parquet files, typed and quick to read, are staged from the files themselves (the row id: the file's
position in the batch times ROW_STRIDE plus the row's number within it), which saves copying the raw
rows into memory and spilling them (10M lines: reading and staging 12.6 -> 4.9 s).
Credentials come from the config or the environment (`dsn = "env:VAR"`) and never enter a message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import duckdb

from audits.config import SourceConfig
from audits.errors import ConfigError, InputError, data_free_reason
from audits.ledger import loaded_files
from audits.warehouse import quote_identifier

if TYPE_CHECKING:  # imported where used: only PostgreSQL sources need it
    import pyarrow as pa

NO_FILES = "{path}: no files match for source '{source}'; check the source's path"
EMPTY_FILE = "{path}: file of source '{source}' has no rows; remove it or fix the export that wrote it"
ZERO_BYTES = "{path}: file of source '{source}' is empty (0 bytes); remove it or fix the export that wrote it"
UNREADABLE = "{path}: cannot read source '{source}' as {kind} ({reason})"
DSN_VARIABLE_UNSET = "source '{source}': environment variable {variable} (its dsn) is not set; export it before the run"
BAD_TABLE = "source '{source}': table {table!r} is not a table name; write it as table or schema.table"
DB_UNREACHABLE = "source '{source}': cannot connect to PostgreSQL ({reason}); check the dsn and that the server is up"
DB_QUERY = "source '{source}': PostgreSQL rejected the read of {what} ({reason}); check the source's table or query"
BAD_WATERMARK_TYPE = (
    "source '{source}': watermark column {column!r} has type {type}; an incremental read needs a timestamp or "
    "date column (watermark = 'timestamp') or an integer id (watermark = 'transaction_id'): "
    "change sources[].watermark or the column's type"
)
BAD_STORED_WATERMARK = (
    "source '{source}': the stored watermark {watermark!r} does not fit column {column!r} of type {type} "
    "(did its type change?); restore the type, or delete the source's rows from table ingest_batches to read it "
    "in full once more"
)
BAD_LOOKBACK = "source '{source}': key 'sources[].lookback_hours' must be 0 or more, got {value!r}"
SOURCE_FILE_COLUMN = "__pp_source_file"
ROW_STRIDE = 1 << 40  # row ids of a Parquet batch: file position x ROW_STRIDE + row within the file
PG_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
PROGRESS_EVERY_SECONDS = 5.0

Progress = Callable[[str], None]
RequireColumns = Callable[[list[str]], None]


@dataclass(frozen=True)
class SourceFile:
    """A file as found on disk; path, size and mtime identify a version of it."""

    path: str
    size_bytes: int
    modified_ns: int


@dataclass(frozen=True)
class SourceRead:
    """What `read_source` put into `src_rows` (nothing when `rows` is None: no new file)."""

    rows: int | None
    columns: dict[str, str] = field(default_factory=dict)  # source column -> DuckDB type
    files: tuple[SourceFile, ...] = ()  # files read (file sources)
    rows_per_file: dict[str, int] = field(default_factory=dict)
    files_skipped: int = 0
    watermark_from: str | None = None  # the lower bound read (postgres), as text
    relation: str = "src_rows"  # SQL of the rows as read (may use `params`)
    row_id: str = "rowid"  # its column numbering the rows in read order
    params: dict[str, Any] = field(default_factory=dict)


def read_source(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    *,
    watermark: str | None,
    fingerprint: str,
    require: RequireColumns,
    progress: Progress | None = None,
) -> SourceRead:
    """Make the source's new rows readable as `SourceRead.relation` (see the module's docstring).

    `watermark` is the source's stored watermark (postgres only); `fingerprint` identifies the
    mapping and rules a file was loaded under (files loaded under others are read again);
    `require` is called with the source's column names before any row is read, so a mapping error
    costs no reading.
    """
    con.execute("drop table if exists src_rows")
    if source.kind == "postgres":
        return _read_postgres(con, source, watermark=watermark, require=require, progress=progress)
    return _read_files(con, source, fingerprint=fingerprint, require=require, progress=progress)


def list_files(con: duckdb.DuckDBPyConnection, source: SourceConfig) -> list[SourceFile]:
    """The files the source's path matches now, in name order (a folder: every file below it)."""
    path = Path(os.path.abspath(source.path))
    pattern = str(path / "**" / f"*.{source.kind}*") if path.is_dir() else str(path)
    try:
        names = [row[0] for row in con.execute("select file from glob($pattern) order by file",
                                               {"pattern": pattern}).fetchall()]
    except duckdb.Error as err:
        raise InputError(UNREADABLE.format(path=source.path, source=source.name, kind=source.kind,
                                           reason=data_free_reason(err))) from err
    files = []
    for name in names:
        try:
            stat = os.stat(name)
        except OSError as err:  # vanished between glob and stat: the export is still being written
            raise InputError(UNREADABLE.format(path=name, source=source.name, kind=source.kind,
                                               reason=err.strerror)) from err
        files.append(SourceFile(name, stat.st_size, stat.st_mtime_ns))
    if not files:
        raise InputError(NO_FILES.format(path=source.path, source=source.name))
    return files


def _read_files(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, *, fingerprint: str, require: RequireColumns,
    progress: Progress | None,
) -> SourceRead:
    started = time.monotonic()
    found = list_files(con, source)
    done = loaded_files(con, source.name, fingerprint=fingerprint)
    new = [f for f in found if (f.path, f.size_bytes, f.modified_ns) not in done]
    skipped = len(found) - len(new)
    if not new:
        if progress:
            progress(f"{source.name}: nothing new ({skipped} file(s) already loaded, unchanged)")
        return SourceRead(rows=None, files_skipped=skipped)
    for file in new:
        if file.size_bytes == 0:
            raise InputError(ZERO_BYTES.format(path=file.path, source=source.name))

    options = {"files": [f.path for f in new], "file_column": SOURCE_FILE_COLUMN}
    if source.kind == "parquet":
        relation = "read_parquet($files, union_by_name = true, filename = $file_column)"
    else:
        relation = ("read_csv($files, header = true, all_varchar = true, delim = $delimiter, encoding = $encoding,"
                    " union_by_name = true, filename = $file_column)")
        options |= {"delimiter": source.delimiter, "encoding": source.encoding}
    staged_from: dict[str, Any] = {}  # SourceRead's relation, row_id and params; default: the copy src_rows
    try:
        described = con.execute(f"describe select * from {relation}", options).fetchall()
        columns = {name: type_ for name, type_, *_ in described if name != SOURCE_FILE_COLUMN}
        require(list(columns))
        if source.kind == "parquet":
            file_column = quote_identifier(SOURCE_FILE_COLUMN)
            numbered = "read_parquet($files, union_by_name = true, filename = $file_column, file_row_number = true)"
            staged_from = {
                "relation": f"(select * exclude (file_row_number), (list_position($files, {file_column}) - 1) * "
                            f"{ROW_STRIDE} + file_row_number as __pp_row from {numbered})",
                "row_id": "__pp_row", "params": options}
            # a name DuckDB reports otherwise than it was given would find no rows: EMPTY_FILE below
            per_file = dict(con.execute(f"select {file_column}, count(*) from {relation} group by all",
                                        options).fetchall())
        else:
            con.execute(f"create temp table src_rows as select * from {relation}", options)
            per_file = dict(con.execute(f"select {SOURCE_FILE_COLUMN}, count(*) from src_rows group by all").fetchall())
    except (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException,
            duckdb.BinderException, duckdb.NotImplementedException) as err:
        raise unreadable(source, new, err) from err
    for file in new:
        if not per_file.get(file.path):
            raise InputError(EMPTY_FILE.format(path=file.path, source=source.name))
    rows = sum(per_file.values())
    if progress and staged_from:
        progress(f"{source.name}: {rows:,} rows in {len(new)} new file(s), staged from the files; "
                 f"{skipped} unchanged file(s) skipped")
    elif progress:
        seconds = time.monotonic() - started
        progress(f"{source.name}: read {rows:,} rows from {len(new)} new file(s) in {seconds:.1f} s "
                 f"({rows / max(seconds, 1e-9):,.0f} rows/s); {skipped} unchanged file(s) skipped")
    return SourceRead(rows=rows, columns=columns, files=tuple(new), rows_per_file=per_file, files_skipped=skipped,
                      **staged_from)


def unreadable(source: SourceConfig, files: Sequence[SourceFile], err: BaseException) -> InputError:
    """The error for files DuckDB cannot read; also raised by staging, which reads Parquet files itself
    (a damaged data page shows only when the rows are read). DuckDB's text quotes the line it choked on:
    the message names the condition and line instead (audits.errors.data_free_reason)."""
    where = files[0].path if len(files) == 1 else source.path
    return InputError(UNREADABLE.format(path=where, source=source.name, kind=source.kind,
                                        reason=data_free_reason(err)))


# --- PostgreSQL ----------------------------------------------------------------------------------

def resolve_dsn(source: SourceConfig) -> str:
    """The source's libpq connection string; `env:VAR` reads it from the environment."""
    dsn = source.dsn or ""
    if dsn.startswith("env:"):
        variable = dsn.removeprefix("env:")
        dsn = os.environ.get(variable, "")
        if not dsn:
            raise InputError(DSN_VARIABLE_UNSET.format(source=source.name, variable=variable))
    return dsn


def postgres_origin(source: SourceConfig) -> str:
    """Where a PostgreSQL source reads, without credentials: server, port, database and table (a query by
    its hash). Stored with its batches, it recognises the source when the config renames it."""
    dsn = resolve_dsn(source)
    if re.match(r"postgres(ql)?://", dsn):
        url = urlsplit(dsn)
        try:
            port = url.port
        except ValueError:  # not a number: the connection reports it, in our words (no traceback from here)
            port = None
        parts = {"host": url.hostname, "port": port, "dbname": url.path.lstrip("/")}
    else:  # key = value pairs, a value possibly quoted
        parts = {key: value.strip("'") for key, value in re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)}
    what = (f"table {source.table}" if source.table
            else f"query {hashlib.sha256((source.query or '').encode()).hexdigest()[:16]}")
    return (f"postgres://{parts.get('host') or parts.get('hostaddr') or 'localhost'}:{parts.get('port') or 5432}/"
            f"{parts.get('dbname') or ''} {what}")


def postgres_base_query(source: SourceConfig) -> str:
    """The SELECT that reads the whole source: its table, or its query as a subquery."""
    if source.query:
        return f"select * from (\n{source.query.strip().rstrip(';')}\n) as src"
    if not source.table or not PG_TABLE.match(source.table):
        raise InputError(BAD_TABLE.format(source=source.name, table=source.table))
    return "select * from " + ".".join(quote_identifier(part) for part in source.table.split("."))


def postgres_incremental_query(
    source: SourceConfig, schema: pa.Schema, *, watermark: str | None
) -> tuple[str, tuple[object, ...], str | None]:
    """(SQL, bound parameters, lower bound as text) reading only the rows past the watermark.

    The watermark column's name is checked against the source's schema before it is quoted into
    the SQL; its value is always a bound parameter, typed like the column.
    """
    import pyarrow as pa

    base = postgres_base_query(source)
    column = source.source_column(source.watermark)
    if watermark is None or column not in schema.names:
        return base, (), None
    if source.lookback_hours < 0:
        raise ConfigError(BAD_LOOKBACK.format(source=source.name, value=source.lookback_hours))
    kind = schema.field(column).type
    lookback = dt.timedelta(hours=source.lookback_hours)
    bound: object
    try:
        if source.watermark == "timestamp" and pa.types.is_timestamp(kind):
            value = dt.datetime.fromisoformat(watermark)  # canonical timestamps are naive UTC
            value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
            bound, operator = (value if kind.tz else value.replace(tzinfo=None)) - lookback, ">="
        elif source.watermark == "timestamp" and pa.types.is_date(kind):
            days = math.ceil(lookback / dt.timedelta(days=1))
            bound, operator = dt.date.fromisoformat(watermark[:10]) - dt.timedelta(days=days), ">="
        elif source.watermark == "transaction_id" and pa.types.is_integer(kind):
            bound, operator = int(watermark), ">"  # ids only grow: a late row gets a new, higher id
        else:  # text ids or text timestamps do not order reliably ('O10' < 'O9')
            raise InputError(BAD_WATERMARK_TYPE.format(source=source.name, column=column, type=kind))
    except ValueError as err:
        raise InputError(BAD_STORED_WATERMARK.format(source=source.name, watermark=watermark, column=column,
                                                     type=kind)) from err
    sql = f"{base}\nwhere {quote_identifier(column)} {operator} $1"
    text = bound.isoformat() if isinstance(bound, dt.date) else str(bound)
    return sql, (bound,), text


def _read_postgres(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    *,
    watermark: str | None,
    require: RequireColumns,
    progress: Progress | None,
) -> SourceRead:
    import adbc_driver_postgresql.dbapi as pg

    started = time.monotonic()
    dsn = resolve_dsn(source)
    what = source.table or "its query"
    base = postgres_base_query(source)
    try:
        connection = pg.connect(dsn)
    except Exception as err:  # the driver raises its own hierarchy; libpq never echoes the password
        raise InputError(DB_UNREACHABLE.format(source=source.name, reason=_postgres_reason(err, dsn))) from err
    try:
        with connection.cursor() as cursor:
            try:
                schema = cursor.adbc_execute_schema(base)
            except Exception as err:
                raise InputError(DB_QUERY.format(source=source.name, what=what,
                                                 reason=_postgres_reason(err, dsn))) from err
            require(list(schema.names))
            sql, parameters, watermark_from = postgres_incremental_query(source, schema, watermark=watermark)
            try:
                cursor.execute(sql, parameters or None)
                stream = _counted(cursor.fetch_record_batch(), source=source.name, started=started, progress=progress)
                con.register("pg_stream", stream)
                try:
                    con.execute(f"create temp table src_rows as select *, null::varchar as {SOURCE_FILE_COLUMN} "
                                "from pg_stream")
                finally:
                    con.unregister("pg_stream")
            except InputError:
                raise
            except Exception as err:
                raise InputError(DB_QUERY.format(source=source.name, what=what,
                                                 reason=_postgres_reason(err, dsn))) from err
    finally:
        connection.close()
    described = con.execute("describe src_rows").fetchall()
    columns = {name: type_ for name, type_, *_ in described if name != SOURCE_FILE_COLUMN}
    rows = con.execute("select count(*) from src_rows").fetchall()[0][0]
    if progress:
        seconds = time.monotonic() - started
        since = f" since {watermark_from}" if watermark_from else ""
        progress(f"{source.name}: read {rows:,} rows from PostgreSQL{since} in {seconds:.1f} s "
                 f"({rows / max(seconds, 1e-9):,.0f} rows/s)")
    return SourceRead(rows=rows, columns=columns, watermark_from=watermark_from)


def _counted(
    reader: pa.RecordBatchReader, *, source: str, started: float, progress: Progress | None
) -> pa.RecordBatchReader:
    """The same stream, reporting rows fetched every few seconds on long reads."""
    import pyarrow as pa

    def batches() -> Iterator[pa.RecordBatch]:
        rows, reported = 0, time.monotonic()
        for batch in reader:
            rows += batch.num_rows
            now = time.monotonic()
            if progress and now - reported >= PROGRESS_EVERY_SECONDS:
                progress(f"{source}: fetched {rows:,} rows from PostgreSQL "
                         f"({rows / max(now - started, 1e-9):,.0f} rows/s)")
                reported = now
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def _postgres_reason(err: BaseException, dsn: str) -> str:
    """The driver's message without a password or the dsn; without its text at all for a data exception or
    an integrity violation (SQLSTATE classes 22 and 23), whose messages quote values and rows."""
    sqlstate = str(getattr(err, "sqlstate", "") or "")
    if sqlstate.startswith(("22", "23")) or not type(err).__module__.startswith("adbc_driver"):
        return data_free_reason(err)
    reason = redact(" ".join(str(err).split("DETAIL:")[0].split())[:300], dsn)
    err.args = (reason,)  # what a traceback printing the driver's error as the cause of ours shows
    return reason


def redact(text: str, dsn: str) -> str:
    """Remove anything that looks like a password, and the dsn itself, from a driver message."""
    text = re.sub(r"password\s*=\s*\S+", "password=***", text, flags=re.IGNORECASE)
    text = re.sub(r"://([^:/@\s]+):[^@\s]+@", r"://\1:***@", text)
    return text.replace(dsn, "<dsn>") if dsn else text

