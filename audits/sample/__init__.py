"""Sample markets with known truth: the demo data and the auditor's test bench.

`audits.sample.retail` is a retail market of baskets (the demo). Callers import from here:
`from audits.sample import MarketSpec, write_sample_market, TRANSACTION_COLUMN_MAP`.
"""

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
