"""Fixtures for the audit engine's tests: generated markets loaded straight into an in-memory warehouse.

Loading goes around the ingest on purpose (its tests are elsewhere): the generator's Arrow tables are
inserted into the canonical tables built from the real sql/schema, so a small market is ready to audit
in well under a second.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from audits.config import Config, parse_config
from audits.findings import AuditResult, DataQuality
from audits.runner import run_audit
from audits.sample import TRANSACTION_COLUMN_MAP, Market, MarketSpec, generate_market
from audits.warehouse import add_attribute_columns, apply_schema

DEMO_AUDIT: dict[str, Any] = {
    "attributes": ["gender", "age_band", "region"],
    "intersections": [["gender", "age_band"]],
    "segment_by": ["category"],
    "controls": ["channel"],
}


# A small market for the engine's properties: 900 customers over 20 days (tests/audits/test_contrasts.py,
# test_shared_windows.py), in the `con` fixture.
SMALL_SPEC = MarketSpec(n_customers=900, days=20, n_products=25, seed=11)


@pytest.fixture(scope="module")
def con():
    """An in-memory warehouse holding SMALL_SPEC's market, one per test module."""
    connection = duckdb.connect(":memory:")
    apply_schema(connection)
    load_market(connection, generate_market(SMALL_SPEC))
    yield connection
    connection.close()


def market_config(*, audit: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Config:
    """A config auditing a generated market like the demo does; sections override whole TOML tables."""
    return parse_config({"audit": {**DEMO_AUDIT, **(audit or {})}, **sections})


def load_market(con: duckdb.DuckDBPyConnection, market: Market) -> None:
    """Insert a generated market into the canonical tables of an empty warehouse."""
    load_tables(con, market.transactions, market.customers)


def load_tables(con: duckdb.DuckDBPyConnection, transactions: pa.Table, customers: pa.Table | None) -> None:
    """Insert source-shaped tables (the generator's column names) into the canonical tables."""
    con.register("source_tx", transactions)
    canonical = ", ".join(TRANSACTION_COLUMN_MAP)
    source = ", ".join(f'"{TRANSACTION_COLUMN_MAP[c]}"' for c in TRANSACTION_COLUMN_MAP)
    con.execute(f"insert into transactions ({canonical}, source, batch_id) "
                f"select {source}, 'shop', 1 from source_tx")
    con.unregister("source_tx")
    if customers is None:
        return
    attributes = [n for n in customers.column_names if n not in ("client_ref", "customer_since")]
    add_attribute_columns(con, "customers", attributes)
    con.register("source_customers", customers)
    names = ", ".join(f'"{a}"' for a in attributes)
    con.execute(f"insert into customers (customer_id, customer_since, batch_id, {names}) "
                f"select client_ref, customer_since, 1, {names} from source_customers")
    con.unregister("source_customers")


def audit(con: duckdb.DuckDBPyConnection, config: Config, *, start: dt.date, end: dt.date) -> AuditResult:
    return run_audit(con, config, period_start=start, period_end=end, data_quality=DataQuality(passed=True),
                     run_id="test")


def audit_market(market: Market, config: Config | None = None) -> AuditResult:
    """Audit a generated market over its whole period in a fresh in-memory warehouse."""
    con = duckdb.connect(":memory:", config={"threads": 2})
    try:
        apply_schema(con)
        load_market(con, market)
        return audit(con, config or market_config(), start=market.spec.start, end=market.spec.end)
    finally:
        con.close()


def assert_same_findings(expected: list, found: list, *, rel: float = 1e-9) -> None:
    """Two runs' findings equal field by field: the same tests in the same order, the same texts, counts,
    severities and statuses, and numbers within `rel` (sums taken in another order differ in the last digits)."""
    assert [f.key for f in found] == [f.key for f in expected]
    for x, y in zip(expected, found, strict=True):
        for name, value in asdict(x).items():
            other = getattr(y, name)
            if isinstance(value, float) and not isinstance(value, bool):
                assert other == pytest.approx(value, rel=rel, abs=1e-14), (x.key, name)
            else:
                assert other == value, (x.key, name)

