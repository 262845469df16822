"""Two of the references the audit is measured against, computing the same two metrics on the same lines
(the third, pyfixest computing the audit's own statistics, is bench/pyfixest_reference.py).

For every audited grouping (each attribute, each intersection, and each of them within every
segment value), per group: the mean within-cell price ratio (a line's unit price over the mean unit
price of its cell, cell = product x day x controls) and the discount rate (share of lines paid below
list price or carrying a discount amount).

- floor: one DuckDB query over the warehouse that scans the transactions once (a window function
  for the cell means, GROUPING SETS for every grouping). No audit can do less work than this.
- naive: the same figures the way an analyst would get them with pandas: read the Parquet files,
  merge the customers, `groupby(...).transform("mean")` for the cells, one `groupby` per grouping.

Neither has confidence intervals, clustering, suppression or multiple-testing correction: they are
lower bounds on the work, not alternatives to the audit.
"""

from __future__ import annotations

import datetime as dt
import glob
import math
from collections.abc import Callable
from typing import Any

import duckdb

from audits.config import Config
from audits.sample import TRANSACTION_COLUMN_MAP
from audits.warehouse import quote_identifier, table_columns

INTERSECTION = " & "


def groupings(config: Config) -> list[tuple[tuple[str, ...], str | None]]:
    """(grouped columns, segment column or None) for every grouping the audit reports on."""
    dimensions = [(a,) for a in config.attributes] + [tuple(c) for c in config.intersections]
    return [(columns, segment) for segment in (None, *config.segment_by) for columns in dimensions
            if segment not in columns]


def column_source(con: duckdb.DuckDBPyConnection) -> Callable[[str], str]:
    """column -> its SQL source: `c.<column>` for a customer attribute, else `t.<column>` (transactions)."""
    customer_columns = set(table_columns(con, "customers")) - {"customer_id", "batch_id"}

    def source(column: str) -> str:
        return f"c.{quote_identifier(column)}" if column in customer_columns else f"t.{quote_identifier(column)}"

    return source


def floor_sql(con: duckdb.DuckDBPyConnection, config: Config) -> str:
    """The one-scan query: window function over cells, then every grouping as a grouping set."""
    wanted = list(dict.fromkeys(c for columns, segment in groupings(config) for c in (*columns, segment) if c))
    source = column_source(con)
    cell = ", ".join(["t.product_id", "t.timestamp::date", *(source(c) for c in config.controls)])
    selected = ", ".join(f"{source(c)} as {quote_identifier(c)}" for c in wanted)
    sets = ", ".join(
        "(" + ", ".join(quote_identifier(c) for c in (*columns, *([segment] if segment else []))) + ")"
        for columns, segment in groupings(config))
    keys = ", ".join(quote_identifier(c) for c in wanted)
    return f"""
        with lines as (
            select {selected},
                   t.unit_price / avg(t.unit_price) over (partition by {cell}) as price_ratio,
                   coalesce(t.unit_price < t.list_price, false) or coalesce(t.discount_amount > 0, false)
                       as is_discounted
            from transactions as t left join customers as c using (customer_id)
            where t.timestamp >= $start and t.timestamp < $end
        )
        select {keys}, {", ".join(f"grouping({quote_identifier(c)}) as {quote_identifier('g_' + c)}" for c in wanted)},
               count(*) as lines, avg(price_ratio) as mean_price_ratio, avg(is_discounted::int) as discount_rate
        from lines
        group by grouping sets ({sets})"""


