"""Attacks of issue 21 through the real `priceparity` as a subprocess, as an attacker or a careless user meets it.

Each: the exit code, exactly one line on stderr, no traceback, no data value (the customer and line ids below
all start with SECRET_PREFIX) in stdout, stderr or the warehouse's record of the batch, and the warehouse's
counts as they were. The warehouse starts with the 40 lines of `transactions.csv` loaded.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audits.config import load_config
from audits.ingest import ingest_all
from audits.warehouse import open_warehouse
from tests.flows.conftest import PRICEPARITY, direct_env

SECRET_PREFIX = "SECRETCUST"
HEADER = "order_id,sold_at,client,sku,qty,list_price,price,currency"
CONFIG = """[warehouse]
path = "warehouse.duckdb"
{warehouse}
[[sources]]
name = "{name}"
kind = "csv"
path = "tx/*.csv{gz}"
[sources.columns]
transaction_id = "order_id"
timestamp = "sold_at"
customer_id = "client"
product_id = "sku"
quantity = "qty"
unit_price = "price"
{extra}"""


def lines(n: int, *, first: int = 0) -> list[str]:
    """n good lines; every id (line and customer) starts with SECRET_PREFIX."""
    return [f"{SECRET_PREFIX}-O{i},2026-08-{1 + i % 28:02d} 10:00:00,{SECRET_PREFIX}-{i % 13},P{i % 5},1,10.00,"
            f"{9 + i % 2}.00,EUR" for i in range(first, first + n)]


def write_config(folder: Path, *, name: str = "shop", warehouse: str = "", extra: str = "", gz: bool = False) -> Path:
    path = folder / "config.toml"
    path.write_text(CONFIG.format(name=name, warehouse=warehouse, extra=extra, gz=".gz" if gz else ""),
                    encoding="utf-8")
    return path


@pytest.fixture
def loaded(tmp_path) -> Path:
    """A folder with config.toml, tx/a.csv (40 lines) and the warehouse holding them (loaded in this process:
    the ingest records files by their absolute path, so a copied warehouse would read them again)."""
    folder = tmp_path / "ws"
    (folder / "tx").mkdir(parents=True)
    (folder / "tx" / "a.csv").write_text("\n".join([HEADER, *lines(40)]) + "\n", encoding="utf-8")
    config = load_config(write_config(folder))
    with open_warehouse(config.warehouse_path) as con:
        ingest_all(con, config)
    return folder


def cli(folder: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(PRICEPARITY), *args], cwd=folder, capture_output=True, text=True,
                          env=env or direct_env(), timeout=300)


def counts(folder: Path, warehouse: str = "warehouse.duckdb") -> tuple[int, int]:
    """(transactions, quarantined rows) of the warehouse."""
    con = duckdb.connect(str(folder / warehouse), read_only=True)
    try:
        return con.execute("select (select count(*) from transactions), (select count(*) from quarantine)").fetchone()
    finally:
        con.close()


def batch_messages(folder: Path) -> str:
    con = duckdb.connect(str(folder / "warehouse.duckdb"), read_only=True)
    try:
        return " ".join(m or "" for (m,) in con.execute("select message from ingest_batches").fetchall())
    finally:
        con.close()


def one_error_line(done: subprocess.CompletedProcess, exit_code: int) -> str:
    """The one stderr line of a refused command, after checking the exit code and that no data value shows."""
    assert done.returncode == exit_code, done.stderr
    shown = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(shown) == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert SECRET_PREFIX not in done.stdout + done.stderr
    assert shown[0].startswith("error: ")
    return shown[0]


# --- item 2: no data value in an error ----------------------------------------------------------------

def test_a_csv_line_too_long_to_read_is_named_by_file_never_quoted(loaded):
    """DuckDB's error quotes the whole line (its customer id included): the message names the file instead."""
    long_line = f"{SECRET_PREFIX}-O99,2026-08-01 10:00:00,{SECRET_PREFIX}-99,P1,1,10.00,9.00,EUR," + "X" * 2_100_000
    (loaded / "tx" / "b.csv").write_text("\n".join([HEADER, *lines(5, first=100), long_line]) + "\n", encoding="utf-8")
    before = counts(loaded)
    line = one_error_line(cli(loaded, "ingest", "--config", "config.toml"), 2)
    assert "b.csv: cannot read source 'shop' as csv" in line and "longer than the CSV reader's limit" in line
    assert "XXXX" not in line
    assert counts(loaded) == before
    assert SECRET_PREFIX not in batch_messages(loaded) and "longer than" in batch_messages(loaded)


