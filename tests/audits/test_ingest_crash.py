"""A load killed mid-batch (SIGKILL, inside its transaction) leaves the warehouse as it was, and the
next run completes it: the warehouse then equals, table by table, one that was never interrupted.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from audits.config import load_config
from audits.ingest import ingest_all
from audits.sample import TRANSACTION_COLUMN_MAP, MarketSpec, generate_market
from audits.warehouse import open_warehouse
from tests.audits.ingest_fixtures.killed_load import run_until_paused, snapshot

pytestmark = pytest.mark.slow  # each test kills a real ingest process mid-load: 5-10 s


def write_config(root: Path, warehouse: str) -> Path:
    path = root / f"{warehouse}.toml"
    mapping = "".join(f'{k} = "{v}"\n' for k, v in TRANSACTION_COLUMN_MAP.items())
    path.write_text(f'[warehouse]\npath = "{warehouse}.duckdb"\n[[sources]]\nname = "shop"\nkind = "parquet"\n'
                    f'path = "landing/*.parquet"\n[sources.columns]\n{mapping}', encoding="utf-8")
    return path


def ingest(config_path: Path) -> None:
    config = load_config(config_path)
    with open_warehouse(config.warehouse_path) as con:
        ingest_all(con, config)


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> SimpleNamespace:
    """Night 1 loads 70% of a market; night 2 brings the rest, 60 corrected lines and one bad line.

    Returns the root, a copy of the warehouse after night 1, and snapshots after nights 1 and 2 of
    an uninterrupted run.
    """
    root = tmp_path_factory.mktemp("nights")
    (root / "landing").mkdir()
    lines = generate_market(MarketSpec(n_customers=600, days=20, seed=4)).transactions
    first = int(lines.num_rows * 0.7)
    pq.write_table(lines.slice(0, first), root / "landing" / "night1.parquet")
    clean = write_config(root, "clean")
    ingest(clean)
    shutil.copy(root / "clean.duckdb", root / "after_night1.duckdb")
    corrected = lines.slice(0, 60)
    cents = pa.scalar(Decimal("0.01"), pa.decimal128(12, 2))
    corrected = corrected.set_column(corrected.schema.get_field_index("paid_unit_price"), "paid_unit_price",
                                     pc.subtract(corrected["paid_unit_price"], cents).cast(pa.decimal128(12, 2)))
    bad = lines.slice(first, 1).set_column(lines.schema.get_field_index("qty"), "qty", pa.array([-1], pa.int32()))
    night2 = pa.concat_tables([lines.slice(first + 1), corrected, bad])
    pq.write_table(night2, root / "landing" / "night2.parquet")
    ingest(clean)
    return SimpleNamespace(root=root, rows=lines.num_rows, after_night1=snapshot(root / "after_night1.duckdb"),
                           after_night2=snapshot(root / "clean.duckdb"))


@pytest.mark.parametrize("point", ["ingest_after_upsert", "ingest_before_commit"])
def test_a_killed_file_load_rolls_back_and_the_next_run_completes_it(nights, point):
    name = f"crash_{point}"
    shutil.copy(nights.root / "after_night1.duckdb", nights.root / f"{name}.duckdb")
    config = write_config(nights.root, name)
    run_until_paused(config, point)
    assert snapshot(nights.root / f"{name}.duckdb") == nights.after_night1
    ingest(config)
    assert snapshot(nights.root / f"{name}.duckdb") == nights.after_night2
    count, _ = nights.after_night2["transactions"]
    assert count == nights.rows - 1  # every line once; the bad one in quarantine
    assert nights.after_night2["quarantine"][0] == 1
