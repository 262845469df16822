"""The insurance and lending sample books: shape, messiness, determinism, and that the planted truth is
in the rows, measured directly with DuckDB.

The planted sizes are the right answers: 8% more premium over pure premium for renewals of three
years or more against new business in the same rating cell; 0.35 rate points for group P2 within grade
x term. Each confounder must make the naive gap large while the within-cell gap of the attribute it
touches stays at zero (or, for P2, at the planted 0.35).
"""

from __future__ import annotations

import json
import math

import duckdb
import pyarrow as pa
import pytest

from audits.sample import (
    SAMPLE_KINDS,
    InsuranceSpec,
    LendingSpec,
    MarketSpec,
    generate_insurance_book,
    generate_loan_book,
    write_market,
    write_sample_market,
)
from audits.sample.insurance import POLICIES_SCHEMA
from audits.sample.lending import LOANS_SCHEMA


class Book:
    """A generated book, its planted record, and one DuckDB connection that sees the rows as `book`."""

    def __init__(self, table: pa.Table, planted: dict) -> None:
        self.table, self.planted = table, planted
        self.con = duckdb.connect()
        self.con.register("book", table)

    def one(self, query: str):
        (row,) = self.con.execute(query).fetchall()
        return row[0] if len(row) == 1 else row

    def within_cell(self, *, cell: str, outcome: str, group: str, scope: str = "true") -> float:
        gap, n_cells = self.one(WITHIN_CELL.format(cell=cell, outcome=outcome, group=group, scope=scope))
        assert n_cells >= 10  # grade x term has 14
        return gap

    def naive(self, *, outcome: str, group: str) -> float:
        return self.one(NAIVE.format(outcome=outcome, group=group))


@pytest.fixture(scope="module")
def policies():
    return Book(*generate_insurance_book())


@pytest.fixture(scope="module")
def loans():
    return Book(*generate_loan_book())


# The group's outcome minus the reference's in each cell, averaged over cells weighted by the group's
# rows (the cells where both sides are present); and the number of such cells.
WITHIN_CELL = """
    with rows as (select row({cell}) as cell, {outcome} as y, ({group}) as in_group from book where {scope}),
    cells as (select avg(y) filter (where in_group) as g, avg(y) filter (where not in_group) as r,
                     count(*) filter (where in_group) as n
              from rows group by cell)
    select sum((g - r) * n) / sum(n), count(*) from cells where g is not null and r is not null
"""
NAIVE = "select avg({outcome}) filter (where {group}) - avg({outcome}) filter (where not ({group})) from book"


# --- insurance ---------------------------------------------------------------------------------------

RATING_CELL = "Cover, VehClass, Region, Year"
# the example config's finer cell: the rating factors and a BonusMalus band (50-59, 60-79, 80-99, 100+)
CONFIG_CELL = RATING_CELL + ", case when BonusMalus::int < 60 then 0 when BonusMalus::int < 80 then 1 " \
                            "when BonusMalus::int < 100 then 2 else 3 end"
LOG_PER = "ln(Premium / PurePremium)"


def test_the_renewal_book_has_the_exports_shape(policies):
    book = policies
    table, planted = book.table, book.planted
    assert table.schema == POLICIES_SCHEMA
    assert table.column_names == ["IDpol", "Year", "Premium", "PurePremium", "Cover", "VehClass", "Region",
                                  "BonusMalus", "DrivAge", "Gender", "TenureYears", "Renewal"]
    assert 20_000 < table.num_rows < 40_000 and planted["totals"]["rows"] == table.num_rows
    assert book.one("select count(distinct IDpol), count(distinct (IDpol, Year)) = count(*) from book") == (
        12_000, True)
    assert book.one("select min(Year), max(Year) from book") == (2022, 2025)
    # a policy's years follow each other, its tenure and its driver's age rising by one a year
    assert book.one("""select count(*) from (
                    select Year - lag(Year) over w as dy, TenureYears - lag(TenureYears) over w as dt,
                           DrivAge - lag(DrivAge) over w as da
                    from book window w as (partition by IDpol order by Year))
                  where dy is not null and (dy, dt, da) <> (1, 1, 1)""") == 0
    assert book.one("select count(*) from book where (TenureYears = 0) <> (Renewal = 'new')") == 0
    assert book.one("select count(*) from book where Renewal not in ('new', 'renewal')") == 0
    new_share, walked_share = book.one("""select avg((Renewal = 'new')::int), avg((TenureYears >= 3)::int)
                                     from book""")
    assert 0.15 < new_share < 0.35 and 0.3 < walked_share < 0.7
    assert book.one("select count(*) from book where PurePremium <= 0 or Premium <= 0") == 0


