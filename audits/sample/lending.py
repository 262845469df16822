"""Sample loan book with a discretionary rate markup planted: one row per loan.

A consumer-loan book as a lender's export (`loans.parquet`: `loan_id`, `grade`, `term_months`,
`amount`, `rate_pct`, `borrower_age`, `gender`, `region`, `group`). There is no timestamp (one
snapshot of the book), no quantity, no product and no customer id: each loan is its own borrower.
`group` is an ethnicity proxy (P1-P4, as a BISG-style estimate would give), the attribute the lender
must not price on.

Book mechanics
--------------
- Grade A-G from a latent credit score (a standard normal, cut so that without the confounders grades
  fall 18/26/24/16/9/5/2%);
  riskier grades take 60-month terms more often (15% in A to 45% in G, else 36 months).
- The rate card: the grade's rate (6.5% for A to 27% for G) plus 1.6 points for 60 months, plus noise
  (0.30 points, normal) for everything the card does not see; rounded to two decimals. So within a cell
  of grade x term the rate is the same for everyone up to noise, except where the planted effect says
  otherwise.

Planted (should be flagged): a discretionary markup of `markup_points` (0.35) percentage points on the
rate of every loan to group `marked_group` (P2), within any grade and term.

Confounders (should not be flagged beyond the markup): group P2's credit scores sit 0.6 standard
deviations lower, so it is more often in the riskier grades, which legitimately cost more: a naive
comparison of rates says P2 pays several points more, not 0.35. Borrowers aged 18-24 sit 0.5 lower
too: a naive comparison says they pay more; within grade and term they pay what everyone pays.

Messiness the config must cope with: `gender` is the text "null" for about 2% of loans, `rate_pct` is
a number stored as text, `borrower_age` is a number of years to be banded, and `group` is an SQL
keyword as a column name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pyarrow as pa

from audits.sample.book import (AGE_BANDS, NULL_GENDER_PCT, messy_column_notes, naive_gap, numbers_as_text,
                                planted_record, refuse_bad_fields, text_with_nulls, write_book)
from audits.sample.draws import cdf_rows, draw, random_stream

GRADES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G")
GRADE_SHARE = (0.18, 0.26, 0.24, 0.16, 0.09, 0.05, 0.02)
GRADE_RATE_PCT = np.array([6.5, 9.0, 12.0, 15.5, 19.0, 23.0, 27.0])
# the latent score's cut points, so that grades fall in GRADE_SHARE (riskier = higher score)
GRADE_CUTS = np.array([NormalDist().inv_cdf(p) for p in np.cumsum(GRADE_SHARE)[:-1]])
TERMS_MONTHS: tuple[int, ...] = (36, 60)
TERM_RATE_PCT = np.array([0.0, 1.6])
LONG_TERM_PCT_BY_GRADE = np.array([0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45])
RATE_NOISE_POINTS = 0.30
PROXY_GROUPS: tuple[str, ...] = ("P1", "P2", "P3", "P4")
PROXY_GROUP_SHARE = (0.60, 0.20, 0.12, 0.08)
GROUP_RISK_SHIFT = 0.6  # confounder: the marked group's score sits this many standard deviations riskier
YOUNG_RISK_SHIFT, YOUNG_BELOW_AGE = 0.5, 25  # confounder: borrowers under 25 likewise
GENDERS: tuple[str, ...] = ("F", "M")
GENDER_SHARE = (0.48, 0.52)
REGIONS: tuple[str, ...] = ("London", "South East", "North West", "Midlands", "Scotland", "Wales")
REGION_SHARE = (0.18, 0.20, 0.18, 0.20, 0.14, 0.10)
AMOUNT_MEDIAN, AMOUNT_SIGMA, AMOUNT_STEP, AMOUNT_RANGE = 9_000.0, 0.6, 50, (1_000, 50_000)


LOANS_FILE = "loans.parquet"
LOANS_SCHEMA = pa.schema([
    ("loan_id", pa.string()), ("grade", pa.string()), ("term_months", pa.int32()), ("amount", pa.float64()),
    ("rate_pct", pa.string()), ("borrower_age", pa.int32()), ("gender", pa.string()), ("region", pa.string()),
    ("group", pa.string()),
])
# the example config's name for each column -> the export's column (derived ones are in LENDING_DERIVE)
LENDING_COLUMN_MAP: dict[str, str] = {
    "transaction_id": "loan_id", "grade": "grade", "term_months": "term_months", "age": "borrower_age",
    "gender": "gender", "region": "region", "group": "group",
}
LENDING_DERIVE: dict[str, str] = {"rate": "CAST(rate_pct AS DOUBLE)"}
CELL_COLUMNS: tuple[str, ...] = ("grade", "term_months")

_STREAM_LENDING = 11  # spawn key of this kind's random stream (retail uses 0-3, insurance 10)


@dataclass(frozen=True)
class LendingSpec:
    """Everything that determines a generated loan book; the same spec always gives the same rows."""

    n_loans: int = 30_000
    seed: int = 7
    markup_points: float = 0.35
    marked_group: str = "P2"
    confounders: bool = True

    def __post_init__(self) -> None:
        refuse_bad_fields(self, (
            ("n_loans", self.n_loans >= 1, "at least 1"),
            ("markup_points", -5 <= self.markup_points <= 5, "between -5 and 5"),
            ("marked_group", self.marked_group in PROXY_GROUPS, "one of " + ", ".join(PROXY_GROUPS)),
        ))


def generate_loan_book(spec: LendingSpec = LendingSpec()) -> tuple[pa.Table, dict[str, Any]]:
    """The book's rows (in loan_id order) and its planted record (the content of planted.json)."""
    rng = random_stream(spec.seed, _STREAM_LENDING)
    n = spec.n_loans
    group = draw(cdf_rows(PROXY_GROUP_SHARE), 0, rng.random(n))
    age = np.clip(np.rint(rng.normal(41.0, 13.0, n)), 18, 80).astype(np.int64)
    is_marked = group == PROXY_GROUPS.index(spec.marked_group)
    shift = (GROUP_RISK_SHIFT * is_marked + YOUNG_RISK_SHIFT * (age < YOUNG_BELOW_AGE)) if spec.confounders else 0.0
    grade = np.searchsorted(GRADE_CUTS, rng.normal(0.0, 1.0, n) + shift)
    term = (rng.random(n) < LONG_TERM_PCT_BY_GRADE[grade]).astype(np.int64)
    gender = draw(cdf_rows(GENDER_SHARE), 0, rng.random(n))
    gender_missing = rng.random(n) < NULL_GENDER_PCT
    region = draw(cdf_rows(REGION_SHARE), 0, rng.random(n))
    amount = np.clip(np.rint(AMOUNT_MEDIAN * np.exp(rng.normal(0.0, AMOUNT_SIGMA, n)) / AMOUNT_STEP) * AMOUNT_STEP,
                     *AMOUNT_RANGE)
    rate = np.round(GRADE_RATE_PCT[grade] + TERM_RATE_PCT[term] + rng.normal(0.0, RATE_NOISE_POINTS, n)
                    + spec.markup_points * is_marked, 2)

    table = pa.table({
        "loan_id": pa.array(np.char.mod("LN%07d", np.arange(1, n + 1)), pa.string()),
        "grade": pa.array(GRADES).take(pa.array(grade)),
        "term_months": pa.array(np.asarray(TERMS_MONTHS, dtype=np.int32)[term]),
        "amount": pa.array(amount),
        "rate_pct": numbers_as_text(rate, decimals=2),
        "borrower_age": pa.array(age.astype(np.int32)),
        "gender": text_with_nulls(GENDERS, gender, gender_missing),
        "region": pa.array(REGIONS).take(pa.array(region)),
        "group": pa.array(PROXY_GROUPS).take(pa.array(group)),
    }, schema=LOANS_SCHEMA)
    naive = {"group": naive_gap(rate, is_marked, scale="points"),
             "age": naive_gap(rate, age < YOUNG_BELOW_AGE, scale="points")}
    return table, _planted_record(spec, table, naive=naive)


