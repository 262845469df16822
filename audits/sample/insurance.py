"""Sample insurance renewal book with price walking planted: one row per policy-year.

A motor book in the shape of a pricing team's export (`policies.parquet`, columns named as in
freMTPL-style data: `IDpol`, `Year`, `Premium`, `PurePremium`, `Cover`, `VehClass`, `Region`,
`BonusMalus`, `DrivAge`, `Gender`, `TenureYears`, `Renewal`). The attributes are on the row; there is
no timestamp (the policy year stands in), no quantity and no product.

Book mechanics
--------------
- Policies: `n_policies`, each on the book for consecutive years of `first_year` .. `first_year +
  years - 1` until it lapses (15% a year). Policies on the book in the first year have been with the
  insurer 1-12 years already (a fifth are new that year); policies first seen later are new business.
  `TenureYears` is 0 in a policy's first year with the insurer; `Renewal` is "new" then, else "renewal".
- Rating factors per policy: `Cover` (TPO third party only, TPFT third party fire and theft, COMP
  comprehensive), `VehClass` A-D, `Region` (five region codes), `BonusMalus` 50-180 (half at the 50
  floor). `DrivAge` is the driver's age that year (18-88 at inception, ageing with the policy).
- Pure premium (the expected claims cost) = cover base x vehicle, region and age risk x BonusMalus/100 x
  an individual risk factor x 5% claims inflation a year.
- Premium = pure premium x the cell's loading x noise (3%, lognormal), where the loading depends on
  Cover, VehClass, Region and Year only. So within a cell of those four, premium over pure premium is
  the same for everyone up to noise, except where the planted effect says otherwise.

Planted (should be flagged): price walking. Renewals of a policy with `walking_from_years` (3) or more
years of tenure pay `walking_pct` (8%) more premium over pure premium than new business in the same
cell; renewals of 1-2 years pay the new-business price.

Confounder (should not be flagged): older drivers buy comprehensive cover more often (70% of drivers
aged 65+ at inception, 48% at 50-64, 35% under 50), and comprehensive carries a larger loading. A
naive comparison of premium over pure premium says drivers aged 65+ pay about 5% more; within the
same cover (and the other rating factors) they pay what everyone pays. Tenure is drawn independently
of gender and of the driver's age at inception; as a policy stays, its driver ages with its tenure, so
the walking reaches older rows a little more often: within-cell age gaps of up to about 0.5% (none
without walking), well below a 1% threshold.

Messiness the config must cope with: `Gender` is the text "null" for about 2% of policies,
`BonusMalus` is a number stored as text, `DrivAge` is a number of years to be banded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from audits.sample.book import (AGE_BANDS, NULL_GENDER_PCT, messy_column_notes, naive_gap, numbers_as_text,
                                planted_record, refuse_bad_fields, text_with_nulls, write_book)
from audits.sample.draws import cdf_rows, draw, random_stream

COVERS: tuple[str, ...] = ("TPO", "TPFT", "COMP")
COVER_PURE_PREMIUM_EUR = np.array([180.0, 300.0, 520.0])
COVER_LOADING = np.array([1.12, 1.20, 1.32])
COVER_MIX = (0.35, 0.30, 0.35)
# confounder: cover mix by age at inception (under 50, 50-64, 65+)
COVER_MIX_BY_AGE = ((0.35, 0.30, 0.35), (0.22, 0.30, 0.48), (0.10, 0.20, 0.70))
AGE_MIX_EDGES = (50, 65)

VEHICLE_CLASSES: tuple[str, ...] = ("A", "B", "C", "D")
VEHICLE_SHARE, VEHICLE_RISK = (0.30, 0.35, 0.25, 0.10), np.array([0.85, 1.00, 1.20, 1.60])
VEHICLE_LOADING = np.array([1.00, 1.02, 1.03, 1.08])
REGIONS: tuple[str, ...] = ("R11", "R24", "R52", "R82", "R93")
REGION_SHARE, REGION_RISK = (0.25, 0.20, 0.15, 0.20, 0.20), np.array([1.25, 0.90, 0.95, 1.05, 1.15])
REGION_LOADING = np.array([1.00, 0.98, 1.01, 1.03, 0.99])
YEAR_LOADING_STEP = 0.015  # the margin creeps up by 1.5 points a year
CLAIMS_INFLATION = 1.05
# age risk by the driver's age that year: lower bounds and factors
AGE_RISK_EDGES, AGE_RISK = (25, 30, 65, 75), np.array([1.90, 1.30, 1.00, 1.10, 1.35])
GENDERS: tuple[str, ...] = ("F", "M")
GENDER_SHARE = (0.45, 0.55)

LAPSE_PCT = 0.15
FIRST_YEAR_POLICY_PCT = 0.55  # of policies are on the book in the first year; the rest join later
NEW_IN_FIRST_YEAR_PCT = 0.20
MAX_PRIOR_TENURE_YEARS = 12
BONUS_MALUS_FLOOR, BONUS_MALUS_MAX, BONUS_MALUS_FLOOR_PCT = 50, 180, 0.45
RISK_SIGMA, NOISE_SIGMA = 0.30, 0.03

# The bands the example config (examples/insurance.toml) uses; the truth by band is stated for them.
TENURE_BANDS: tuple[int, ...] = (0, 1, 3, 5)
BONUS_MALUS_BANDS: tuple[int, ...] = (50, 60, 80, 100)

POLICIES_FILE = "policies.parquet"
POLICIES_SCHEMA = pa.schema([
    ("IDpol", pa.int64()), ("Year", pa.int32()), ("Premium", pa.float64()), ("PurePremium", pa.float64()),
    ("Cover", pa.string()), ("VehClass", pa.string()), ("Region", pa.string()), ("BonusMalus", pa.string()),
    ("DrivAge", pa.int32()), ("Gender", pa.string()), ("TenureYears", pa.int32()), ("Renewal", pa.string()),
])
# the example config's name for each column -> the export's column (derived ones are in INSURANCE_DERIVE)
INSURANCE_COLUMN_MAP: dict[str, str] = {
    "customer_id": "IDpol", "year": "Year", "premium": "Premium", "pure_premium": "PurePremium",
    "cover": "Cover", "vehicle_class": "VehClass", "region": "Region", "age": "DrivAge", "gender": "Gender",
    "tenure_years": "TenureYears", "renewal": "Renewal",
}
INSURANCE_DERIVE: dict[str, str] = {
    "transaction_id": "IDpol || '-' || Year",
    "bonus_malus": "CAST(BonusMalus AS INTEGER)",
}
CELL_COLUMNS: tuple[str, ...] = ("Cover", "VehClass", "Region", "Year")

_STREAM_INSURANCE = 10  # spawn key of this kind's random stream (retail uses 0-3)


@dataclass(frozen=True)
class InsuranceSpec:
    """Everything that determines a generated renewal book; the same spec always gives the same rows."""

    n_policies: int = 12_000
    first_year: int = 2022
    years: int = 4
    seed: int = 7
    walking_pct: float = 0.08
    walking_from_years: int = 3
    confounders: bool = True

    def __post_init__(self) -> None:
        refuse_bad_fields(self, (
            ("n_policies", self.n_policies >= 1, "at least 1"),
            ("first_year", 1900 <= self.first_year <= 2100, "between 1900 and 2100"),
            ("years", 1 <= self.years <= 50, "between 1 and 50"),
            ("walking_pct", self.walking_pct > -1, "above -1"),
            ("walking_from_years", self.walking_from_years >= 1, "at least 1"),
        ))


def generate_insurance_book(spec: InsuranceSpec = InsuranceSpec()) -> tuple[pa.Table, dict[str, Any]]:
    """The book's rows (sorted by Year, IDpol) and its planted record (the content of planted.json)."""
    rng = random_stream(spec.seed, _STREAM_INSURANCE)
    n = spec.n_policies
    # --- policies
    year_share = [FIRST_YEAR_POLICY_PCT] + [(1 - FIRST_YEAR_POLICY_PCT) / max(1, spec.years - 1)] * (spec.years - 1)
    first = draw(cdf_rows(year_share), 0, rng.random(n))
    prior = np.where((first == 0) & (rng.random(n) >= NEW_IN_FIRST_YEAR_PCT),
                     rng.integers(1, MAX_PRIOR_TENURE_YEARS + 1, n), 0)
    n_years = np.minimum(rng.geometric(LAPSE_PCT, n), spec.years - first)
    start_age = np.clip(np.rint(rng.normal(46.0, 15.0, n)), 18, 88).astype(np.int64)
    mix = COVER_MIX_BY_AGE if spec.confounders else (COVER_MIX,) * len(COVER_MIX_BY_AGE)
    cover = draw(cdf_rows(mix), np.searchsorted(AGE_MIX_EDGES, start_age, side="right"), rng.random(n))
    vehicle = draw(cdf_rows(VEHICLE_SHARE), 0, rng.random(n))
    region = draw(cdf_rows(REGION_SHARE), 0, rng.random(n))
    gender = draw(cdf_rows(GENDER_SHARE), 0, rng.random(n))
    gender_missing = rng.random(n) < NULL_GENDER_PCT
    bonus_malus = np.where(rng.random(n) < BONUS_MALUS_FLOOR_PCT, BONUS_MALUS_FLOOR,
                           rng.integers(BONUS_MALUS_FLOOR + 1, BONUS_MALUS_MAX + 1, n))
    risk = np.exp(rng.normal(0.0, RISK_SIGMA, n))
    # policy numbers rise with the year a policy was first seen, with gaps
    id_order = np.lexsort((rng.random(n), first))
    id_pol = np.empty(n, dtype=np.int64)
    id_pol[id_order] = 1_000_000 + np.cumsum(rng.integers(1, 4, n))

    # --- policy-years
    policy = np.repeat(np.arange(n), n_years)
    k = np.arange(policy.size) - np.repeat(np.cumsum(n_years) - n_years, n_years)  # years since first seen
    year_index = first[policy] + k
    tenure = prior[policy] + k
    age = start_age[policy] + k
    c, v, r = cover[policy], vehicle[policy], region[policy]
    pure = (COVER_PURE_PREMIUM_EUR[c] * VEHICLE_RISK[v] * REGION_RISK[r] * bonus_malus[policy] / 100
            * AGE_RISK[np.searchsorted(AGE_RISK_EDGES, age, side="right")] * risk[policy]
            * CLAIMS_INFLATION ** year_index)
    loading = COVER_LOADING[c] * VEHICLE_LOADING[v] * REGION_LOADING[r] * (1 + YEAR_LOADING_STEP * year_index)
    walked = tenure >= spec.walking_from_years  # tenure above 0 is a renewal
    premium = pure * loading * np.exp(rng.normal(0.0, NOISE_SIGMA, policy.size)) * np.where(
        walked, 1 + spec.walking_pct, 1.0)
    pure, premium = np.round(pure, 2), np.round(premium, 2)

    order = np.lexsort((id_pol[policy], year_index))
    policy, year_index, tenure, age = policy[order], year_index[order], tenure[order], age[order]
    table = pa.table({
        "IDpol": pa.array(id_pol[policy]),
        "Year": pa.array((spec.first_year + year_index).astype(np.int32)),
        "Premium": pa.array(premium[order]),
        "PurePremium": pa.array(pure[order]),
        "Cover": _text(COVERS, cover[policy]),
        "VehClass": _text(VEHICLE_CLASSES, vehicle[policy]),
        "Region": _text(REGIONS, region[policy]),
        "BonusMalus": numbers_as_text(bonus_malus[policy], decimals=0),
        "DrivAge": pa.array(age.astype(np.int32)),
        "Gender": text_with_nulls(GENDERS, gender[policy], gender_missing[policy]),
        "TenureYears": pa.array(tenure.astype(np.int32)),
        "Renewal": _text(("new", "renewal"), (tenure > 0).astype(np.int64)),
    }, schema=POLICIES_SCHEMA)
    per = premium[order] / pure[order]
    return table, _planted_record(spec, table, naive_age_gap=naive_gap(per, age >= 65, scale="ratio"))