def test_the_export_is_messy_where_the_config_must_cope(policies):
    book = policies
    table = book.table
    null_text, sql_null = book.one("""select avg((Gender = 'null')::int), count(*) filter (where Gender is null)
                                 from book""")
    assert 0.01 < null_text < 0.03 and sql_null == 0
    assert table.schema.field("BonusMalus").type == pa.string()
    low, high, at_floor = book.one("select min(BonusMalus::int), max(BonusMalus::int), avg((BonusMalus = '50')::int) "
                                   "from book")
    assert (low, high) == (50, 180) and 0.4 < at_floor < 0.5
    assert table.schema.field("DrivAge").type == pa.int32()
    low, high, n_ages = book.one("select min(DrivAge), max(DrivAge), count(distinct DrivAge) from book")
    assert low == 18 and high <= 88 + 3 and n_ages > 50


@pytest.mark.parametrize("cell", [RATING_CELL, CONFIG_CELL], ids=["rating-factors", "with-bonus-malus-band"])
def test_renewals_of_three_years_or_more_pay_eight_percent_over_new_business(policies, cell):
    book = policies
    (effect,) = book.planted["effects"]
    assert (effect["size"], effect["unit"], effect["by_tenure_band"]) == (0.08, "ratio", {
        "1-2": 0.0, "3-4": 0.08, "5+": 0.08})
    for band, low, high, size in (("1-2", 1, 2, 0.0), ("3-4", 3, 4, 0.08), ("5+", 5, 99, 0.08)):
        gap = book.within_cell(cell=cell, outcome=LOG_PER, group=f"TenureYears between {low} and {high}",
                               scope=f"Renewal = 'new' or TenureYears between {low} and {high}")
        assert math.exp(gap) - 1 == pytest.approx(size, abs=0.004), band


def test_older_drivers_pay_more_only_by_cover_mix(policies):
    book, planted = policies, policies.planted
    naive = math.exp(book.naive(outcome=LOG_PER, group="DrivAge >= 65")) - 1
    assert naive > 0.03
    (confounder,) = planted["confounders"]
    assert (confounder["attribute"], confounder["groups"], confounder["should_flag"]) == ("age", ["65+"], False)
    assert confounder["naive_gap"] == pytest.approx(naive, abs=1e-4)
    old_comp, young_comp = book.one("""select avg((Cover = 'COMP')::int) filter (where DrivAge >= 65),
                                     avg((Cover = 'COMP')::int) filter (where DrivAge < 50) from book""")
    assert old_comp > 0.6 and young_comp < 0.45
    # no age effect is planted; a policy's driver ages with its tenure, so the walking reaches older rows
    # a little more often (without walking these gaps vanish: see the next test)
    for group in ("DrivAge >= 65", "DrivAge between 50 and 64", "DrivAge < 25", "Gender = 'F'"):
        assert book.within_cell(cell=RATING_CELL, outcome=LOG_PER, group=group) == pytest.approx(0, abs=0.006), group


