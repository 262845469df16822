"""Ingest: read a source (Parquet, CSV, PostgreSQL), map and type its columns, quarantine bad rows,
validate the batch with Great Expectations, and upsert it into the warehouse in one transaction.

Everything row-level happens inside DuckDB; Python sees only column names, counts and the
bounded chunks Great Expectations validates. A batch is all-or-nothing: a crash before COMMIT
leaves the warehouse as it was, and the next run loads the batch again.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from audits.config import (
    CANONICAL_TRANSACTION_COLUMNS,
    REQUIRED_TRANSACTION_COLUMNS,
    Config,
    SourceConfig,
)
from audits.errors import DataQualityError, InputError
from audits.warehouse import add_attribute_columns, quote_identifier, table_columns

MISSING_COLUMN = (
    "{where}: column {column!r} (canonical '{canonical}') is not in source '{source}'; "
    "its columns are {available}. Fix [sources.columns] in the config"
)
NO_FILES = "{path}: no files match for source '{source}'; check the source's path"
UNREADABLE = "{path}: cannot read source '{source}' as {kind} ({reason})"
EMPTY = "{where}: source '{source}' has no rows; check the export that produced it"
DB_UNREACHABLE = "source '{source}': cannot connect to PostgreSQL ({reason}); check the dsn and that the server is up"
DB_QUERY = "source '{source}': PostgreSQL rejected the read ({reason}); check the source's table or query"
TOO_MANY_BAD = (
    "{where}: {bad} of {read} rows ({share:.1%}) of source '{source}' failed validation, more than "
    "validation.max_bad_share = {limit:.1%}; see the quarantine table and the report's data-quality section"
)
PG_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

_MONEY = "decimal(18, 4)"
_TYPES: dict[str, str] = {
    "transaction_id": "varchar",
    "timestamp": "timestamp",
    "customer_id": "varchar",
    "product_id": "varchar",
    "quantity": "decimal(18, 3)",
    "list_price": _MONEY,
    "unit_price": _MONEY,
    "category": "varchar",
    "channel": "varchar",
    "discount_amount": _MONEY,
    "line_total": _MONEY,
    "discount_code": "varchar",
    "currency": "varchar",
}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BatchResult:
    """What one ingest batch did: the row accounting must add up (read = loaded + duplicate + quarantined)."""

    batch_id: int
    source: str
    rows_read: int
    rows_loaded: int
    rows_replaced: int
    rows_duplicate: int
    rows_quarantined: int
    seconds: float
    status: str
    expectations: list[dict[str, Any]]
    quarantine_reasons: dict[str, int]

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def ingest_all(con: duckdb.DuckDBPyConnection, config: Config, *, progress: Progress | None = None) -> list[BatchResult]:
    """Load every configured source and the customers; stop at the first data-quality failure."""
    results = [ingest_transactions(con, source, config, progress=progress) for source in config.sources]
    if config.customers is not None:
        results.append(ingest_customers(con, config.customers, config, progress=progress))
    return results


def ingest_transactions(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, config: Config, *, progress: Progress | None = None
) -> BatchResult:
    """Read one transaction source and upsert it on (source, transaction_id)."""
    started = time.monotonic()
    started_at = dt.datetime.now()
    read_source(con, source, view="src_raw")
    available = table_columns_of(con, "src_raw")
    mapped = _mapped_columns(source, available, required=REQUIRED_TRANSACTION_COLUMNS,
                             optional=tuple(c for c in CANONICAL_TRANSACTION_COLUMNS if c not in REQUIRED_TRANSACTION_COLUMNS))
    attributes = [a for a in source.attributes]
    for attribute in attributes:
        mapped[attribute] = _require_column(source, attribute, available)
    add_attribute_columns(con, "transactions", attributes)

    batch_id = con.execute("select nextval('batch_ids')").fetchone()[0]
    _stage_transactions(con, source, mapped, attributes, config, batch_id=batch_id)
    rows_read, rows_bad = con.execute(
        "select count(*), count(*) filter (where len(reasons) > 0) from staged"
    ).fetchone()
    if rows_read == 0:
        raise InputError(EMPTY.format(where=_where(source), source=source.name))
    if progress:
        progress(f"{source.name}: read {rows_read:,} rows in {time.monotonic() - started:.1f} s")

    from audits.validate import validate_transactions  # Great Expectations is slow to import

    expectations = validate_transactions(con, "staged", config=config, progress=progress)
    reasons = _reason_counts(con)
    share = rows_bad / rows_read
    failed_expectations = [e for e in expectations if not e["success"]]
    status = "loaded" if share <= config.max_bad_share and not failed_expectations else "failed_quality"

    columns = [c for c in CANONICAL_TRANSACTION_COLUMNS] + attributes
    con.execute("begin transaction")
    try:
        _write_quarantine(con, source, batch_id)
        if status == "loaded":
            loaded, replaced, duplicate = _upsert(con, columns, source=source.name, batch_id=batch_id)
        else:
            loaded = replaced = duplicate = 0
        seconds = time.monotonic() - started
        _record_batch(con, batch_id, source.name, started_at, status, rows_read, loaded, replaced, duplicate,
                      rows_bad, seconds, None)
        _record_expectations(con, batch_id, source.name, expectations)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    if progress:
        progress(
            f"{source.name}: {loaded:,} loaded, {replaced:,} replaced, {duplicate:,} unchanged, "
            f"{rows_bad:,} quarantined ({rows_read / max(seconds, 1e-9):,.0f} rows/s)"
        )
    result = BatchResult(batch_id, source.name, rows_read, loaded, replaced, duplicate, rows_bad, seconds,
                         status, expectations, reasons)
    if status != "loaded":
        if failed_expectations and share <= config.max_bad_share:
            names = ", ".join(f"{e['expectation']}({e['column']})" for e in failed_expectations)
            raise DataQualityError(f"{_where(source)}: source '{source.name}' failed expectations {names}")
        raise DataQualityError(TOO_MANY_BAD.format(where=_where(source), bad=rows_bad, read=rows_read, share=share,
                                                   source=source.name, limit=config.max_bad_share))
    return result


def ingest_customers(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, config: Config, *, progress: Progress | None = None
) -> BatchResult:
    """Read the customer table; every non-canonical column becomes a VARCHAR attribute."""
    started = time.monotonic()
    started_at = dt.datetime.now()
    read_source(con, source, view="src_raw")
    available = table_columns_of(con, "src_raw")
    id_column = _require_column(source, "customer_id", available)
    since_column = source.columns.get("customer_since", "customer_since")
    since_column = since_column if since_column in available else None
    mapped_sources = {id_column, since_column}
    attributes: dict[str, str] = {}
    for column in available:
        if column in mapped_sources:
            continue
        name = re.sub(r"[^a-z0-9_]", "_", column.lower()).strip("_")
        if name and name[0].isalpha() and name not in ("customer_id", "customer_since", "batch_id"):
            attributes[name] = column
    add_attribute_columns(con, "customers", list(attributes))
    batch_id = con.execute("select nextval('batch_ids')").fetchone()[0]
    since = f"try_cast({quote_identifier(since_column)} as date)" if since_column else "null::date"
    attribute_sql = "".join(
        f", nullif(trim(cast({quote_identifier(src)} as varchar)), '') as {quote_identifier(name)}"
        for name, src in attributes.items()
    )
    con.execute(f"""
        create or replace temp table staged as
        with src as (select row_number() over () as source_row, * from src_raw),
        typed as (
            select source_row, nullif(trim(cast({quote_identifier(id_column)} as varchar)), '') as customer_id,
                   {since} as customer_since {attribute_sql}
            from src),
        ranked as (
            select *, row_number() over (partition by customer_id order by source_row desc) as occurrence from typed)
        select * exclude (occurrence),
               list_filter([
                   case when customer_id is null then 'customer_id: missing' end,
                   case when customer_id is not null and occurrence > 1
                        then 'customer_id: duplicate within batch (last row kept)' end
               ], lambda r: r is not null) as reasons
        from ranked""")
    rows_read, rows_bad = con.execute("select count(*), count(*) filter (where len(reasons) > 0) from staged").fetchone()
    if rows_read == 0:
        raise InputError(EMPTY.format(where=_where(source), source=source.name))
    reasons = _reason_counts(con)
    columns = ["customer_id", "customer_since", *attributes]
    column_list = ", ".join(quote_identifier(c) for c in columns)
    con.execute("begin transaction")
    try:
        _write_quarantine(con, source, batch_id)
        duplicate = con.execute(f"""
            select count(*) from staged s join customers c using (customer_id)
            where len(s.reasons) = 0 and {" and ".join(f"s.{quote_identifier(x)} is not distinct from c.{quote_identifier(x)}" for x in columns)}
        """).fetchone()[0]
        con.execute("delete from customers where customer_id in (select customer_id from staged where len(reasons) = 0)")
        con.execute(f"insert into customers ({column_list}, batch_id) select {column_list}, $b from staged where len(reasons) = 0",
                    {"b": batch_id})
        loaded = rows_read - rows_bad - duplicate
        seconds = time.monotonic() - started
        _record_batch(con, batch_id, source.name, started_at, "loaded", rows_read, loaded, 0, duplicate, rows_bad,
                      seconds, None)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    if progress:
        progress(f"{source.name}: {rows_read - rows_bad:,} customers with {len(attributes)} attributes, {rows_bad:,} quarantined")
    return BatchResult(batch_id, source.name, rows_read, loaded, 0, duplicate, rows_bad, seconds, "loaded", [], reasons)


def read_source(con: duckdb.DuckDBPyConnection, source: SourceConfig, *, view: str) -> None:
    """Expose a source as a temp view; paths and credentials never enter SQL text."""
    if source.kind == "postgres":
        _read_postgres(con, source, view=view)
        return
    path = Path(source.path)
    pattern = str(path / "**" / f"*.{source.kind}*") if path.is_dir() else str(path)
    try:
        if source.kind == "parquet":
            relation = con.read_parquet(pattern, union_by_name=True, hive_partitioning=path.is_dir())
        else:
            relation = con.read_csv(pattern, header=True, all_varchar=True, delimiter=source.delimiter,
                                    encoding=source.encoding, union_by_name=True, hive_partitioning=path.is_dir())
        relation.create_view(view, replace=True)
    except duckdb.IOException as err:
        if "No files found" in str(err) or "No such file" in str(err):
            raise InputError(NO_FILES.format(path=path, source=source.name)) from err
        raise InputError(UNREADABLE.format(path=path, source=source.name, kind=source.kind, reason=_one_line(err))) from err
    except (duckdb.InvalidInputException, duckdb.ConversionException, duckdb.BinderException,
            duckdb.NotImplementedException) as err:
        raise InputError(UNREADABLE.format(path=path, source=source.name, kind=source.kind, reason=_one_line(err))) from err


def _read_postgres(con: duckdb.DuckDBPyConnection, source: SourceConfig, *, view: str) -> None:
    import adbc_driver_postgresql.dbapi as pg

    dsn = source.dsn or ""
    if dsn.startswith("env:"):
        variable = dsn.removeprefix("env:")
        dsn = os.environ.get(variable, "")
        if not dsn:
            raise InputError(f"source '{source.name}': environment variable {variable} (its dsn) is not set")
    if source.table and not PG_TABLE.match(source.table):
        raise InputError(f"source '{source.name}': table {source.table!r} is not a table name (schema.table)")
    query = source.query or "select * from " + ".".join(quote_identifier(p) for p in source.table.split("."))
    try:
        connection = pg.connect(dsn)
    except Exception as err:  # the driver raises its own hierarchy; the message never includes the password
        raise InputError(DB_UNREACHABLE.format(source=source.name, reason=_redact(_one_line(err), dsn))) from err
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            table = cursor.fetch_arrow_table()
    except Exception as err:
        raise InputError(DB_QUERY.format(source=source.name, reason=_redact(_one_line(err), dsn))) from err
    finally:
        connection.close()
    con.register(f"{view}_arrow", table)
    con.execute(f"create or replace temp view {view} as select * from {view}_arrow")


def table_columns_of(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    return [row[0] for row in con.execute(f"describe {view}").fetchall()]


def _mapped_columns(
    source: SourceConfig, available: list[str], *, required: tuple[str, ...], optional: tuple[str, ...]
) -> dict[str, str | None]:
    mapped: dict[str, str | None] = {c: _require_column(source, c, available) for c in required}
    for canonical in optional:
        column = source.source_column(canonical)
        if column in available:
            mapped[canonical] = column
        elif canonical in source.columns:
            _require_column(source, canonical, available)  # mapped explicitly but absent: say so
        else:
            mapped[canonical] = None
    return mapped


def _require_column(source: SourceConfig, canonical: str, available: list[str]) -> str:
    column = source.source_column(canonical)
    if column not in available:
        shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
        raise InputError(MISSING_COLUMN.format(where=_where(source), column=column, canonical=canonical,
                                               source=source.name, available=shown))
    return column


def _stage_transactions(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    mapped: dict[str, str | None],
    attributes: list[str],
    config: Config,
    *,
    batch_id: int,
) -> None:
    """Create temp table `staged`: canonical typed columns plus the list of reasons a row is bad."""

    def raw(canonical: str) -> str:
        column = mapped.get(canonical)
        return f"src.{quote_identifier(column)}" if column else "null"

    typed = []
    for canonical, sql_type in _TYPES.items():
        if canonical == "transaction_id" and mapped.get("transaction_id") is None:
            continue
        if canonical == "currency" and mapped.get("currency") is None:
            typed.append(f"cast($default_currency as varchar) as currency, cast($default_currency as varchar) as raw_currency")
            continue
        value = raw(canonical)
        text = f"nullif(trim(cast({value} as varchar)), '')"
        if sql_type == "varchar":
            typed.append(f"{text} as {canonical}, {text} as raw_{canonical}")
        elif sql_type == "timestamp":
            typed.append(f"try_cast({value} as timestamp) as {canonical}, {text} as raw_{canonical}")
        else:  # numbers: via double so that 'nan' and 'inf' are caught, then to decimal
            typed.append(
                f"case when isfinite(try_cast({text} as double)) then try_cast({text} as {sql_type}) end as {canonical},"
                f" {text} as raw_{canonical}"
            )
    for attribute in attributes:
        typed.append(f"nullif(trim(cast({raw(attribute)} as varchar)), '') as {quote_identifier(attribute)}")
    if mapped.get("transaction_id") is None:
        # No line id in the source: derive a stable one from the row's content and its occurrence.
        content = ", ".join(f"cast({raw(c)} as varchar)" for c in _TYPES if mapped.get(c) is not None)
        id_sql = (f"md5(concat_ws('|', $source, {content}, "
                  f"row_number() over (partition by {content} order by source_row)))")
        typed.append(f"{id_sql} as transaction_id, 'derived' as raw_transaction_id")

    def rule(column: str, kind: str) -> str:
        return (f"case when raw_{column} is null then '{column}: missing' "
                f"when {column} is null then '{column}: not a valid {kind}' end")

    checks = [
        rule("transaction_id", "id"), rule("timestamp", "timestamp"), rule("customer_id", "id"),
        rule("product_id", "id"), rule("quantity", "number"), rule("unit_price", "number"),
        "case when raw_list_price is not null and list_price is null then 'list_price: not a valid number' end",
        "case when raw_discount_amount is not null and discount_amount is null then 'discount_amount: not a valid number' end",
        "case when raw_line_total is not null and line_total is null then 'line_total: not a valid number' end",
        "case when quantity <= 0 then 'quantity: zero or negative (a return or cancellation?)' end",
        "case when unit_price < 0 then 'unit_price: negative' when unit_price = 0 then 'unit_price: zero' end",
        "case when list_price < 0 then 'list_price: negative' end",
        "case when timestamp > $latest then 'timestamp: in the future' "
        "when timestamp < $earliest then 'timestamp: implausibly early' end",
        "case when currency is not null and not list_contains($currencies, currency) then 'currency: unknown code' end",
        "case when occurrence > 1 then 'transaction_id: duplicate within batch (last row kept)' end",
    ]
    if not config.allow_above_list:
        checks.append("case when unit_price > list_price then 'unit_price: above list_price' end")
    sql = f"""
        create or replace temp table staged as
        with src as (select row_number() over () as source_row, * from src_raw),
        typed as (select source_row, {", ".join(typed)} from src),
        ranked as (
            select *, row_number() over (partition by transaction_id order by source_row desc) as occurrence
            from typed)
        select *, list_filter([{", ".join(checks)}], lambda r: r is not null) as reasons
        from ranked"""
    latest = dt.datetime.now() + dt.timedelta(days=config.max_future_days)
    params = {
        "latest": latest,
        "earliest": dt.datetime.fromisoformat(config.earliest),
        "currencies": list(config.currencies),
    }
    if "$default_currency" in sql:
        params["default_currency"] = source.currency
    if "$source" in sql:
        params["source"] = source.name
    try:
        con.execute(sql, params)
    except (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.IOException) as err:
        raise InputError(UNREADABLE.format(path=source.path or source.table or "query", source=source.name,
                                           kind=source.kind, reason=_one_line(err))) from err


def _reason_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute(
        "select reason, count(*) from (select unnest(reasons) as reason from staged) group by reason order by 2 desc"
    ).fetchall()
    return {reason: n for reason, n in rows}


def _write_quarantine(con: duckdb.DuckDBPyConnection, source: SourceConfig, batch_id: int) -> None:
    """Keep every bad row with all its reasons and its raw values, as read."""
    con.execute("""
        insert into quarantine (batch_id, source, source_row, reason, raw)
        select $b, $s, st.source_row, array_to_string(st.reasons, '; '), to_json(src)
        from staged st
        join (select row_number() over () as source_row, * from src_raw) src using (source_row)
        where len(st.reasons) > 0""", {"b": batch_id, "s": source.name})


def _upsert(con: duckdb.DuckDBPyConnection, columns: list[str], *, source: str, batch_id: int) -> tuple[int, int, int]:
    """Insert new rows, replace changed ones, skip identical ones; returns (new, replaced, identical)."""
    names = ", ".join(quote_identifier(c) for c in columns)
    same = " and ".join(f"s.{quote_identifier(c)} is not distinct from t.{quote_identifier(c)}" for c in columns)
    con.execute(f"""
        create or replace temp table incoming as
        select s.*, case when t.transaction_id is null then 'new' when {same} then 'same' else 'changed' end as change
        from (select {names}, $source as source from staged where len(reasons) = 0) s
        left join transactions t on t.source = s.source and t.transaction_id = s.transaction_id""",
                {"source": source})
    counts = dict(con.execute("select change, count(*) from incoming group by change").fetchall())
    con.execute("""
        delete from transactions t using incoming i
        where i.change = 'changed' and t.source = i.source and t.transaction_id = i.transaction_id""")
    con.execute(f"""
        insert into transactions ({names}, source, batch_id)
        select {names}, source, $batch_id from incoming where change <> 'same'""", {"batch_id": batch_id})
    return counts.get("new", 0), counts.get("changed", 0), counts.get("same", 0)


def _record_batch(con, batch_id, source, started_at, status, read, loaded, replaced, duplicate, quarantined,
                  seconds, message) -> None:
    con.execute(
        """insert into ingest_batches values ($id, $source, $started, now()::timestamp, $status, null, null,
           $read, $loaded, $replaced, $duplicate, $quarantined, $seconds, $message)""",
        {"id": batch_id, "source": source, "started": started_at, "status": status, "read": read,
         "loaded": loaded, "replaced": replaced, "duplicate": duplicate, "quarantined": quarantined,
         "seconds": seconds, "message": message},
    )


def _record_expectations(con, batch_id: int, source: str, expectations: list[dict[str, Any]]) -> None:
    for e in expectations:
        con.execute(
            "insert into expectation_results values ($b, $s, $e, $c, $ok, $n, $total)",
            {"b": batch_id, "s": source, "e": e["expectation"], "c": e["column"], "ok": e["success"],
             "n": e["unexpected_count"], "total": e["element_count"]},
        )


def _where(source: SourceConfig) -> str:
    return str(source.path) if source.path else f"postgres:{source.table or 'query'}"


def _redact(text: str, dsn: str) -> str:
    """Remove anything that looks like a password from a driver message."""
    text = re.sub(r"password=\S+", "password=***", text)
    text = re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", text)
    return text.replace(dsn, "<dsn>") if dsn else text


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def data_quality_summary(con: duckdb.DuckDBPyConnection, *, batch_ids: list[int] | None = None):
    """The data-quality section of a result: the given batches, or each source's latest batch."""
    from audits.findings import DataQuality

    if batch_ids is None:
        batch_ids = [r[0] for r in con.execute(
            "select max(batch_id) from ingest_batches group by source").fetchall()]
    if not batch_ids:
        return DataQuality(passed=True)
    batches = con.execute(
        """select batch_id, source, status, rows_read, rows_loaded, rows_replaced, rows_duplicate,
                  rows_quarantined, round(seconds, 2)
           from ingest_batches where list_contains($ids, batch_id) order by batch_id""", {"ids": batch_ids}).fetchall()
    keys = ("batch_id", "source", "status", "rows_read", "rows_loaded", "rows_replaced", "rows_duplicate",
            "rows_quarantined", "seconds")
    batch_dicts = [dict(zip(keys, b, strict=True)) for b in batches]
    expectations = [
        {"batch": b, "source": s, "expectation": e, "column": c, "success": ok, "unexpected_count": n,
         "element_count": total}
        for b, s, e, c, ok, n, total in con.execute(
            """select batch_id, source, expectation, column_name, success, unexpected_count, element_count
               from expectation_results where list_contains($ids, batch_id) order by batch_id, expectation, column_name""",
            {"ids": batch_ids}).fetchall()
    ]
    reasons = [
        {"reason": reason, "rows": n}
        for reason, n in con.execute(
            """select reason, count(*) from (select unnest(string_split(reason, '; ')) as reason
               from quarantine where list_contains($ids, batch_id)) group by reason order by 2 desc, 1""",
            {"ids": batch_ids}).fetchall()
    ]
    return DataQuality(
        passed=all(b["status"] == "loaded" for b in batch_dicts) and all(e["success"] for e in expectations),
        expectations=expectations,
        quarantined_rows=sum(b["rows_quarantined"] or 0 for b in batch_dicts),
        quarantine_reasons=reasons,
        batches=batch_dicts,
    )
