"""The SQL loader fails at load time, naming file and line, for malformed query files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from audits.catalogue import CATALOGUE, CHECKS, CHECKS_BY_NAME, Check, load_checks
from audits.sqlfiles import SQL_DIR, Fragment, Ident, SqlFileError, idents, load_sql, parse_sql


def test_every_shipped_query_loads():
    files = sorted(p for p in SQL_DIR.rglob("*.sql") if p.parent.name != "schema")
    assert files
    for path in files:
        query = load_sql(str(path.relative_to(SQL_DIR).with_suffix("")))
        assert query.name == path.stem
        assert query.doc, f"{path} needs comment lines saying what it detects and its grain"
        if query.sql.split(None, 1)[0].lower() in ("update", "delete", "insert"):
            continue  # a statement that writes (the ingest's merge) has no final select
        assert query.sql.rstrip().splitlines()[-1].strip().startswith(("select * from final", "order by", "limit")), path


def test_every_check_of_the_catalogue_has_its_sql_file():
    """Each check's SQL file loads: its own, or that of the disparity check it shares a measurement with."""
    for check in CHECKS:
        assert load_sql(check.sql).name == (check.measured_as or check.name)
        if check.measured_as:
            shared = CHECKS_BY_NAME[check.measured_as]
            assert (check.kind, shared.kind, shared.measured_as) == ("disparity", "disparity", "")
    assert {c.name for c in CHECKS if c.measured_as} == {"loyalty_penalty"}


# The example entry of docs/checks.md, as a reader would paste it at the end of the catalogue
ENTRY = re.search(r"```toml\n(.*?)```", (SQL_DIR.parent / "docs" / "checks.md").read_text(encoding="utf-8"),
                  re.DOTALL).group(1).replace("\n   ", "\n").removeprefix("   ")


@pytest.mark.parametrize(("extra", "message"), [
    ("", None),
    ('adverse = "worse"', "check 'surcharge_incidence': adverse must be one of higher, lower, got 'worse'"),
    ("treshold = 1", "check 'surcharge_incidence': Check.__init__() got an unexpected keyword argument 'treshold'"),
])
def test_a_catalogue_entry_is_checked_when_it_loads(tmp_path, extra, message):
    """The example of docs/checks.md loads; a misspelt key or a value outside its choices fails, naming the entry."""
    path = tmp_path / "catalogue.toml"
    path.write_text(CATALOGUE.read_text(encoding="utf-8") + "\n" + ENTRY + extra + "\n", encoding="utf-8")
    if message is None:
        added = load_checks(path)[-1]
        assert (added.name, added.contrast, added.metric, added.adverse, len(load_checks(path))) == (
            "surcharge_incidence", "rate", "surcharge_ratio", "higher", len(CHECKS) + 1)
    else:
        with pytest.raises(ValueError, match=re.escape(f"{path}: {message}")):
            load_checks(path)


def test_a_rate_or_difference_check_words_its_findings():
    """A disparity check compared as a rate or a difference says its findings' sentence; the words of a
    difference say which way; a placeholder the wording does not fill in, or a display that does not fit
    the contrast, fails when the entry loads."""
    entry = {"name": "x", "kind": "disparity", "title": "X", "explanation": "x", "basis": "x", "metric": "x_ratio"}
    with pytest.raises(ValueError, match="a rate contrast needs 'finding'"):
        Check(**entry, contrast="rate", display="ratio")
    with pytest.raises(ValueError, match=re.escape("finding: {price} is not one of {Who}, {who}, {against}")):
        Check(**entry, contrast="rate", display="ratio", finding="{Who} paid {price}")
    with pytest.raises(ValueError, match="a difference contrast needs 'compared'"):
        Check(**entry, contrast="difference", display="points", finding="{Who} got {difference} {against}",
              compared=("more", "less"))
    with pytest.raises(ValueError, match="a rate contrast is displayed as ratio, not 'points'"):
        Check(**entry, contrast="rate", display="points", finding="{Who} {ratio}")
    assert Check(**entry, finding="").contrast == "outcome"  # outcome checks share the outcome's sentence


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


TEMPLATE = """-- name: q
-- A templated query.
-- params: $low
-- identifiers: table, columns
select {{ columns | csv("t.") }} from {{ table }} as t where t.x > $low"""


def test_identifiers_are_quoted_and_values_stay_parameters():
    query = parse_sql(TEMPLATE, path=Path("q.sql"))
    assert query.identifiers == ("table", "columns")
    sql = query.render(table=Ident("my table"), columns=idents(["a", 'b"; drop table x; --']))
    assert sql == 'select t."a", t."b""; drop table x; --" from "my table" as t where t.x > $low'


@pytest.mark.parametrize("value", ["raw text", 1.5, ["a"], None])
def test_anything_but_an_identifier_fragment_or_int_is_refused(value):
    query = parse_sql(TEMPLATE, path=Path("q.sql"))
    with pytest.raises(SqlFileError, match="only identifiers, fragments and integers"):
        query.render(table=value, columns=idents(["a"]))


def test_fragments_and_integers_print_as_they_are():
    query = parse_sql(TEMPLATE, path=Path("q.sql"))
    assert query.render(table=Fragment("(select 1 as a)"), columns=[3]).startswith("select t.3 from (select 1 as a)")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: q\n-- identifiers: a, b\nselect {{ a }}", "q.sql:2: identifier b is declared but never used"),
        ("-- name: q\n-- identifiers: a\nselect {{ a }}, {{ c }}", "q.sql:3: c is used but not declared"),
    ],
)
def test_identifiers_are_declared_and_used(text, message):
    with pytest.raises(SqlFileError) as caught:
        parse_sql(text, path=Path("q.sql"))
    assert message in str(caught.value)


def test_rendering_needs_exactly_the_declared_identifiers():
    query = parse_sql(TEMPLATE, path=Path("q.sql"))
    with pytest.raises(SqlFileError, match="rendered with"):
        query.render(table=Ident("t"))