def test_walking_and_confounder_follow_the_spec():
    book = Book(*generate_insurance_book(InsuranceSpec(n_policies=4_000, walking_pct=0.0, confounders=False)))
    gap = book.within_cell(cell=RATING_CELL, outcome=LOG_PER, group="TenureYears >= 3",
                           scope="Renewal = 'new' or TenureYears >= 3")
    assert gap == pytest.approx(0, abs=0.004)
    assert book.naive(outcome=LOG_PER, group="DrivAge >= 65") == pytest.approx(0, abs=0.01)
    for group in ("DrivAge >= 65", "DrivAge < 25"):
        assert book.within_cell(cell=RATING_CELL, outcome=LOG_PER, group=group) == pytest.approx(0, abs=0.003)
    assert book.planted["confounders"] == [] and book.planted["effects"][0]["by_tenure_band"] == {
        "1-2": 0.0, "3-4": 0.0, "5+": 0.0}
    later = InsuranceSpec(walking_from_years=4)
    assert generate_insurance_book(later)[1]["effects"][0]["by_tenure_band"] == {"1-2": 0.0, "3-4": None, "5+": 0.08}


# --- lending -----------------------------------------------------------------------------------------

RATE = "rate_pct::double"
GRADE_TERM = "grade, term_months"


def test_the_loan_book_has_the_exports_shape(loans):
    book = loans
    table, planted = book.table, book.planted
    assert table.schema == LOANS_SCHEMA
    assert table.column_names == ["loan_id", "grade", "term_months", "amount", "rate_pct", "borrower_age",
                                  "gender", "region", "group"]
    assert table.num_rows == 30_000 == planted["totals"]["rows"]
    assert book.one("select count(distinct loan_id), min(loan_id), max(loan_id) from book") == (
        30_000, "LN0000001", "LN0030000")
    assert book.one("""select string_agg(distinct grade, '' order by grade),
                              list(distinct term_months order by term_months) from book""") == ("ABCDEFG", [36, 60])
    assert book.one('select list(distinct "group" order by "group") from book') == ["P1", "P2", "P3", "P4"]
    # the rate card: grade A is cheapest, G dearest, 60 months dearer than 36
    by_grade = book.one(f"select list(r order by grade) from (select grade, avg({RATE}) as r from book group by all)")
    assert by_grade == sorted(by_grade) and by_grade[-1] - by_grade[0] > 15


def test_the_loan_export_is_messy_where_the_config_must_cope(loans):
    book = loans
    table = book.table
    assert table.schema.field("rate_pct").type == pa.string()
    assert book.one("select count(*) from book where try_cast(rate_pct as double) is null") == 0
    assert book.one(r"select count(*) from book where not regexp_full_match(rate_pct, '\d+\.\d\d')") == 0
    null_text, sql_null = book.one("""select avg((gender = 'null')::int), count(*) filter (where gender is null)
                                 from book""")
    assert 0.01 < null_text < 0.03 and sql_null == 0
    assert book.one("select min(borrower_age), max(borrower_age) from book") == (18, 80)


def test_group_p2_pays_a_markup_of_035_points_within_grade_and_term(loans):
    book, planted = loans, loans.planted
    (effect,) = planted["effects"]
    assert (effect["check"], effect["attribute"], effect["group"], effect["size"], effect["unit"]) == (
        "price_gap", "group", "P2", 0.35, "points")
    within = book.within_cell(cell=GRADE_TERM, outcome=RATE, group="\"group\" = 'P2'")
    assert within == pytest.approx(0.35, abs=0.02)
    naive = book.naive(outcome=RATE, group="\"group\" = 'P2'")
    assert naive > 2.5  # the grade mix: P2 is more often in riskier grades
    grade_mix = next(c for c in planted["confounders"] if c["name"] == "grade_mix")
    assert grade_mix["naive_gap"] == pytest.approx(naive, abs=1e-3)
    assert grade_mix["planted_gap"] == 0.35


