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
from audits.config import TIME_GRAINS, Config
from audits.errors import ConfigError
from audits.sqlfiles import Fragment, Ident, idents, load_sql
from audits.warehouse import table_columns

UNKNOWN_COLUMN = (
    "config key '{key}' names column {column!r}, which is not in the warehouse; "
    "known columns are {known}. Fix the config or map the column in the source"
)
IDENTIFIER_COLUMN = (
    "{key} names column {column!r}, which identifies {what}; a report must never list them: "
    "audit an attribute that groups customers instead"
)
NEAR_UNIQUE = (
    "{key} names column {column!r}, which has about one value per customer ({values:,} values for "
    "{customers:,} customers): it would single customers out; audit a coarser attribute (or band it with "
    "audit.bands)"
)
TOO_MANY_GROUPS = (
    "{key} names column {column!r}, which has about {values:,} values, more than audit.max_groups = "
    "{limit}; audit a coarser attribute, band it (audit.bands), or raise audit.max_groups"
)
# how a grouping key is named in a refusal: the config key, and the flag that sets it for one run
ASKED_BY = {"audit.attributes": "config key 'audit.attributes' (or --attribute)",
            "audit.segment_by": "config key 'audit.segment_by' (or --segment-by)",
            "audit.intersections": "config key 'audit.intersections'"}
# columns that identify a customer or a line: never an attribute, intersection part or segment
IDENTIFYING = {"customer_id": "customers", "transaction_id": "lines (transactions)"}
# a column with more distinct values than this share of the customers singles them out
NEAR_UNIQUE_SHARE = 0.5
# warehouse columns that are bookkeeping, never audited
BOOKKEEPING = ("batch_id", "source")
# what sql/audit/audit_lines.sql's `lines` selects anyway (every other resolved column is added to it)
LINE_COLUMNS = frozenset(("transaction_id", "customer_id", "product_id", "day", "currency", "category", "channel",
                          "quantity", "list_price", "unit_price", "discount_amount", "line_total", "discount_code",
                          *COMPUTED_COLUMNS, *TIME_GRAINS))


def build_audit_lines(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    period_start: dt.date,
    period_end: dt.date,
    filters: Mapping[str, str],
) -> dict[str, Fragment]:
    """Create temp table `audit_lines` for the days [period_start, period_end] (sql/audit/audit_lines.sql);
    returns audited column -> its SQL source (a quoted warehouse column, or one the audit computes)."""
    wanted = resolve_columns(con, config, filters)
    band_of = {column: j + 1 for j, column in enumerate(config.bands)}
    columns = {*config.attributes, *(c for combo in config.intersections for c in combo), *config.segment_by,
               *config.controls, *config.cell, *filters}  # what the audit groups, cuts or filters by
    attributes = [(source, Ident(name), Ident(f"pp_attr_{i}"), band_of.get(name, 0),
                   list(range(len(config.bands[name]), 0, -1)) if name in band_of else [])
                  for i, (name, source) in enumerate(wanted.items()) if name in columns and name not in LINE_COLUMNS]
    excluded = [str(p) for p in config.exclude_products]
    default_outcome = config.outcome_column == "unit_price" and config.outcome_per is None
    tenure_labels = band_labels(config.tenure_bands, unit=f" {config.tenure_unit}")
    if config.tenure_bands and config.renewal is None:
        tenure_labels[0] = "new"  # the first band is new customers, what the others are compared with
    values = {
        "start": dt.datetime.combine(period_start, dt.time()),
        "end": dt.datetime.combine(period_end + dt.timedelta(days=1), dt.time()),
        "tenure_days": config.tenure_days,
        "quantity_bands": [float(b) for b in config.quantity_bands],
        "filter_values": [str(v) for v in filters.values()],
        "excluded_products": excluded,
        "bands": [{"bounds": [float(b) for b in bounds], "labels": band_labels(bounds)}
                  for bounds in config.bands.values()],
        "tenure_bands": {"bounds": [float(b) for b in config.tenure_bands], "labels": tenure_labels},
    }
    sql, params = load_sql("audit/audit_lines").prepare(
        values, attributes=attributes, filters=[wanted[name] for name in filters],
        band_indexes=list(range(len(config.quantity_bands), 0, -1)), cell=idents(config.cell),
        controls=idents(config.controls), exclude=bool(excluded),
        outcome=None if default_outcome else wanted[config.outcome_column],
        per=wanted[config.outcome_per] if config.outcome_per else None,
        log_scale=config.outcome_scale == "ratio",
        grains=[(Fragment(f"'{grain}'"), Ident(grain)) for grain in config.cell if grain in ("week", "month")],
        tenure_value=wanted[config.tenure_column] if config.tenure_column else None,
        tenure_scale=365 if config.tenure_unit == "years" else 1,
        tenure_steps=list(range(len(config.tenure_bands), 0, -1)) if config.tenure_column else [],
        renewal=wanted[config.renewal] if config.renewal else None)
    con.execute(sql, params)
    return wanted


