"""Great Expectations validation of each ingest batch.

GE 1.x has no working DuckDB SQL data source, so each batch is validated as pandas chunks taken
from DuckDB through Arrow (bounded memory: `validation.chunk_rows` rows at a time). The suite runs
on the rows the batch is about to load, after the row-level rules have quarantined bad rows: it is
the independent gate that nothing which breaks the canonical contract enters the warehouse. Results
are summed over chunks, one entry per expectation.

Importing great_expectations takes seconds, so this module is imported lazily by the ingest.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import duckdb

from audits.config import Config

_MONEY_COLUMNS = ("list_price", "unit_price", "discount_amount", "line_total", "quantity")


def build_suite(config: Config, *, has_list_price: bool, has_currency: bool) -> list[Any]:
    """The transaction expectations, derived from the config's validation settings."""
    import great_expectations as gx

    e = gx.expectations
    latest = dt.datetime.now() + dt.timedelta(days=config.max_future_days)
    suite: list[Any] = [
        *(e.ExpectColumnValuesToNotBeNull(column=c)
          for c in ("transaction_id", "timestamp", "customer_id", "product_id", "quantity", "unit_price")),
        e.ExpectColumnValuesToBeUnique(column="transaction_id"),
        e.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="quantity", min_value=0, strict_min=True),
        e.ExpectColumnValuesToBeBetween(column="timestamp", min_value=dt.datetime.fromisoformat(config.earliest),
                                        max_value=latest),
    ]
    if has_list_price:
        suite.append(e.ExpectColumnValuesToBeBetween(column="list_price", min_value=0))
        if not config.allow_above_list:
            suite.append(e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="list_price", column_B="unit_price", or_equal=True,
                ignore_row_if="either_value_is_missing"))
    if has_currency:
        suite.append(e.ExpectColumnValuesToBeInSet(column="currency", value_set=list(config.currencies)))
    return suite


def validate_transactions(
    con: duckdb.DuckDBPyConnection,
    staged: str,
    *,
    config: Config,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Validate the accepted rows of a staged batch; one summary dict per expectation."""
    import great_expectations as gx

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.ERROR)
    has_list_price, has_currency = con.execute(
        f"select count(list_price) > 0, count(currency) > 0 from {staged} where len(reasons) = 0"
    ).fetchone()
    expectations = build_suite(config, has_list_price=bool(has_list_price), has_currency=bool(has_currency))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("priceparity")
        .add_dataframe_asset("transactions")
        .add_batch_definition_whole_dataframe("batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="transactions", expectations=expectations))

    columns = ", ".join(
        f"cast({c} as double) as {c}" if c in _MONEY_COLUMNS else c
        for c in ("transaction_id", "timestamp", "customer_id", "product_id", "quantity", "unit_price",
                  "list_price", "currency")
    )
    last_row = con.execute(f"select coalesce(max(source_row), 0) from {staged}").fetchone()[0]
    totals: dict[str, dict[str, Any]] = {}
    chunks = 0
    for first in range(0, last_row, config.chunk_rows):
        # Pages by row number: a bounded pandas frame at a time, and the connection stays free.
        frame = con.execute(
            f"select {columns} from {staged} where len(reasons) = 0 and source_row > $first and source_row <= $last",
            {"first": first, "last": first + config.chunk_rows},
        ).fetch_df()
        if frame.empty:
            continue
        result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
        chunks += 1
        for item in result.results:
            kwargs = item.expectation_config.kwargs
            column = kwargs.get("column") or f"{kwargs.get('column_A')} >= {kwargs.get('column_B')}"
            name = item.expectation_config.type
            entry = totals.setdefault(f"{name}:{column}", {
                "expectation": name, "column": column, "success": True, "unexpected_count": 0, "element_count": 0})
            entry["success"] = entry["success"] and bool(item.success)
            entry["unexpected_count"] += int(item.result.get("unexpected_count") or 0)
            entry["element_count"] += int(item.result.get("element_count") or len(frame))
    if progress:
        progress(f"validated {chunks} chunk(s) with {len(expectations)} expectations")
    return list(totals.values())
