"""Staging: type the raw rows of a batch into canonical columns and list every reason a row is bad.

Two SQL statements per batch (sql/ingest/staged.sql, which states the rules, then
mark_duplicates.sql), run inside DuckDB, create temp table `staged`: one row per source row with the
canonical typed columns, `reasons` (empty for a good row; one 'column: what is wrong' per broken rule)
and `is_repeat` (the row repeats, value for value, a later row with the same id in the same batch:
counted as a duplicate, not loaded twice and not quarantined). Nothing is dropped: a value that does
not convert is a reason, never a silent null. This module builds each column's conversion from its
source type (`convert`); the statements are the SQL files'.

Conversions depend on the source column's type: text is trimmed and a value in the source's
`na_values` is missing; text and float numbers go through DOUBLE so that 'nan' and 'inf' are caught,
then to DECIMAL; timestamps with a time zone (or text with an offset) become UTC, naive ones are kept
as given; `timestamp_format` parses other text. A column whose type cannot hold its canonical column
(a boolean price, a list as an id) is refused before any row is staged: every row would be wrong.

Derived columns (audits/derive.py) are computed over the raw rows first and then converted like read
ones. A canonical column the source lacks takes its documented meaning: no timestamp, no unit price
(when the outcome is another column): null; no quantity: 1; no product: one product, '(all)'; no line
id: one derived from the row's content and occurrence; no customer id: each row its own customer.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import duckdb

from audits.config import Config, SourceConfig
from audits.derive import FAILED, Derived, derived_relation
from audits.errors import InputError
from audits.sqlfiles import Fragment, Ident, idents, load_sql
from audits.warehouse import quote_identifier

if TYPE_CHECKING:
    from audits.sources import SourceRead

MONEY = "decimal(18, 4)"
TRANSACTION_TYPES: dict[str, str] = {
    "transaction_id": "varchar",
    "timestamp": "timestamp",
    "customer_id": "varchar",
    "product_id": "varchar",
    "quantity": "decimal(18, 3)",
    "list_price": MONEY,
    "unit_price": MONEY,
    "category": "varchar",
    "channel": "varchar",
    "discount_amount": MONEY,
    "line_total": MONEY,
    "discount_code": "varchar",
    "currency": "varchar",
}
ONE_PRODUCT = "(all)"  # the product of a source without products
_KIND = {"varchar": "id", "timestamp": "timestamp", "date": "date"}
_REQUIRED = ("transaction_id", "timestamp", "customer_id", "product_id", "quantity", "unit_price")
_OPTIONAL_NUMBERS = ("list_price", "discount_amount", "line_total")
_TZ_TYPES = ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")
DUPLICATE_CHANGED = "transaction_id: duplicate within batch with other values (last row kept)"
CUSTOMER_DUPLICATE = "customer_id: duplicate within batch with other values (last row kept)"
WRONG_TYPE = (
    "source '{source}': column {column!r} ({what}) has type {type}, which cannot be read as {expected}; "
    "export it as {expected}, or derive one from it in [sources.derive]"
)
WRONG_DERIVED_TYPE = (
    "source '{source}': key '{key}' gives type {type}, which cannot be read as {expected}; "
    "cast it in the expression"
)
# source types each kind of canonical column can be read from (DuckDB's names; text always can)
_NUMBER_TYPES = re.compile(r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|DECIMAL(\(\d+,\s*\d+\))?|DOUBLE|FLOAT|REAL)$")
_TIME_TYPES = re.compile(r"^(DATE|TIMESTAMP(_S|_MS|_NS)?|TIMESTAMP WITH TIME ZONE|TIMESTAMPTZ)$")
_NOT_TEXT_TYPES = re.compile(r"(\[|^STRUCT|^MAP|^UNION|^BLOB$|^BIT$|^VARIANT)")
_EXPECTED = {"number": "a number", "time": "a timestamp or date", "text": "a single value (text or number)"}


def convert(column: str | None, source_type: str, target: str, *, timestamp_format: str | None = None
            ) -> tuple[str, str]:
    """(typed value, is-present) SQL for source column `column` of `src_rows` (alias s) as `target`.
    Text in $na_values (a bound parameter) is missing."""
    if column is None:
        return f"cast(null as {target})", "false"
    ref = f"s.{quote_identifier(column)}"
    is_text = source_type.upper() == "VARCHAR"
    text = (f"(case when list_contains($na_values, trim({ref})) then null else trim({ref}) end)" if is_text
            else f"nullif(trim(cast({ref} as varchar)), '')")
    present = f"({text} is not null)" if is_text else f"({ref} is not null)"
    if target == "varchar":
        return text, present
    if target in ("timestamp", "date"):
        if source_type.upper() in _TZ_TYPES:
            value = f"timezone('UTC', {ref})"
        elif not is_text:
            value = f"try_cast({ref} as timestamp)"
        elif timestamp_format and "%z" in timestamp_format.lower():
            value = f"timezone('UTC', try_strptime({text}, $timestamp_format))"
        elif timestamp_format:
            value = f"try_strptime({text}, $timestamp_format)"
        else:  # ISO 8601; an offset is honoured (the session's TimeZone is UTC while staging)
            value = f"timezone('UTC', try_cast({text} as timestamptz))"
        return (f"cast({value} as date)" if target == "date" else value), present
    if is_text:
        value = f"case when isfinite(try_cast({text} as double)) then try_cast({text} as {target}) end"
    elif source_type.upper() in ("DOUBLE", "FLOAT", "REAL"):
        value = f"case when isfinite({ref}) then try_cast({ref} as {target}) end"
    else:
        value = f"try_cast({ref} as {target})"
    return value, present


def check_types(
    source: SourceConfig, targets: Mapping[str, str], mapped: Mapping[str, str | None],
    source_types: Mapping[str, str], derived: Mapping[str, Derived],
) -> None:
    """Refuse a column whose type cannot hold what it is read as (`targets`: name -> target type): a
    boolean is not a price, a list or a struct is not an id."""
    by_column = {item.column: item for item in derived.values()}
    for name, target in targets.items():
        column = mapped.get(name)
        if column is None:
            continue
        shown = source_types.get(column, "VARCHAR")
        type_ = shown.upper()
        kind = "number" if target.startswith("decimal") else "time" if target in ("timestamp", "date") else "text"
        fits = (type_ == "VARCHAR" or (_NUMBER_TYPES.match(type_) if kind == "number" else
                                       _TIME_TYPES.match(type_) if kind == "time" else
                                       not _NOT_TEXT_TYPES.search(type_)))
        if fits:
            continue
        if column in by_column:
            raise InputError(WRONG_DERIVED_TYPE.format(source=source.name, key=by_column[column].key, type=shown,
                                                       expected=_EXPECTED[kind]))
        what = f"canonical '{name}'" if name in TRANSACTION_TYPES or name in ("customer_since",) else \
            f"attribute '{name}'"
        raise InputError(WRONG_TYPE.format(source=source.name, column=column, what=what, type=shown,
                                           expected=_EXPECTED[kind]))


def stage_transactions(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    config: Config,
    read: SourceRead,
    *,
    mapped: dict[str, str | None],
    attributes: list[str],
    source_types: dict[str, str],
    derived: Mapping[str, Derived] | None = None,
) -> None:
    """Create temp table `staged` from the raw rows: canonical columns, attributes, reasons, is_repeat.

    `mapped` maps each canonical column to its source column (None: absent); `attributes` are
    transaction attributes, each mapped in `mapped` too. `read` names the raw rows (audits/sources.py).
    `derived`: the source's derived columns, mapped by their `Derived.column`, typed in `source_types`.
    """
    derived = derived or {}
    check_types(source, {**TRANSACTION_TYPES, **dict.fromkeys(attributes, "varchar")}, mapped, source_types, derived)
    rows, row_id = _raw_rows(read, derived, source_types)
    values, present, bound = _transaction_values(source, mapped, attributes, source_types, row_id)
    params: dict[str, Any] = {
        **bound,
        "latest": dt.datetime.now() + dt.timedelta(days=config.max_future_days),
        "earliest": dt.datetime.fromisoformat(config.earliest),
        "currencies": [c.upper() for c in config.currencies],
        "na_values": list(source.na_values),
    }
    watermark_column = mapped.get(source.watermark)
    # timestamp: the canonical UTC value; an id: the source's own value, so that numeric ids
    # compare as numbers when the next read asks PostgreSQL for ids above it
    watermark = (values["timestamp"] if source.watermark == "timestamp"
                 else f"s.{quote_identifier(watermark_column)}" if watermark_column else "null")
    kind = {c: _KIND.get(TRANSACTION_TYPES[c], "number") for c in _REQUIRED}
    _stage(con, read, derived, params, transactions=True, rows=rows, row_id=row_id,
           typed=[(values[c], c) for c in (*TRANSACTION_TYPES, *attributes)],
           flags=[(present[c], f"has_{c}") for c in (*_REQUIRED, *_OPTIONAL_NUMBERS)], watermark=watermark,
           required=[(Ident(c), Ident(f"has_{c}"), _literal(f"{c}: missing"), _literal(f"{c}: not a valid {kind[c]}"))
                     for c in _REQUIRED if mapped.get(c)],
           numbers=[(Ident(c), Ident(f"has_{c}"), _literal(f"{c}: not a valid number")) for c in _OPTIONAL_NUMBERS],
           allow_above_list=config.allow_above_list)
    _mark_duplicates(con, key="transaction_id", reason=DUPLICATE_CHANGED)


def _transaction_values(source: SourceConfig, mapped: dict[str, str | None], attributes: list[str],
                        source_types: dict[str, str], row_id: str
                        ) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """Each canonical column's and attribute's typed value (SQL over the raw rows, alias s), each canonical
    column's presence flag, and the values those bind: a column the source lacks takes its documented
    meaning (module docstring)."""
    values: dict[str, str] = {}
    present: dict[str, str] = {}
    bound: dict[str, Any] = {}
    for canonical, target in TRANSACTION_TYPES.items():
        column = mapped.get(canonical)
        values[canonical], present[canonical] = convert(
            column, source_types.get(column or "", "VARCHAR"), target, timestamp_format=source.timestamp_format)
    if source.timestamp_format:  # bound only where a text timestamp uses it (_run_in_utc)
        bound["timestamp_format"] = source.timestamp_format
    if mapped.get("currency"):
        values["currency"] = f"upper({values['currency']})"
    else:
        values["currency"] = "cast($default_currency as varchar)"
        present["currency"] = "($default_currency is not null)"
        bound["default_currency"] = source.currency.upper() if source.currency else None
    q = quote_identifier
    if mapped.get("transaction_id") is None:
        # No line id in the source: derive a stable one from the line's content and its occurrence,
        # so two identical lines stay two purchases and a re-read of the same file gives the same ids.
        content = ", ".join(f"cast(s.{q(c)} as varchar)" for k, c in mapped.items()
                            if c is not None and (k in TRANSACTION_TYPES or k in attributes))
        values["transaction_id"] = (f"md5(concat_ws('|', $source, {content}, "
                                    f"row_number() over (partition by {content} order by s.{row_id})))")
        present["transaction_id"] = "true"
        bound["source"] = source.name
    if mapped.get("customer_id") is None:  # each row is its own customer
        values["customer_id"] = f"md5(concat_ws('|', 'row', $source, {values['transaction_id']}))"
        bound["source"] = source.name
    if mapped.get("product_id") is None:
        values["product_id"] = "cast($one_product as varchar)"
        bound["one_product"] = ONE_PRODUCT
    if mapped.get("quantity") is None:
        values["quantity"] = f"cast(1 as {TRANSACTION_TYPES['quantity']})"
    for attribute in attributes:
        column = mapped[attribute]
        values[attribute], _ = convert(column, source_types.get(column, "VARCHAR"), "varchar")
    return values, present, bound


def stage_customers(
    con: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    read: SourceRead,
    *,
    id_column: str,
    since_column: str | None,
    attributes: dict[str, str],
    source_types: dict[str, str],
    derived: Mapping[str, Derived] | None = None,
) -> None:
    """Create temp table `staged` of customers from the raw rows (as for stage_transactions); `attributes`
    maps name -> source column."""
    derived = derived or {}
    check_types(source, {"customer_id": "varchar", "customer_since": "date"},
                {"customer_id": id_column, "customer_since": since_column}, source_types, derived)
    rows, row_id = _raw_rows(read, derived, source_types)
    customer_id, has_id = convert(id_column, source_types[id_column], "varchar")
    since, has_since = convert(since_column, source_types.get(since_column or "", "VARCHAR"), "date")
    typed = [(customer_id, "customer_id"), (since, "customer_since"),
             *((convert(column, source_types[column], "varchar")[0], name) for name, column in attributes.items())]
    _stage(con, read, derived, {"na_values": list(source.na_values)}, transactions=False, rows=rows, row_id=row_id,
           typed=typed, flags=[(has_id, "has_id"), (has_since, "has_since")], watermark="null", required=[],
           numbers=[], allow_above_list=True)
    _mark_duplicates(con, key="customer_id", reason=CUSTOMER_DUPLICATE)


def _stage(con: duckdb.DuckDBPyConnection, read: SourceRead, derived: Mapping[str, Derived],
           params: dict[str, Any], *, typed: list[tuple[str, str]], flags: list[tuple[str, str]], rows: str,
           row_id: str, watermark: str, **identifiers: Any) -> None:
    """Temp table `staged` (sql/ingest/staged.sql) from the rows' SQL (`rows`, numbered by `row_id`), each
    column's typed value and presence flag (SQL this module built: (value, column) and (present, flag))."""
    sql = load_sql("ingest/staged").render(
        rows=Fragment(rows), row_id=Fragment(row_id), typed=[(Fragment(v), Ident(c)) for v, c in typed],
        flags=[(Fragment(p), Ident(f)) for p, f in flags], watermark=Fragment(watermark),
        failed=idents(item.failed_column for item in derived.values()), columns=idents(c for _, c in typed),
        **identifiers)
    _run_in_utc(con, sql, {**read.params, **params,
                           "derived_failures": [FAILED.format(name=item.name) for item in derived.values()]})