def test_a_line_not_in_the_encoding_is_named_by_line_number_never_quoted(loaded):
    text = "\n".join([HEADER, *lines(3, first=100), f"{SECRET_PREFIX}-O9,2026-08-01 10:00:00,Cl\xe9ment{SECRET_PREFIX},"
                                                     "P1,1,10.00,9.00,EUR"]) + "\n"
    (loaded / "tx" / "b.csv").write_bytes(text.encode("latin-1"))
    before = counts(loaded)
    line = one_error_line(cli(loaded, "ingest", "--config", "config.toml"), 2)
    assert "line 5: text that is not in the configured encoding" in line
    assert counts(loaded) == before and SECRET_PREFIX not in batch_messages(loaded)


# --- item 7: settings and options that crashed --------------------------------------------------------

@pytest.mark.parametrize(("warehouse", "extra", "says"), [
    ("threads = -4", "", "key 'warehouse.threads' must be between 0 and 1024, got -4"),
    ('memory_limit = "lots"', "", "key 'warehouse.memory_limit' must be a size such as '1.5GB'"),
    ("", '[validation]\nearliest = "yesterday"', "key 'validation.earliest' must be a date written YYYY-MM-DD"),
    ("", "[validation]\nmax_future_days = 99999999999", "key 'validation.max_future_days' must be between 0 and 3660"),
    ("", "[validation]\nmax_future_days = -100000", "key 'validation.max_future_days' must be between 0 and 3660"),
    ("", "[audit]\nwindow_days = 99999999999", "key 'audit.window_days' must be between 1 and 3660"),
    # item 6: settings that changed what an audit concludes
    ("", "[thresholds]\nmin_price_gap = -0.5", "key 'thresholds.min_price_gap' must be between 0 and 1, got -0.5"),
    ("", "[thresholds]\nmin_discount_depth = -0.1", "key 'thresholds.min_discount_depth' must be between 0 and 1"),
    ("", "[audit]\ntenure_days = -30", "key 'audit.tenure_days' must be between 1 and 36500, got -30"),
    ("", "[thresholds]\nadverse_impact_ratio = inf", "key 'thresholds.adverse_impact_ratio' must be a finite number"),
    ("", "[thresholds]\nfdr = nan", "key 'thresholds.fdr' must be a finite number"),
    ("", "[audit]\nchecks = []", "key 'audit.checks' must be a non-empty list, got []"),
    ("", "[validation]\ncurrencies = []", "key 'validation.currencies' must be a non-empty list of three-letter"),
])
def test_a_bad_setting_is_one_line_naming_the_key(loaded, warehouse, extra, says):
    write_config(loaded, warehouse=warehouse, extra=extra)
    before = counts(loaded)
    line = one_error_line(cli(loaded, "audit", "--config", "config.toml"), 2)  # ingest reads the config alike
    assert line.startswith("error: config.toml: ") and says in line, line
    assert counts(loaded) == before


