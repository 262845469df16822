"""Bench markets: a year of history plus one more day for the nightly run, generated once and cached.

A market of about N lines is `audits.sample`'s synthetic market over 366 days with N / 40 customers
(40 lines per customer and year on average). The first 365 days are the history the first run
loads; the last day (about N / 366 lines: 27k at 10M) is kept aside in `incoming/` and dropped into
the landing folder by the nightly run. Everything lives under the data dir, never in the repository.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from audits.sample import TRANSACTION_COLUMN_MAP, MarketSpec, write_sample_market

LINES_PER_CUSTOMER = 40.0
HISTORY_DAYS = 365
START = dt.date(2025, 7, 1)  # a fixed past year: validation quarantines timestamps in the future
SEED = 7
ROWS_PER_FILE = 500_000  # always a folder of parts, so the nightly can add one
MANIFEST = "market.json"
NEW_DAY_PART = "part-9999-new-day.parquet"
SIZE_LABELS = {"1M": 1_000_000, "3M": 3_000_000, "10M": 10_000_000, "30M": 30_000_000}

BAD_SIZE = "size {label!r}: expected a number of lines such as 1M, 10M, 30M or 250000"


@dataclass(frozen=True)
class BenchMarket:
    """Where a generated market's files are and what they hold."""

    label: str
    root: str
    landing_glob: str      # the transactions source of the bench config
    customers_file: str
    incoming_file: str     # the new day, kept out of the landing folder until the nightly run
    history_rows: int
    new_day_rows: int
    customers: int
    period_start: str      # first and last day of the history (the first run's audit period)
    period_end: str
    new_day: str
    spec: str

    @property
    def new_day_landed(self) -> Path:
        return Path(self.landing_glob).parent / NEW_DAY_PART


def parse_size(label: str) -> tuple[str, int]:
    """'10M' -> ('10M', 10_000_000); '250000' -> ('250k', 250_000)."""
    text = label.strip().upper()
    if text in SIZE_LABELS:
        return text, SIZE_LABELS[text]
    multiplier = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    digits = text[:-1] if multiplier > 1 else text
    try:
        rows = int(float(digits) * multiplier)
    except ValueError as err:
        raise ValueError(BAD_SIZE.format(label=label)) from err
    if rows < 10_000:
        raise ValueError(BAD_SIZE.format(label=label))
    return (f"{rows // 1_000_000}M" if rows % 1_000_000 == 0 else f"{rows // 1000}k"), rows


def market_spec(rows: int) -> MarketSpec:
    return MarketSpec(n_customers=max(1, round(rows / LINES_PER_CUSTOMER)), days=HISTORY_DAYS + 1, start=START,
                      lines_per_customer=LINES_PER_CUSTOMER, seed=SEED)


def cached_market(data_dir: Path, label: str, rows: int) -> BenchMarket | None:
    """The market already generated for this size and spec, if any."""
    manifest = data_dir / label / "market" / MANIFEST
    if not manifest.exists():
        return None
    market = BenchMarket(**json.loads(manifest.read_text(encoding="utf-8")))
    files_there = Path(market.incoming_file).exists() and Path(market.customers_file).exists()
    return market if market.spec == repr(market_spec(rows)) and files_there else None


def generate_market(data_dir: Path, label: str, rows: int) -> BenchMarket:
    """Write the market (history parts, customers, the incoming day) under `data_dir/label/market`."""
    spec = market_spec(rows)
    root = data_dir / label / "market"
    if root.exists():
        shutil.rmtree(root)
    landing = root / "landing"
    write_sample_market(landing, spec=spec, max_rows_per_file=ROWS_PER_FILE)
    single = landing / "transactions.parquet"
    if single.exists():  # a market small enough for one file: same layout as the big ones
        (landing / "transactions").mkdir()
        single.rename(landing / "transactions" / "part-0000.parquet")
    parts = sorted((landing / "transactions").glob("part-*.parquet"))
    new_day = spec.start + dt.timedelta(days=HISTORY_DAYS)
    cut = pa.scalar(dt.datetime.combine(new_day, dt.time()), pa.timestamp("us"))
    sold_at = TRANSACTION_COLUMN_MAP["timestamp"]
    history_rows, kept = 0, []
    for part in parts:  # one part (500k lines) in memory at a time
        table = pq.read_table(part)
        is_new = pc.greater_equal(table[sold_at], cut)
        history = table.filter(pc.invert(is_new))
        kept.append(table.filter(is_new))
        pq.write_table(history, part)
        history_rows += history.num_rows
    incoming = root / "incoming" / f"day-{new_day.isoformat()}.parquet"
    incoming.parent.mkdir(parents=True)
    new_rows = pa.concat_tables(kept)
    pq.write_table(new_rows, incoming)
    market = BenchMarket(
        label=label, root=str(root), landing_glob=str(landing / "transactions" / "part-*.parquet"),
        customers_file=str(landing / "customers.parquet"), incoming_file=str(incoming),
        history_rows=history_rows, new_day_rows=new_rows.num_rows, customers=spec.n_customers,
        period_start=spec.start.isoformat(), period_end=(new_day - dt.timedelta(days=1)).isoformat(),
        new_day=new_day.isoformat(), spec=repr(spec))
    (root / MANIFEST).write_text(json.dumps(asdict(market), indent=2) + "\n", encoding="utf-8")
    return market


def reset_landing(market: BenchMarket) -> None:
    """Take the new day out of the landing folder again (a previous bench run's nightly put it there)."""
    market.new_day_landed.unlink(missing_ok=True)


def land_new_day(market: BenchMarket) -> None:
    """What the nightly export does: one more file in the landing folder, the history untouched."""
    shutil.copyfile(market.incoming_file, market.new_day_landed)
