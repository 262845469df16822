"""Sample markets with known truth: the demo data and the auditor's test bench.

Three kinds, each written with planted.json (the truth, machine-readable) and PLANTED.md (the same
in words):
- `retail` (`audits.sample.retail`): baskets of a shop with customers, products, promotions and
  coupons; several unfair treatments planted, the demo market.
- `insurance` (`audits.sample.insurance`): a motor renewal book, one row per policy-year; price
  walking planted for renewals of three years or more.
- `lending` (`audits.sample.lending`): a loan book, one row per loan; a rate markup in points planted
  for one group within grade x term.

Callers import from here: `from audits.sample import MarketSpec, write_sample_market, write_market`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from audits.sample.insurance import InsuranceSpec, generate_insurance_book, write_insurance_book
from audits.sample.lending import LendingSpec, generate_loan_book, write_loan_book
from audits.sample.retail import Market, generate_market, iter_transaction_chunks, write_sample_market
from audits.sample.retail_spec import (
    AGE_BANDS,
    BLOCK_CUSTOMERS,
    CATEGORIES,
    CHANNELS,
    CUSTOMER_COLUMN_MAP,
    CUSTOMERS_SCHEMA,
    DEFAULT_EFFECTS,
    EFFECT_CHECKS,
    GENDERS,
    MONEY,
    NO_EFFECTS,
    REGIONS,
    TRANSACTION_COLUMN_MAP,
    TRANSACTIONS_SCHEMA,
    MarketSpec,
    PlantedEffect,
)

SampleKind = Literal["retail", "insurance", "lending"]
SAMPLE_KINDS: tuple[str, ...] = ("retail", "insurance", "lending")
DEFAULT_SEED = 7
UNKNOWN_KIND = "sample: kind {kind!r} is not one of " + ", ".join(SAMPLE_KINDS)


def write_market(out_dir: Path, *, kind: SampleKind = "retail", seed: int = DEFAULT_SEED,
                 size: int | None = None) -> Path:
    """Write a sample market of `kind` with its planted.json and PLANTED.md into `out_dir`; return it.

    `size` is the number of customers (retail), policies (insurance) or loans (lending); None keeps
    the kind's default. Every other choice is the kind's spec default (`MarketSpec`, `InsuranceSpec`,
    `LendingSpec`); call the kind's writer with a spec for more control.
    """
    sized = {} if size is None else {"retail": {"n_customers": size}, "insurance": {"n_policies": size},
                                     "lending": {"n_loans": size}}.get(kind, {})
    if kind == "retail":
        return write_sample_market(out_dir, spec=MarketSpec(seed=seed, **sized))
    if kind == "insurance":
        return write_insurance_book(out_dir, spec=InsuranceSpec(seed=seed, **sized))
    if kind == "lending":
        return write_loan_book(out_dir, spec=LendingSpec(seed=seed, **sized))
    raise ValueError(UNKNOWN_KIND.format(kind=kind))