@pytest.mark.parametrize(("args", "says"), [
    (("nightly", "--window-days", "99999999999"), "--window-days must be between 1 and 3660, got 99999999999"),
    (("nightly", "--as-of", "9999-12-31"), "--as-of 9999-12-31: must be a date written YYYY-MM-DD, between 1900 and 2100"),
    (("audit", "--to", "0001-01-01"), "--to 0001-01-01: must be a date written YYYY-MM-DD, between 1900 and 2100"),
    (("audit", "--from", "2026-02-30"), "--from 2026-02-30: not a date (YYYY-MM-DD)"),  # was typer's 6-line box
    (("nightly", "--window-days", "many"), "Invalid value for '--window-days'"),
])
def test_a_bad_option_is_one_line_naming_it(loaded, args, says):
    before = counts(loaded)
    line = one_error_line(cli(loaded, *args, "--config", "config.toml"), 2)
    assert says in line, line
    assert not any(ch in line for ch in "│╭╰─"), line  # no box drawn around it
    assert counts(loaded) == before


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_warehouse_path_naming_a_data_file_is_refused(loaded, kind):
    """DuckDB opens a Parquet or CSV file as a read-only database: an ingest into it 'succeeded' and kept nothing."""
    data = loaded / f"landing.{kind}"
    if kind == "parquet":
        pq.write_table(pa.table({"client": [f"{SECRET_PREFIX}-1"], "price": [9.0]}), data)
    else:
        data.write_text(f"client,price\n{SECRET_PREFIX}-1,9.0\n", encoding="utf-8")
    content = data.read_bytes()
    write_config(loaded, extra="").write_text(
        CONFIG.format(name="shop", warehouse="", extra="", gz="").replace("warehouse.duckdb", data.name),
        encoding="utf-8")
    for command in ("ingest", "audit"):
        line = one_error_line(cli(loaded, command, "--config", "config.toml"), 2)
        assert f"{data.name}: key 'warehouse.path' names a file that is not a DuckDB database" in line
    assert data.read_bytes() == content
    assert not list(loaded.glob(f"{data.name}.*"))  # no WAL or spill folder beside it


def test_a_gzip_that_expands_past_memory_stops_with_exit_3(loaded):
    """A small .csv.gz that expands to about 150 MB, read with warehouse.memory_limit = 100MB."""
    with gzip.open(loaded / "tx" / "b.csv.gz", "wt", compresslevel=1, encoding="utf-8") as bomb:
        bomb.write(HEADER + "\n")
        block = "\n".join(lines(1000, first=100)) + "\n"
        for _ in range(1500):
            bomb.write(block)
    write_config(loaded, warehouse='memory_limit = "100MB"', gz=True)
    (loaded / "tx" / "a.csv").rename(loaded / "tx" / "a.csv.gz.not-read")
    before = counts(loaded)
    line = one_error_line(cli(loaded, "ingest", "--config", "config.toml"), 3)
    assert "warehouse.duckdb: out of memory (warehouse.memory_limit = 100MB); nothing of this step was kept" in line
    assert counts(loaded) == before
    assert not list(loaded.glob("warehouse.duckdb.*"))  # no spill folder left


# --- item 8: a renamed source ------------------------------------------------------------------------

