"""A library's error never carries a data value into a message (audits.errors.data_free_reason)."""

from __future__ import annotations

import duckdb
import pytest

from audits.errors import InputError, data_free_reason, printable, scrub


def _duckdb_error(sql: str) -> duckdb.Error:
    con = duckdb.connect()
    try:
        con.execute(sql).fetchall()
    except duckdb.Error as err:
        return err
    raise AssertionError(f"{sql} did not fail")


def test_a_library_error_is_described_without_its_text(tmp_path):
    err = _duckdb_error("select cast('SECRET-42' as integer)")
    assert "SECRET-42" in str(err)
    reason = data_free_reason(err)
    assert reason == "a value that does not convert to its column's type [DuckDB ConversionException]"
    assert str(err) == reason  # what a traceback printing it as a cause shows
    assert data_free_reason(err) == reason  # asked again: the same words, not a description of our own
    # DuckDB's line number is kept, the line is not
    bad = tmp_path / "bad.csv"
    bad.write_bytes("a,b\n1,2\n3,Cl\xe9ment-SECRET\n".encode("latin-1"))
    err = _duckdb_error(f"select * from read_csv('{bad}', header = true, all_varchar = true)")
    assert data_free_reason(err).startswith("line 3: text that is not in the configured encoding")
    # an unknown condition: the kind of error only
    err = _duckdb_error("select 'SECRET-7'::struct(a int)")
    assert "SECRET" not in data_free_reason(err) and "DuckDB" in data_free_reason(err)


def test_a_postgres_data_exception_is_withheld_whatever_it_says():
    class DataError(Exception):  # the driver's errors carry the SQLSTATE
        sqlstate = "22P02"

    err = DataError('invalid input syntax for type integer: "SECRET-9"')
    reason = data_free_reason(err)
    assert reason.startswith("a value or row the database refused (SQLSTATE 22P02) [") and "SECRET" not in reason
    assert str(err) == reason


def test_our_own_errors_read_as_written():
    assert data_free_reason(InputError("x.csv: column 'price' is missing")) == "x.csv: column 'price' is missing"


@pytest.mark.parametrize(("text", "shown"), [("pr\x1b[31mice", "pr\\x1b[31mice"), ("a\u202eb", "a\\u202eb"),
                                             ("plain, é", "plain, é")])
def test_control_and_format_characters_are_escaped(text, shown):
    assert printable(text) == shown


def test_a_traceback_holds_no_library_text_that_may_quote_the_data():
    """scrub() rewords the chain's errors that may quote values before a traceback of it is printed or logged;
    an error about SQL keeps its text (identifiers, for whoever fixes the bug)."""
    import traceback

    conversion = _duckdb_error("select cast('SECRET-42' as integer)")
    binder = _duckdb_error("select no_such_column from (select 1 as a)")
    try:
        try:
            raise conversion
        except duckdb.Error as err:
            raise RuntimeError("a bug") from err
    except RuntimeError as err:
        scrub(err)
        printed = "".join(traceback.format_exception(err))
    assert "SECRET-42" not in printed and "a value that does not convert" in printed
    scrub(binder)
    assert "no_such_column" in str(binder)
