"""Incremental and idempotent file loads, batch records, and the data-quality stop (exit code 3).

A night's re-run must write nothing twice; a corrected row must replace the old one; a batch that
fails validation must leave its quarantine and its record committed, and nothing else.
"""

from __future__ import annotations

import os
from dataclasses import replace
from decimal import Decimal

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from audits.errors import DataQualityError
from audits.ingest import data_quality_summary, ingest_all
from audits.warehouse import apply_schema, open_warehouse
from tests.audits.test_ingest_files import COLUMNS, HEADER, LINES, config_for, rows, write_csv


def test_the_same_file_loaded_twice_is_read_once(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", LINES)
    config = config_for(tmp_path, "tx.csv")
    ingest_all(warehouse, config)
    [again] = ingest_all(warehouse, config)
    assert (again.status, again.rows_read, again.files_read, again.files_skipped) == ("loaded", 0, 0, 1)
    assert again.watermark_to == "2026-08-02T09:30:00"  # carried forward
    assert rows(warehouse, "select count(*) from transactions") == [(3,)]
    assert rows(warehouse, "select rows_read, message from ingest_batches order by batch_id") == [
        (3, None), (0, "nothing new")]


def test_a_rewritten_file_is_read_again_and_its_unchanged_rows_count_as_duplicates(warehouse, tmp_path):
    path = write_csv(tmp_path / "tx.csv", LINES)
    config = config_for(tmp_path, "tx.csv")
    ingest_all(warehouse, config)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    [again] = ingest_all(warehouse, config)
    assert (again.rows_read, again.rows_loaded, again.rows_replaced, again.rows_duplicate) == (3, 0, 0, 3)
    assert rows(warehouse, "select count(*), max(batch_id) from transactions") == [(3, 1)]  # nothing rewritten


def test_a_corrected_row_in_a_new_file_replaces_the_old_one(warehouse, tmp_path):
    write_csv(tmp_path / "landing" / "day1.csv", LINES)
    config = config_for(tmp_path, "landing/*.csv")
    ingest_all(warehouse, config)
    write_csv(tmp_path / "landing" / "day2.csv", [
        "T2,2026-08-01 11:00:00,C2,P1,2,10.00,8.50,EUR",  # correction of T2 (was 9.00)
        "T4,2026-07-30 08:00:00,C3,P3,1,3.00,3.00,EUR",   # a late row, older than everything loaded
    ])
    [batch] = ingest_all(warehouse, config)
    assert (batch.files_read, batch.files_skipped) == (1, 1)
    assert (batch.rows_read, batch.rows_loaded, batch.rows_replaced, batch.rows_duplicate) == (2, 1, 1, 0)
    assert rows(warehouse, "select transaction_id, unit_price, batch_id from transactions order by 1") == [
        ("T1", Decimal("10"), 1), ("T2", Decimal("8.5"), 2), ("T3", Decimal("5.5"), 1), ("T4", Decimal("3"), 2)]


def test_sources_are_keyed_apart(warehouse, tmp_path):
    write_csv(tmp_path / "a.csv", LINES)
    write_csv(tmp_path / "b.csv", LINES[:1])
    config = config_for(tmp_path, "a.csv")
    app = replace(config.sources[0], name="app", path=tmp_path / "b.csv")
    ingest_all(warehouse, replace(config, sources=(config.sources[0], app)))
    assert rows(warehouse, "select source, count(*) from transactions group by 1 order by 1") == [
        ("app", 1), ("shop", 3)]


def test_too_many_bad_rows_stop_the_run_with_the_quarantine_committed(tmp_path):
    path = write_csv(tmp_path / "tx.csv", [*LINES, "T4,2026-08-02 10:00:00,C3,P2,1,5.50,five,EUR"])
    config = config_for(tmp_path, "tx.csv", max_bad_share=0.2)
    with open_warehouse(tmp_path / "wh.duckdb") as con:
        with pytest.raises(DataQualityError) as caught:
            ingest_all(con, config)
    assert caught.value.exit_code == 3
    assert str(caught.value) == (
        f"{path}: 1 of 4 rows (25.0%) of source 'shop' failed validation, more than validation.max_bad_share = "
        "20.0% (top reasons: unit_price: not a valid number (1)); nothing was loaded, the rows are in table "
        "quarantine (batch 1): fix the source and run again")
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:  # a new connection: committed
        assert rows(con, "select status, rows_read, rows_loaded, rows_quarantined from ingest_batches") == [
            ("failed_quality", 4, 0, 1)]
        assert rows(con, "select reason from quarantine") == [("unit_price: not a valid number",)]
        assert rows(con, "select count(*) from transactions") == [(0,)]
        assert rows(con, "select count(*) from ingest_files") == [(0,)]  # so the next run reads the file again
        assert rows(con, "select count(*) > 0 from expectation_results where batch_id = 1") == [(True,)]
        quality = data_quality_summary(con)
    assert quality.passed is False and quality.quarantined_rows == 1


def test_the_cli_ingests_and_maps_errors_to_exit_codes(tmp_path, monkeypatch):
    from flows.cli import app

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "CRITICAL")  # the CLI sets it; monkeypatch restores it
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    write_csv(tmp_path / "tx.csv", LINES)
    config_path = tmp_path / "pp.toml"

    def run(columns: dict[str, str], max_bad_share: float = 0.05):
        mapping = "".join(f'{k} = "{v}"\n' for k, v in columns.items())
        config_path.write_text(
            f'[warehouse]\npath = "wh.duckdb"\n[validation]\nmax_bad_share = {max_bad_share}\n'
            f'[[sources]]\nname = "shop"\nkind = "csv"\npath = "tx.csv"\n[sources.columns]\n{mapping}',
            encoding="utf-8")
        return CliRunner().invoke(app, ["ingest", "--config", str(config_path)])

    missing = run({**COLUMNS, "quantity": "amount"})
    assert missing.exit_code == 2
    assert missing.output.strip().count("\n") == 0 and "column 'amount' (canonical 'quantity')" in missing.output
    ok = run(COLUMNS)
    assert ok.exit_code == 0 and "shop: 3 new, 0 replaced, 0 unchanged, 0 quarantined" in ok.output
    write_csv(tmp_path / "tx.csv", ["T9,2026-08-02 10:00:00,C3,P2,1,5.50,five,EUR"])
    bad = run(COLUMNS)
    assert bad.exit_code == 3 and "failed validation" in bad.output


