"""The audited lines of a period: which warehouse columns the config names, and the temp table built
from them (sql/audit/audit_lines.sql).

Every column the config or a filter names is resolved against the warehouse's own columns before any
SQL is built: a name that is not there stops the run with the config key and the known columns; a name
that is there reaches SQL only as a quoted identifier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import duckdb

from audits.columns import COMPUTED_COLUMNS
from audits.config import Config
from audits.errors import ConfigError
from audits.sqlfiles import Fragment, Ident, idents, load_sql
from audits.warehouse import table_columns

UNKNOWN_COLUMN = (
    "config key '{key}' names column {column!r}, which is not in the warehouse; "
    "known columns are {known}. Fix the config or map the column in the source"
)
IDENTIFIER_COLUMN = (
    "config key '{key}' names column {column!r}, which identifies {what}; a report must never list them: "
    "audit an attribute that groups customers instead"
)
NEAR_UNIQUE = (
    "config key '{key}' names column {column!r}, which has about one value per customer ({values:,} values for "
    "{customers:,} customers): it would single customers out; audit a coarser attribute (or band it with "
    "audit.bands)"
)
TOO_MANY_GROUPS = (
    "config key '{key}' names column {column!r}, which has about {values:,} values, more than audit.max_groups = "
    "{limit}; audit a coarser attribute, band it (audit.bands), or raise audit.max_groups"
)
# columns that identify a customer or a line: never an attribute, intersection part or segment
IDENTIFYING = {"customer_id": "customers", "transaction_id": "lines (transactions)"}
# a column with more distinct values than this share of the customers singles them out
NEAR_UNIQUE_SHARE = 0.5
# warehouse columns that are bookkeeping, never audited
_BOOKKEEPING = ("batch_id", "source")


def build_audit_lines(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    period_start: dt.date,
    period_end: dt.date,
    filters: Mapping[str, str],
) -> dict[str, Fragment]:
    """Create temp table `audit_lines` for the days [period_start, period_end]; returns audited column -> its
    SQL source (a quoted warehouse column, or a column the audit computes)."""
    wanted = resolve_columns(con, config, filters)
    attributes = [(source, Ident(name)) for name, source in wanted.items()
                  if name not in COMPUTED_COLUMNS and name not in ("category", "channel")]
    excluded = [str(p) for p in config.exclude_products]
    values = {
        "start": dt.datetime.combine(period_start, dt.time()),
        "end": dt.datetime.combine(period_end + dt.timedelta(days=1), dt.time()),
        "tenure_days": config.tenure_days,
        "quantity_bands": [float(b) for b in config.quantity_bands],
        "filter_values": [str(v) for v in filters.values()],
        "excluded_products": excluded,
    }
    sql, params = load_sql("audit/audit_lines").prepare(
        values, attributes=attributes, filters=[wanted[name] for name in filters],
        band_indexes=list(range(len(config.quantity_bands), 0, -1)), controls=idents(config.controls),
        exclude=bool(excluded))
    con.execute(sql, params)
    return wanted


def refuse_identifying_columns(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Stop before anything is computed when a grouping column identifies customers or lines, has about one
    value per customer, or has more values than audit.max_groups (a run would take minutes and list them)."""
    grouping = {}
    for key, names in (("audit.attributes", config.attributes),
                       ("audit.intersections", tuple(c for combo in config.intersections for c in combo)),
                       ("audit.segment_by", config.segment_by)):
        for name in names:
            if name in IDENTIFYING:
                raise ConfigError(IDENTIFIER_COLUMN.format(key=key, column=name, what=IDENTIFYING[name]))
            grouping.setdefault(name, key)
    if not grouping:
        return
    counted = ", ".join(f"approx_count_distinct({Ident(name).sql()})" for name in grouping)
    customers, *values = con.execute(f"select approx_count_distinct(customer_id), {counted} from audit_lines").fetchone()
    for (name, key), n in zip(grouping.items(), values, strict=True):
        if n > config.max_groups:
            raise ConfigError(TOO_MANY_GROUPS.format(key=key, column=name, values=n, limit=config.max_groups))
        if customers >= 2 * config.min_group_customers and n > NEAR_UNIQUE_SHARE * customers:
            raise ConfigError(NEAR_UNIQUE.format(key=key, column=name, values=n, customers=customers))


def resolve_columns(con: duckdb.DuckDBPyConnection, config: Config, filters: Mapping[str, str]) -> dict[str, Fragment]:
    """Audited column -> its SQL source, for every column the config and the filters name."""
    tx_columns = set(table_columns(con, "transactions"))
    customer_columns = set(table_columns(con, "customers"))

    def resolve(key: str, column: str) -> Fragment:
        if column in COMPUTED_COLUMNS:
            return Fragment(Ident(column).sql())
        if column in customer_columns and column not in ("customer_id", *_BOOKKEEPING):
            return Fragment("c." + Ident(column).sql())
        if column in tx_columns and column not in _BOOKKEEPING:
            return Fragment("t." + Ident(column).sql())
        known = sorted((tx_columns | customer_columns | set(COMPUTED_COLUMNS)) - set(_BOOKKEEPING))
        raise ConfigError(UNKNOWN_COLUMN.format(key=key, column=column, known=", ".join(known)))

    wanted: dict[str, Fragment] = {}
    for key, names in (
        ("audit.attributes", config.attributes),
        ("audit.intersections", tuple(c for combo in config.intersections for c in combo)),
        ("audit.segment_by", config.segment_by),
        ("audit.controls", config.controls),
        ("filters", tuple(filters)),
    ):
        for name in names:
            wanted[name] = resolve(key, name)
    return wanted