def write_loan_book(out_dir: Path, *, spec: LendingSpec = LendingSpec()) -> Path:
    """Write `loans.parquet`, planted.json and PLANTED.md into `out_dir`; return it."""
    table, planted = generate_loan_book(spec)
    return write_book(out_dir, table, planted, file_name=LOANS_FILE)


def _planted_record(spec: LendingSpec, table: pa.Table, *, naive: dict[str, float]) -> dict[str, Any]:
    marked, young = spec.marked_group, f"{AGE_BANDS[0]}-{YOUNG_BELOW_AGE - 1}"
    confounders = [] if not spec.confounders else [
        {"name": "grade_mix", "attribute": "group", "column": "group", "groups": [marked], "should_flag": False,
         "naive_gap": round(naive["group"], 4), "planted_gap": spec.markup_points, "unit": "points",
         "description": f"Group {marked}'s credit scores sit {GROUP_RISK_SHIFT} standard deviations lower, so its "
                        "loans are more often in the riskier grades, which cost more for everyone.",
         "naive_misreading": f"Comparing rates with no cell says {marked} pays {naive['group']:+.2f} points; within "
                             f"the same grade and term the gap is the planted {spec.markup_points:+.2f}, and only "
                             "that should be flagged."},
        {"name": "young_grade_mix", "attribute": "age", "column": "borrower_age", "groups": [young],
         "should_flag": False, "naive_gap": round(naive["age"], 4), "planted_gap": 0.0, "unit": "points",
         "description": f"Borrowers aged {young} have scores {YOUNG_RISK_SHIFT} standard deviations lower: "
                        "riskier grades.",
         "naive_misreading": f"Comparing rates with no cell says they pay {naive['age']:+.2f} points; within the "
                             "same grade and term they pay what everyone pays."},
    ]
    return planted_record(
        "lending",
        spec={"n_loans": spec.n_loans, "seed": spec.seed, "markup_points": spec.markup_points,
              "marked_group": marked, "confounders": spec.confounders},
        rows=table.num_rows, customers=spec.n_loans,
        summary=f"A consumer-loan book: {table.num_rows:,} loans, one borrower each.",
        outcome={"column": "rate_pct", "per": None, "scale": "points", "noun": "interest rate"},
        cell_columns=CELL_COLUMNS,
        cell_description="The rate card prices grade and term only; nothing else legitimately moves the rate.",
        effects=[{
            "check": "price_gap", "attribute": "group", "column": "group", "group": marked,
            "reference": "every other group (the example config's reference P1 among them) in the same grade and "
                         "term",
            "where": f"\"group\" = '{marked}'", "size": spec.markup_points, "unit": "points", "should_flag": True,
            "description": f"A discretionary markup: loans to group {marked} carry {spec.markup_points:.2f} "
                           "percentage points more interest than the rate card's rate for their grade and term.",
        }],
        confounders=confounders,
        messiness=messy_column_notes(rows="loans", gender="gender", age="borrower_age", purpose="to compare it",
                                     number_as_text=("rate_pct", "rate", LENDING_DERIVE["rate"]),
                                     group="an SQL keyword as a column name: every query must quote it"),
    )