def test_young_borrowers_and_other_groups_pay_the_rate_card(loans):
    book, planted = loans, loans.planted
    naive = book.naive(outcome=RATE, group="borrower_age < 25")
    assert naive > 1.5  # riskier grades
    young = next(c for c in planted["confounders"] if c["name"] == "young_grade_mix")
    assert (young["groups"], young["should_flag"], young["planted_gap"]) == (["18-24"], False, 0.0)
    assert young["naive_gap"] == pytest.approx(naive, abs=1e-3)
    for group in ("borrower_age < 25", "borrower_age >= 65", "gender = 'F'", "region = 'London'"):
        # without P2's loans no gap at all; with them a little of the markup shows, since within a grade
        # P2's share differs by age (both shift the grade), still far below the config's 0.10 points
        assert book.within_cell(cell=GRADE_TERM, outcome=RATE, group=group,
                                scope="\"group\" <> 'P2'") == pytest.approx(0, abs=0.015), group
        assert book.within_cell(cell=GRADE_TERM, outcome=RATE, group=group) == pytest.approx(0, abs=0.05), group
    for group in ("P3", "P4"):  # against the config's reference group P1
        assert book.within_cell(cell=GRADE_TERM, outcome=RATE, group=f"\"group\" = '{group}'",
                                scope=f"\"group\" in ('P1', '{group}')") == pytest.approx(0, abs=0.03), group
    p2 = book.within_cell(cell=GRADE_TERM, outcome=RATE, group="\"group\" = 'P2'", scope="\"group\" in ('P1', 'P2')")
    assert p2 == pytest.approx(0.35, abs=0.02)


def test_markup_and_grade_mix_follow_the_spec():
    book = Book(*generate_loan_book(LendingSpec(n_loans=8_000, markup_points=0.0, confounders=False)))
    assert book.within_cell(cell=GRADE_TERM, outcome=RATE, group="\"group\" = 'P2'") == pytest.approx(0, abs=0.03)
    assert book.naive(outcome=RATE, group="\"group\" = 'P2'") == pytest.approx(0, abs=0.3)
    assert book.planted["confounders"] == []
    other = Book(*generate_loan_book(LendingSpec(n_loans=8_000, marked_group="P4", markup_points=1.0)))
    assert other.within_cell(cell=GRADE_TERM, outcome=RATE, group="\"group\" = 'P4'") == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(("spec", "field"), [
    (lambda: InsuranceSpec(n_policies=0), "n_policies"),
    (lambda: InsuranceSpec(walking_pct=-1.5), "walking_pct"),
    (lambda: LendingSpec(marked_group="P9"), "marked_group"),
    (lambda: LendingSpec(n_loans=-3), "n_loans"),
])
def test_impossible_specs_are_refused(spec, field):
    with pytest.raises(ValueError, match=field):
        spec()


# --- files, determinism, the dispatcher ----------------------------------------------------------------

def file_bytes(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(("kind", "file_name"), [("insurance", "policies.parquet"), ("lending", "loans.parquet")])
def test_a_book_is_written_with_its_truth_and_the_same_seed_gives_the_same_bytes(tmp_path, kind, file_name):
    first = write_market(tmp_path / "a", kind=kind, seed=5, size=2_000)
    again = write_market(tmp_path / "b", kind=kind, seed=5, size=2_000)
    other = write_market(tmp_path / "c", kind=kind, seed=6, size=2_000)
    assert set(file_bytes(first)) == {"PLANTED.md", file_name, "planted.json"}
    assert file_bytes(first) == file_bytes(again)
    assert file_bytes(first)[file_name] != file_bytes(other)[file_name]
    planted = json.loads((first / "planted.json").read_text())
    assert (planted["kind"], planted["spec"]["seed"], planted["files"]) == (kind, 5, {"rows": file_name})
    assert planted["totals"]["customers"] == 2_000
    written = duckdb.read_parquet(str(first / file_name)).arrow().read_all()
    assert written.num_rows == planted["totals"]["rows"]
    text = (first / "PLANTED.md").read_text()
    assert "should be flagged" in text and "should not be flagged" in text and "null" in text


def test_write_market_writes_the_retail_demo_market_for_kind_retail(tmp_path):
    via_kind = write_market(tmp_path / "kind", kind="retail", seed=3, size=300)
    direct = write_sample_market(tmp_path / "direct", spec=MarketSpec(n_customers=300, seed=3))
    assert file_bytes(via_kind) == file_bytes(direct)
    assert SAMPLE_KINDS == ("retail", "insurance", "lending")
    with pytest.raises(ValueError, match="'casino' is not one of retail, insurance, lending"):
        write_market(tmp_path / "x", kind="casino")  # type: ignore[arg-type]