def band_labels(bounds: tuple[float, ...] | list[float], *, unit: str = "") -> list[str]:
    """Labels of the bands that start at each bound: 18-24 ... 65+ for whole numbers (a band of one value is
    that value), 0.5-<1.0 otherwise; `unit` is appended ("1-2 years")."""
    labels = []
    for i, low in enumerate(bounds):
        if i == len(bounds) - 1:
            labels.append(f"{_number(low)}+{unit}")
        elif float(low).is_integer() and float(bounds[i + 1]).is_integer():
            high = int(bounds[i + 1]) - 1
            labels.append(f"{int(low)}{unit}" if high == int(low) else f"{int(low)}-{high}{unit}")
        else:
            labels.append(f"{_number(low)}-<{_number(bounds[i + 1])}{unit}")
    return labels


def ordered_levels(config: Config) -> dict[str, list[str]]:
    """Columns whose levels have an order (bands, tenure): column -> its labels in order."""
    orders = {column: band_labels(bounds) for column, bounds in config.bands.items()}
    tenure = band_labels(config.tenure_bands, unit=f" {config.tenure_unit}")
    if config.tenure_bands and config.renewal is None:
        tenure[0] = "new"
    orders["tenure"] = ["new", *[t for t in tenure if t != "new"]] if config.tenure_bands else ["new", "existing"]
    return orders


def ordered_columns(config: Config) -> set[str]:
    """The columns with ordered bands, which get a trend test besides their group tests."""
    return set(config.bands) | ({"tenure"} if config.tenure_bands else set())


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def refuse_identifying_columns(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Stop before anything is computed when a grouping column identifies customers or lines, has about one
    value per customer, or has more values than audit.max_groups (a run would take minutes and list them)."""
    grouping = {}
    for key, names in (("audit.attributes", config.attributes),
                       ("audit.intersections", tuple(c for combo in config.intersections for c in combo)),
                       ("audit.segment_by", config.segment_by)):
        for name in names:
            if name in IDENTIFYING:
                raise ConfigError(IDENTIFIER_COLUMN.format(key=ASKED_BY[key], column=name, what=IDENTIFYING[name]))
            grouping.setdefault(name, key)
    if not grouping:
        return
    customers, *values = con.execute(load_sql("audit/grouping_values").render(columns=idents(grouping))).fetchone()
    for (name, key), n in zip(grouping.items(), values, strict=True):
        if n > config.max_groups:
            raise ConfigError(TOO_MANY_GROUPS.format(key=ASKED_BY[key], column=name, values=n, limit=config.max_groups))
        if customers >= 2 * config.min_group_customers and n > NEAR_UNIQUE_SHARE * customers:
            raise ConfigError(NEAR_UNIQUE.format(key=ASKED_BY[key], column=name, values=n, customers=customers))


def resolve_columns(con: duckdb.DuckDBPyConnection, config: Config, filters: Mapping[str, str]) -> dict[str, Fragment]:
    """Audited column -> its SQL source, for every column the config and the filters name."""
    tx_columns = set(table_columns(con, "transactions"))
    customer_columns = set(table_columns(con, "customers"))

    def resolve(key: str, column: str) -> Fragment:
        if column in COMPUTED_COLUMNS:
            return Fragment(Ident(column).sql())
        if column in customer_columns and column not in ("customer_id", *BOOKKEEPING):
            return Fragment("c." + Ident(column).sql())
        if column in tx_columns and column not in BOOKKEEPING:
            return Fragment("t." + Ident(column).sql())
        known = sorted((tx_columns | customer_columns | set(COMPUTED_COLUMNS)) - set(BOOKKEEPING))
        raise ConfigError(UNKNOWN_COLUMN.format(key=key, column=column, known=", ".join(known)))

    wanted: dict[str, Fragment] = {}
    for key, names in (
        ("audit.attributes", config.attributes),
        ("audit.intersections", tuple(c for combo in config.intersections for c in combo)),
        ("audit.segment_by", config.segment_by),
        ("audit.controls", config.controls),
        ("audit.cell", tuple(c for c in config.cell if c not in TIME_GRAINS)),
        ("audit.outcome.column", (config.outcome_column,)),
        ("audit.outcome.per", (config.outcome_per,) if config.outcome_per else ()),
        ("audit.tenure.column", (config.tenure_column,) if config.tenure_column else ()),
        ("audit.renewal", (config.renewal,) if config.renewal else ()),
        ("filters", tuple(filters)),
    ):
        for name in names:
            wanted.setdefault(name, resolve(key, name))
    return wanted