def test_a_renamed_source_is_recognised_and_nothing_is_loaded_twice(loaded):
    before = counts(loaded)
    write_config(loaded, name="store")
    done = cli(loaded, "ingest", "--config", "config.toml")
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr
    assert "store: recognised as source 'shop' renamed (it reads the same files): its 40 rows" in done.stdout
    assert counts(loaded) == before
    con = duckdb.connect(str(loaded / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("select distinct source from transactions").fetchall() == [("store",)]
    finally:
        con.close()
    again = cli(loaded, "ingest", "--config", "config.toml")
    assert again.returncode == 0 and "store: nothing new" in again.stdout
    assert counts(loaded) == before


def test_two_sources_reading_one_file_are_refused(loaded):
    config = write_config(loaded)
    config.write_text(config.read_text(encoding="utf-8") + '\n[[sources]]\nname = "copy"\nkind = "csv"\n'
                      'path = "tx/a.csv"\n', encoding="utf-8")
    before = counts(loaded)
    line = one_error_line(cli(loaded, "ingest", "--config", "config.toml"), 2)
    assert "source 'copy': file" in line and "a.csv was loaded by source 'shop'" in line
    assert counts(loaded) == before


# --- item 10: nothing but the one line ---------------------------------------------------------------

def test_control_characters_of_a_csv_header_are_escaped(loaded):
    """A header that would colour the terminal, set its title and ring its bell, named in the error."""
    header = HEADER.replace("price,currency", "pr\x1b[31mice\x1b]0;pwned\x07,currency")
    (loaded / "tx" / "b.csv").write_text("\n".join([header, *lines(3, first=100)]) + "\n", encoding="utf-8")
    before = counts(loaded)
    line = one_error_line(cli(loaded, "ingest", "--config", "config.toml"), 2)
    assert "pr\\x1b[31mice\\x1b]0;pwned\\x07" in line, line
    assert not any(ord(ch) < 32 or ch == "\x7f" for ch in line)
    assert counts(loaded) == before
    assert "\x1b" not in batch_messages(loaded)


# --- item 7: a full disk -----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 3 MB tmpfs (needs root, as CI and the development machines run)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip()}): the full-disk test needs root")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def test_a_full_disk_stops_with_one_line_and_leaves_the_warehouse_as_it_was(loaded, small_disk):
    """The warehouse on a 3 MB disk; a new file of 200,000 lines does not fit."""
    (loaded / "tx" / "b.csv").write_text("\n".join([HEADER, *lines(200_000, first=100)]) + "\n", encoding="utf-8")
    shutil.copyfile(loaded / "warehouse.duckdb", small_disk / "warehouse.duckdb")
    text = (loaded / "config.toml").read_text(encoding="utf-8")
    (small_disk / "config.toml").write_text(text.replace('"tx/*.csv"', f'"{(loaded / "tx").as_posix()}/*.csv"'),
                                            encoding="utf-8")
    before = counts(small_disk)
    line = one_error_line(cli(small_disk, "ingest", "--config", "config.toml"), 3)
    assert "warehouse.duckdb: no space left on the device of the warehouse or its spill files" in line, line
    left = sorted(p.name for p in small_disk.iterdir())
    assert set(left) <= {"config.toml", "warehouse.duckdb", "warehouse.duckdb.wal"}, left  # no spill folder
    assert counts(small_disk) == before
    assert SECRET_PREFIX not in batch_messages(small_disk)


# --- items 2 and 10 through a Prefect server -----------------------------------------------------------

@pytest.mark.slow
def test_through_a_prefect_server_each_error_is_one_line_and_its_logs_hold_no_data_value(loaded, prefect_harness):
    """Runs recorded on a Prefect server: stderr is the one line (no 'EventsWorker - Still processing items',
    no asyncio traceback), run after run, and nothing of the data reaches the server's logs or run states."""
    from prefect.client.orchestration import get_client

    from tests.flows.conftest import cli_env

    long_line = f"{SECRET_PREFIX}-O99,2026-08-01 10:00:00,{SECRET_PREFIX}-99,P1,1,10.00,9.00,EUR," + "X" * 2_100_000
    (loaded / "tx" / "b.csv").write_text("\n".join([HEADER, long_line]) + "\n", encoding="utf-8")
    bad_prices = "\n".join([HEADER, *(line.replace(",EUR", "x,EUR") for line in lines(20, first=200))]) + "\n"
    config, out = str(loaded / "config.toml"), str(loaded / "report")
    before = counts(loaded)
    for _ in range(3):
        line = one_error_line(cli(loaded, "audit", "--config", config, "--out", out, env=cli_env()), 2)
        assert "longer than the CSV reader's limit" in line
    (loaded / "tx" / "b.csv").write_text(bad_prices, encoding="utf-8")
    for _ in range(2):
        line = one_error_line(cli(loaded, "audit", "--config", config, "--out", out, env=cli_env()), 3)
        assert "failed validation" in line
    assert counts(loaded)[0] == before[0]
    with get_client(sync_client=True) as client:
        runs = [r for r in client.request("POST", "/flow_runs/filter", json={
            "flows": {"name": {"any_": ["on_demand_audit"]}}, "limit": 200}).json()
            if r["parameters"].get("config_path") == config]
        assert len(runs) == 5
        deadline = time.monotonic() + 30  # logs reach the API through events: they may trail the runs
        while True:
            logs = client.request("POST", "/logs/filter", json={
                "logs": {"flow_run_id": {"any_": [r["id"] for r in runs]}}, "limit": 200}).json()
            texts = [log["message"] for log in logs] + [r["state"]["message"] or "" for r in runs]
            if sum("longer than the CSV reader's limit" in t for t in texts) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert sum("longer than the CSV reader's limit" in t for t in texts) >= 3  # the errors were recorded there
    assert not [t for t in texts if SECRET_PREFIX in t or "XXXXXXXX" in t]
