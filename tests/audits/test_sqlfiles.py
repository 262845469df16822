"""The SQL loader fails at load time, naming file and line, for malformed query files."""

from __future__ import annotations

from pathlib import Path

import pytest

from audits.sqlfiles import SQL_DIR, SqlFileError, load_sql, parse_sql


def test_every_shipped_query_loads():
    files = sorted((SQL_DIR / "checks").glob("*.sql")) + sorted((SQL_DIR / "stats").glob("*.sql"))
    assert files
    for path in files:
        query = load_sql(f"{path.parent.name}/{path.stem}")
        assert query.name == path.stem
        assert query.doc, f"{path} needs comment lines saying what it detects and its grain"
        assert query.sql.rstrip().splitlines()[-1].strip().startswith(("select * from final", "order by")), path


def test_parameters_are_declared_and_used():
    query = parse_sql("-- name: q\n-- params: $a, $b\nselect $a + $b", path=Path("q.sql"))
    assert query.params == ("a", "b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("select 1", "q.sql:1: the first line must be '-- name: <name>'"),
        ("-- name: other\nselect 1", "q.sql:1: name 'other' does not match"),
        ("-- name: q\n-- only a comment", "q.sql:2: the query is empty"),
        ("-- name: q\n-- params: $a, $b\nselect $a", "q.sql:2: parameter $b is declared but never used"),
        ("-- name: q\nselect 1\nwhere x = $c", "q.sql:3: parameter $c is used but not declared"),
    ],
)
def test_malformed_files_fail_with_file_and_line(text, message):
    with pytest.raises(SqlFileError) as caught:
        parse_sql(text, path=Path("q.sql"))
    assert message in str(caught.value)


def test_parameters_inside_strings_and_comments_are_ignored():
    query = parse_sql("-- name: q\nselect '$notaparam' as x -- $nor_this\n", path=Path("q.sql"))
    assert query.params == ()