_LINE = st.tuples(
    st.sampled_from(["T1", "T2", "T3", "T4"]),            # ids repeat, within and across batches
    st.sampled_from(["9.00", "10.00", "-1", "x", ""]),    # good, good, negative, not a number, missing
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_LINE, min_size=1, max_size=8), min_size=1, max_size=3))
@pytest.mark.slow  # hypothesis: many ingests of generated batches
def test_accounting_always_adds_up_and_keys_stay_unique(tmp_path_factory, batches):
    root = tmp_path_factory.mktemp("accounting")
    con = duckdb.connect()
    apply_schema(con)
    config = config_for(root, "landing/*.csv", max_bad_share=1.0)
    for night, lines in enumerate(batches):
        write_csv(root / "landing" / f"night{night}.csv",
                  [f"{tid},2026-08-01 10:00:00,C1,P1,1,10.00,{price},EUR" for tid, price in lines])
        [batch] = ingest_all(con, config)
        assert batch.rows_read == len(lines)
        assert batch.rows_read == (batch.rows_loaded + batch.rows_replaced + batch.rows_duplicate
                                   + batch.rows_quarantined)
        assert rows(con, f"select count(*) from quarantine where batch_id = {batch.batch_id}") == [
            (batch.rows_quarantined,)]
    assert rows(con, "select count(*) = count(distinct transaction_id) from transactions") == [(True,)]
    # the warehouse holds, for each id, the last good version seen across the nights
    last_good: dict[str, Decimal] = {}
    for lines in batches:
        final = {tid: price for tid, price in lines}  # the last line of an id wins within a night
        for tid, price in final.items():
            if price in ("9.00", "10.00"):
                last_good[tid] = Decimal(price)
    assert dict(rows(con, "select transaction_id, unit_price from transactions")) == last_good
    con.close()