def write_insurance_book(out_dir: Path, *, spec: InsuranceSpec = InsuranceSpec()) -> Path:
    """Write `policies.parquet`, planted.json and PLANTED.md into `out_dir`; return it."""
    table, planted = generate_insurance_book(spec)
    return write_book(out_dir, table, planted, file_name=POLICIES_FILE)


def _text(levels: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.array(levels).take(pa.array(codes))


def _band_labels(bounds: tuple[int, ...]) -> list[tuple[str, int, int | None]]:
    """(label, lower, upper or None) of integer bands with these lower bounds: "1-2", ..., "5+"."""
    uppers = [*bounds[1:], None]
    return [(f"{lo}+" if hi is None else f"{lo}-{hi - 1}", lo, hi) for lo, hi in zip(bounds, uppers, strict=True)]


def walking_by_tenure_band(spec: InsuranceSpec) -> dict[str, float | None]:
    """The planted renewal excess in each tenure band above the first (None: the band straddles the rule)."""
    out: dict[str, float | None] = {}
    for label, lo, hi in _band_labels(TENURE_BANDS)[1:]:
        if lo >= spec.walking_from_years:
            out[label] = spec.walking_pct
        else:
            out[label] = 0.0 if hi is not None and hi <= spec.walking_from_years else None
    return out


def _planted_record(spec: InsuranceSpec, table: pa.Table, *, naive_age_gap: float) -> dict[str, Any]:
    n_rows = table.num_rows
    old = _band_labels(AGE_BANDS)[-1][0]
    confounders = [] if not spec.confounders else [{
        "name": "cover_mix", "attribute": "age", "column": "DrivAge", "groups": [old], "should_flag": False,
        "naive_gap": round(naive_age_gap, 4), "planted_gap": 0.0, "unit": "ratio",
        "description": "Drivers aged 50 and over buy comprehensive cover more often (65+: "
                       f"{COVER_MIX_BY_AGE[2][2]:.0%}, under 50: {COVER_MIX_BY_AGE[0][2]:.0%}), whose loading "
                       f"is {COVER_LOADING[2]:.2f} against {COVER_LOADING[0]:.2f} for third party only.",
        "naive_misreading": f"Comparing premium over pure premium with no cell says drivers aged {old} pay "
                            f"{naive_age_gap:+.1%}; within the same cover, vehicle class, region and year they pay "
                            "what everyone pays, up to the walking, which reaches long-standing (older) policies "
                            "a little more often (under 0.5%).",
    }]
    return planted_record(
        "insurance",
        spec={"n_policies": spec.n_policies, "first_year": spec.first_year, "years": spec.years, "seed": spec.seed,
              "walking_pct": spec.walking_pct, "walking_from_years": spec.walking_from_years,
              "confounders": spec.confounders},
        rows=n_rows, customers=spec.n_policies,
        summary=f"A motor renewal book: {n_rows:,} policy-years of {spec.n_policies:,} policies, "
                f"{spec.first_year} to {spec.first_year + spec.years - 1}.",
        outcome={"column": "Premium", "per": "PurePremium", "scale": "ratio", "noun": "premium"},
        cell_columns=CELL_COLUMNS,
        cell_description="The loading (premium over pure premium) is set per cell; a finer cell (e.g. with a "
                         "BonusMalus band) holds the same truth. Pure premium differs by the driver's risk, so "
                         "premium alone is not comparable within a cell: compare it per pure premium.",
        effects=[{
            "check": "loyalty_penalty", "attribute": "tenure", "column": "TenureYears",
            "group": f"renewals of {spec.walking_from_years}+ years",
            "reference": "new business (Renewal = 'new') in the same cell",
            "where": f"Renewal = 'renewal' and TenureYears >= {spec.walking_from_years}",
            "size": spec.walking_pct, "unit": "ratio", "should_flag": True,
            "tenure_bands": list(TENURE_BANDS), "by_tenure_band": walking_by_tenure_band(spec),
            "description": f"Price walking: renewing customers of {spec.walking_from_years} years or more pay "
                           f"{spec.walking_pct:.0%} more premium over pure premium than a new customer with the "
                           "same cover, vehicle class, region and year; shorter renewals pay the new-business price.",
        }],
        confounders=confounders,
        messiness=messy_column_notes(
            rows="policies", gender="Gender", age="DrivAge", purpose="to band it",
            number_as_text=("BonusMalus", "bonus_malus", INSURANCE_DERIVE["bonus_malus"]),
            IDpol=f"one policy over several years: the customer; a row's id is `{INSURANCE_DERIVE['transaction_id']}`"),
    )