def run_floor(con: duckdb.DuckDBPyConnection, config: Config, *, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Run the floor query on [start, end]; one row per grouping x segment value x group."""
    wanted = list(dict.fromkeys(c for columns, segment in groupings(config) for c in (*columns, segment) if c))
    cursor = con.execute(floor_sql(con, config), {
        "start": dt.datetime.combine(start, dt.time()), "end": dt.datetime.combine(end + dt.timedelta(days=1), dt.time())})
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    by_set = {frozenset((*columns, *([segment] if segment else []))): (columns, segment)
              for columns, segment in groupings(config)}
    out = []
    for row in rows:
        present = frozenset(c for c in wanted if row[f"g_{c}"] == 0)
        columns, segment = by_set[present]
        out.append(_figure(columns, segment, row, row["lines"], row["mean_price_ratio"], row["discount_rate"]))
    return out


def load_naive(landing_glob: str, customers_file: str, config: Config):
    """Read what the analyst needs from the Parquet files into one pandas frame (money as float)."""
    import pandas as pd

    source = {canonical: TRANSACTION_COLUMN_MAP[canonical] for canonical in
              ("customer_id", "product_id", "timestamp", "unit_price", "list_price", "discount_amount")}
    extra = [c for c in dict.fromkeys((*config.controls, *config.segment_by)) if c in TRANSACTION_COLUMN_MAP]
    columns = [*source.values(), *(TRANSACTION_COLUMN_MAP[c] for c in extra)]
    frames = []
    for path in sorted(glob.glob(landing_glob)):  # file by file: float money before the next file
        frame = pd.read_parquet(path, columns=columns)
        for money in ("unit_price", "list_price", "discount_amount"):
            frame[source[money]] = frame[source[money]].astype("float64")
        frames.append(frame)
    tx = pd.concat(frames, ignore_index=True)
    del frames
    renames = {v: k for k, v in source.items()} | {TRANSACTION_COLUMN_MAP[c]: c for c in extra}
    tx = tx.rename(columns=renames)
    attributes = list(dict.fromkeys(c for columns, segment in groupings(config) for c in (*columns, segment)
                                    if c and c not in tx.columns))
    customers = pd.read_parquet(customers_file, columns=["client_ref", *attributes]).rename(
        columns={"client_ref": "customer_id"})
    return tx, customers


def run_naive(tx, customers, config: Config) -> list[dict[str, Any]]:
    """The analyst's pandas: merge, cell means by groupby-transform, one groupby per grouping."""
    df = tx.merge(customers, on="customer_id", how="left")
    df["day"] = df["timestamp"].dt.normalize()
    cell = ["product_id", "day", *config.controls]
    df["price_ratio"] = df["unit_price"] / df.groupby(cell, observed=True)["unit_price"].transform("mean")
    df["is_discounted"] = (df["unit_price"] < df["list_price"]) | (df["discount_amount"] > 0)
    out = []
    for columns, segment in groupings(config):
        keys = [*columns, *([segment] if segment else [])]
        table = df.groupby(keys, observed=True).agg(
            lines=("price_ratio", "size"), mean_price_ratio=("price_ratio", "mean"),
            discount_rate=("is_discounted", "mean"))
        for index, row in table.iterrows():
            values = dict(zip(keys, index if isinstance(index, tuple) else (index,), strict=True))
            out.append(_figure(columns, segment, values, int(row["lines"]), row["mean_price_ratio"],
                               row["discount_rate"]))
    return out


def _figure(columns: tuple[str, ...], segment: str | None, values: dict[str, Any], lines: int,
            ratio: float, rate: float) -> dict[str, Any]:
    return {"grouping": INTERSECTION.join(columns), "segment": f"{segment}={values[segment]}" if segment else "",
            "group": INTERSECTION.join(str(values[c]) for c in columns), "lines": int(lines),
            "mean_price_ratio": float(ratio), "discount_rate": float(rate)}


def compare(floor: list[dict[str, Any]], naive: list[dict[str, Any]]) -> dict[str, Any]:
    """Do the two references agree? (They must: same lines, same definitions.)"""
    def key(row: dict[str, Any]) -> tuple[str, str, str]:
        return row["grouping"], row["segment"], row["group"]

    a, b = {key(r): r for r in floor}, {key(r): r for r in naive}
    common = a.keys() & b.keys()
    worst = max((max(abs(a[k]["mean_price_ratio"] - b[k]["mean_price_ratio"]),
                     abs(a[k]["discount_rate"] - b[k]["discount_rate"])) for k in common), default=math.nan)
    lines_equal = all(a[k]["lines"] == b[k]["lines"] for k in common)
    return {"rows_floor": len(a), "rows_naive": len(b), "rows_in_both": len(common),
            "max_abs_difference": worst, "lines_equal": lines_equal,
            "agree": len(common) == len(a) == len(b) and lines_equal and worst < 1e-9}