def test_a_new_mapping_reads_loaded_files_again_and_fills_the_new_attribute(warehouse, tmp_path):
    write_csv(tmp_path / "tx.csv", [f"{line},DE" for line in LINES], header=HEADER + ",country")
    ingest_all(warehouse, config_for(tmp_path, "tx.csv"))
    [unchanged] = ingest_all(warehouse, config_for(tmp_path, "tx.csv"))
    assert unchanged.files_skipped == 1
    [remapped] = ingest_all(warehouse, config_for(tmp_path, "tx.csv", attributes=["ship_country"],
                                                  columns={**COLUMNS, "ship_country": "country"}))
    assert (remapped.files_read, remapped.rows_replaced) == (1, 3)
    assert rows(warehouse, "select distinct ship_country from transactions") == [("DE",)]


def test_a_failed_expectation_rolls_back_the_corrections_and_new_rows_it_had_written(warehouse, tmp_path, monkeypatch):
    """The rows are upserted before Great Expectations decides; a failed expectation must undo the upsert
    (deleted old versions back, new rows gone) and keep only the quarantine and the batch's record."""
    import audits.validate

    write_csv(tmp_path / "landing" / "day1.csv", LINES)
    config = replace(config_for(tmp_path, "landing/*.csv"), max_bad_share=0.5)  # one bad row of three is fine
    [first] = ingest_all(warehouse, config)
    before = rows(warehouse, "select * from transactions order by transaction_id")
    hole = {"expectation": "expect_column_values_to_be_unique", "column": "transaction_id", "success": False,
            "unexpected_count": 2, "element_count": 3}
    monkeypatch.setattr(audits.validate, "validate_transactions", lambda *args, **kwargs: [hole])
    write_csv(tmp_path / "landing" / "day2.csv", [
        "T2,2026-08-01 11:00:00,C2,P1,2,10.00,8.50,EUR",  # a correction of T2: deletes the old version
        "T4,2026-08-03 08:00:00,C3,P3,1,3.00,3.00,EUR",   # new
        "T5,2026-08-03 09:00:00,,P3,1,3.00,3.00,EUR",     # no customer: quarantined
    ])
    with pytest.raises(DataQualityError, match="failed Great Expectations"):
        ingest_all(warehouse, config)
    assert rows(warehouse, "select * from transactions order by transaction_id") == before
    assert rows(warehouse, "select batch_id, status from ingest_batches order by batch_id") == [
        (first.batch_id, "loaded"), (first.batch_id + 1, "failed_quality")]
    assert rows(warehouse, f"select count(*) from ingest_files where batch_id > {first.batch_id}") == [(0,)]
    assert rows(warehouse, "select batch_id, source_row from quarantine") == [(first.batch_id + 1, 3)]
    monkeypatch.undo()
    [again] = ingest_all(warehouse, config)  # day2 was not recorded as read: it is read again, and loads
    assert (again.files_read, again.rows_loaded, again.rows_replaced) == (1, 1, 1)


def test_a_failed_expectation_stops_the_batch_even_when_the_row_rules_passed(warehouse, tmp_path, monkeypatch):
    import audits.validate

    hole = {"expectation": "expect_column_values_to_be_unique", "column": "transaction_id", "success": False,
            "unexpected_count": 2, "element_count": 3}
    monkeypatch.setattr(audits.validate, "validate_transactions", lambda *args, **kwargs: [hole])
    write_csv(tmp_path / "tx.csv", LINES)
    with pytest.raises(DataQualityError, match=r"failed Great Expectations expect_column_values_to_be_unique"
                                               r"\(transaction_id\) although its rows passed the row rules"):
        ingest_all(warehouse, config_for(tmp_path, "tx.csv"))
    assert rows(warehouse, "select status from ingest_batches") == [("failed_quality",)]
    assert rows(warehouse, "select count(*) from transactions") == [(0,)]
    assert rows(warehouse, "select expectation, success, unexpected_count from expectation_results") == [
        ("expect_column_values_to_be_unique", False, 2)]
