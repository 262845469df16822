"""Fixtures for the flow tests: one small sample market per session, a fresh workspace per test.

A workspace is a config (the demo's, pointed at the shared market) with its own warehouse and
report folder, so every test starts from an empty warehouse without regenerating the market.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audits.config import load_config
from audits.ingest import ingest_all
from audits.sample import MarketSpec, write_sample_market
from audits.warehouse import open_warehouse

SMALL_MARKET = MarketSpec(n_customers=1_500, days=45, seed=5)
PRICEPARITY = Path(sys.executable).parent / "priceparity"


@pytest.fixture(scope="session")
def market(tmp_path_factory) -> Path:
    """The landing folder of a small sample market (45 days ending 2026-09-14)."""
    return write_sample_market(tmp_path_factory.mktemp("market") / "landing", spec=SMALL_MARKET)


def demo_config(landing: Path, *, window_days: int | None = None, lock_timeout_seconds: float = 60.0) -> str:
    """The demo's config with absolute source paths, the given window and lock timeout."""
    text = resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8")
    text = text.replace('path = "landing/', f'path = "{landing.as_posix()}/')
    text = text.replace("window_days = 90", f"window_days = {window_days}" if window_days else "")
    return text.replace('path = "warehouse.duckdb"',
                        f'path = "warehouse.duckdb"\nlock_timeout_seconds = {lock_timeout_seconds}')


@pytest.fixture
def workspace(tmp_path, market) -> Callable[..., Path]:
    """Write a config for the shared market into this test's folder; returns its path."""

    def make(*, window_days: int | None = None, lock_timeout_seconds: float = 60.0) -> Path:
        path = tmp_path / "priceparity.toml"
        path.write_text(demo_config(market, window_days=window_days, lock_timeout_seconds=lock_timeout_seconds),
                        encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="session")
def filled_warehouse(tmp_path_factory, market) -> Path:
    """A warehouse holding the shared market, ingested once per session; `filled_workspace` copies it."""
    path = tmp_path_factory.mktemp("filled") / "priceparity.toml"
    path.write_text(demo_config(market), encoding="utf-8")
    config = load_config(path)
    with open_warehouse(config.warehouse_path) as con:
        ingest_all(con, config)
    return config.warehouse_path


def filled_copy(folder: Path, market: Path, filled_warehouse: Path) -> Path:
    """The demo's config over the shared market in `folder`, with a copy of the filled warehouse; its path."""
    shutil.copyfile(filled_warehouse, folder / "warehouse.duckdb")
    path = folder / "priceparity.toml"
    path.write_text(demo_config(market), encoding="utf-8")
    return path


@pytest.fixture
def filled_workspace(tmp_path, market, filled_warehouse) -> Path:
    """The demo's config over the shared market, in this test's folder, with a copy of the filled warehouse."""
    return filled_copy(tmp_path, market, filled_warehouse)


@pytest.fixture
def bad_market_config(tmp_path) -> Path:
    """20 transactions of which 8 have a zero or negative quantity: far above validation.max_bad_share."""
    start = dt.datetime(2026, 9, 1, 10)
    rows = [
        {"transaction_id": f"T{i}", "timestamp": start + dt.timedelta(hours=i), "customer_id": f"C{i % 5}",
         "product_id": "P1", "quantity": 0 if i < 8 else 1, "unit_price": 9.5, "list_price": 10.0}
        for i in range(20)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "tx.parquet")
    path = tmp_path / "bad.toml"
    path.write_text(
        '[warehouse]\npath = "warehouse.duckdb"\n[output]\ndir = "reports"\n'
        '[[sources]]\nname = "shop"\nkind = "parquet"\npath = "tx.parquet"\n', encoding="utf-8")
    return path


def _own_environment() -> dict[str, str]:
    """This process's environment without what in-process CLI runs (CliRunner) left in it: the CLI quiets
    Prefect's and Dask's terminal logging with os.environ.setdefault, which a subprocess would inherit."""
    left = ("PREFECT_LOGGING_", "DASK_LOGGING__")
    return {name: value for name, value in os.environ.items() if not name.startswith(left)}


def direct_env(**extra: str) -> dict[str, str]:
    """The environment of a `priceparity` subprocess with no Prefect server: it runs the flows directly."""
    env = {name: value for name, value in _own_environment().items() if name != "PREFECT_API_URL"}
    return {**env, **extra}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a `priceparity` subprocess talking to this session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = _own_environment()
    env.update({"PREFECT_API_URL": str(PREFECT_API_URL.value()), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra})
    return env