def _literal(text: str) -> Fragment:
    """One of this module's reasons (constant text) as a SQL string literal."""
    return Fragment("'" + text.replace("'", "''") + "'")


def _raw_rows(read: SourceRead, derived: Mapping[str, Derived], source_types: dict[str, str]) -> tuple[str, str]:
    """The SQL of the rows to stage and its row-number column: the rows as read, with the derived columns."""
    if not derived:
        return read.relation, read.row_id
    return derived_relation(read.relation, read.row_id, derived,
                            text_columns=[c for c, t in source_types.items() if t.upper() == "VARCHAR"])


def _mark_duplicates(con: duckdb.DuckDBPyConnection, *, key: str, reason: str) -> None:
    """Among rows of `staged` sharing a key, the last one read is kept; each earlier one is a repeat or
    gets `reason` (sql/ingest/mark_duplicates.sql)."""
    sql, params = load_sql("ingest/mark_duplicates").prepare({"reason": reason}, key=Ident(key))
    con.execute(sql, params)


def _run_in_utc(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> None:
    """Run with the session's TimeZone set to UTC, so that text with an offset converts to UTC and
    naive text stays as written whatever the machine's zone; the caller's setting is restored."""
    # DuckDB refuses a bound value the statement does not use: a typed timestamp column needs no
    # timestamp_format, a source without text columns no na_values
    params = {name: value for name, value in params.items() if re.search(rf"\${name}\b", sql)}
    previous = con.execute("select current_setting('TimeZone')").fetchall()[0][0]
    con.execute("set TimeZone = 'UTC'")
    try:
        con.execute(sql, params)
    finally:
        con.execute(f"set TimeZone = '{previous.replace(chr(39), '')}'")
