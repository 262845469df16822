"""Shared fixtures: an in-memory warehouse built from the real sql/schema, and one Prefect harness."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from audits.warehouse import apply_schema


@pytest.fixture
def warehouse() -> Iterator[duckdb.DuckDBPyConnection]:
    """An empty in-memory warehouse with the real schema."""
    con = duckdb.connect(":memory:")
    apply_schema(con)
    yield con
    con.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (it takes about 10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield
