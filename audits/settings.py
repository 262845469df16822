"""Every configuration key in one declarative table: name, type, default, allowed values and meaning.

The config model (audits/config.py), the on-demand flow's threshold form, the CLI's `--threshold`
option and docs/configuration.md all derive from `SETTINGS`; nothing else states a default or a
range. A value outside its allowed range is refused when the config is read, naming the key and
the range, so a setting can never quietly change what an audit concludes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any



@dataclass(frozen=True)
class Rule:
    """What values of a setting are allowed: a test, and the same in words ("between 0 and 1")."""

    test: Callable[[Any], bool]
    what: str

TYPES: tuple[str, ...] = ("str", "int", "float", "bool", "path", "list[str]", "list[float]", "list[list[str]]",
                          "table[str]", "table[list[float]]")


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its type, default, allowed values and meaning."""

    key: str
    type: str
    default: Any
    help: str
    rule: Rule | None = None
    required: bool = False
    choices: tuple[str, ...] = ()
    field: str = ""  # the config model's field; default: the key's last part, or `table_key` for a table's key

    @property
    def name(self) -> str:
        """The config model's field for this key."""
        if self.field:
            return self.field
        parts = self.key.split(".")
        return "_".join(parts[1:]) if len(parts) > 2 else parts[-1]

    def check(self, value: Any) -> str | None:
        """What an allowed value is, when `value` is not one; None when it is."""
        if self.choices and value not in self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.rule is None or value is None or self.rule.test(value):
            return None
        return self.rule.what

    @property
    def allowed(self) -> str:
        """The allowed values in words, for the docs (empty when any value of the type is allowed)."""
        if self.choices:
            return "one of " + ", ".join(f"`{c}`" for c in self.choices)
        return self.rule.what if self.rule is not None else ""


# --- rules -----------------------------------------------------------------------------------------

def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    """low <= value <= high (or strictly, at an open end)."""
    lo, hi = _number_text(low), _number_text(high)
    if low_open or high_open:
        what = (f"greater than {lo}" if low_open else f"at least {lo}") + " and " + \
            (f"less than {hi}" if high_open else f"at most {hi}")
    else:
        what = f"between {lo} and {hi}"
    return Rule(lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high), what)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _iso_date(value: str) -> bool:
    import datetime as dt

    try:
        return 1900 <= dt.date.fromisoformat(value).year <= 2100
    except ValueError:
        return False


def _time_zone(value: str) -> bool:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _encoding(value: str) -> bool:
    import codecs

    try:
        codecs.lookup(value)
    except LookupError:
        return False
    return True


def _ascending(values: list[float]) -> bool:
    return all(math.isfinite(v) for v in values) and sorted(set(values)) == list(values)


_CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
MEMORY_SIZE = Rule(lambda v: re.fullmatch(r"\s*(\d+(\.\d+)?\s*([KMGT]i?B|B)|\d{1,2}(\.\d+)?\s*%)\s*", v, re.I) is not None,
                   "a size such as '1.5GB' or '800MB', or a share of memory such as '60%'")
ISO_DATE = Rule(_iso_date, "a date written YYYY-MM-DD, between 1900 and 2100")
CRON = Rule(lambda v: len(v.split()) == 5 and all(re.fullmatch(_CRON_FIELD, f) for f in v.split()),
            "a cron expression of five fields, such as '0 2 * * *'")
TIME_ZONE = Rule(_time_zone, "a time zone name such as 'UTC' or 'Europe/London'")
CURRENCIES = Rule(lambda v: bool(v) and all(re.fullmatch(r"[A-Za-z]{3}", c) for c in v),
                  "a non-empty list of three-letter currency codes such as 'EUR'")
ASCENDING = Rule(_ascending, "finite numbers in ascending order, without repeats")
ASCENDING_POSITIVE = Rule(lambda v: _ascending(v) and all(x > 0 for x in v),
                          "positive numbers in ascending order, without repeats")
BANDS = Rule(lambda v: all(len(b) >= 2 and _ascending(b) for b in v.values()),
             "a table of column = [lower bounds], at least two finite bounds in ascending order each")
NON_EMPTY = Rule(bool, "a non-empty list")
DELIMITER = Rule(lambda v: len(v) == 1 and v not in "\r\n\"", "a single character such as ',' or ';'")
ENCODING = Rule(_encoding, "an encoding name such as 'utf-8' or 'latin-1'")


# --- the table -------------------------------------------------------------------------------------

_SOURCE: tuple[tuple[str, str, Any, str, dict[str, Any]], ...] = (
    ("name", "str", None, "Name of the source, used in batch records and messages.", {}),
    ("kind", "str", "parquet", "Where the rows come from.", {"choices": ("parquet", "csv", "postgres")}),
    ("path", "path", None, "parquet/csv: a file, a glob (`tx/*.parquet`) or a hive-partitioned folder.", {}),
    ("dsn", "str", None, "postgres: a libpq connection string; `env:VAR` reads it from environment variable VAR.", {}),
    ("table", "str", None, "postgres: the table to read (schema.table allowed).", {}),
    ("query", "str", None, "postgres: a SELECT to read instead of a table.", {}),
    ("columns", "table[str]", {}, "Canonical name (or a name the audit uses) = source column name; unmapped "
     "names are read as is. Canonical columns the source lacks take their documented meaning (no timestamp: "
     "one snapshot; no quantity: 1; no product: one; no customer id: each row its own customer; no line id: "
     "derived from the row's content); unit_price is required while it is audit.outcome.column.", {}),
    ("derive", "table[str]", {},
     "Derived columns: NAME = \"SQL expression over the source's columns\" (e.g. `transaction_id = \"IDpol || "
     "'-' || Year\"`), a canonical or attribute column typed and kept like a read one; one scalar expression "
     "each over the source's own columns, checked by DuckDB's parser: no subquery, table function, statement, "
     "other table, aggregate, window, or function of the session or clock (exit 2 naming the key). A row the "
     "expression fails on is quarantined.", {}),
    ("na_values", "list[str]", ["", "NA", "null"], "Text values read as missing in every text column of the source "
     "(compared after trimming, case-sensitive), also where a derived expression reads them.", {}),
    ("attributes", "list[str]", [], "Transaction-level attribute columns kept from this source; columns the audit "
     "section names and derived columns are kept without being listed.", {}),
    ("watermark", "str", "timestamp", "Incremental loads by `timestamp` or `transaction_id` (canonical column).",
     {"choices": ("timestamp", "transaction_id")}),
    ("currency", "str", None, "Currency of rows that have no currency column.", {}),
    ("delimiter", "str", ",", "csv: field delimiter.", {"rule": DELIMITER}),
    ("encoding", "str", "utf-8", "csv: file encoding.", {"rule": ENCODING}),
)
_CUSTOMER_ONLY_NOT = ("attributes", "watermark", "currency")


def _source_settings(prefix: str, rows: tuple[tuple[str, str, Any, str, dict[str, Any]], ...]) -> list[Setting]:
    return [Setting(f"{prefix}.{k}", t, d, h, required=(k == "name" and prefix == "sources[]"), **extra)
            for k, t, d, h, extra in rows]


SETTINGS: tuple[Setting, ...] = (
    Setting("warehouse.path", "path", "out/warehouse.duckdb", "The DuckDB warehouse file.", field="warehouse_path"),
    Setting("warehouse.memory_limit", "str", "1.5GB",
            "DuckDB memory limit; beyond it DuckDB spills to disk. The audit holds up to about 0.8 GB of "
            "arrays besides (10M lines), so 1.5GB keeps a run under 2.5 GB.", rule=MEMORY_SIZE),
    Setting("warehouse.threads", "int", 0,
            "DuckDB threads, and the audit's pass-2 walks and the night's windows run at once; 0 means one per core.", rule=between(0, 1024)),
    Setting("warehouse.lock_timeout_seconds", "float", 60.0,
            "How long a run waits for another run's writer lock before failing.", rule=between(0, 86_400)),
    Setting("output.dir", "path", "out/reports", "Where reports and findings.json are written (one folder per run).",
            field="output_dir"),
    Setting("output.max_breach_rows", "int", 50_000,
            "breaches.csv lists at most this many breaching lines per consistency rule, largest amount first.",
            rule=between(0, 10_000_000)),
    *_source_settings("sources[]", _SOURCE),
    Setting("sources[].lookback_hours", "float", 48.0,
            "postgres, timestamp watermark: also re-read rows this many hours before the stored watermark, "
            "so late and corrected rows are caught.", rule=between(0, 24 * 3660)),
    Setting("sources[].timestamp_format", "str", None,
            "Format of text timestamps (strptime, e.g. `%d/%m/%Y %H:%M`); default: ISO 8601. Not used for "
            "columns that are already typed timestamps (the ingest says so)."),
    *_source_settings("customers", tuple(
        ("columns", "table[str]", {}, "customer_id and customer_since = source column name; every other column "
         "is kept as a customer attribute.", {}) if row[0] == "columns" else row
        for row in _SOURCE if row[0] not in _CUSTOMER_ONLY_NOT)),
    Setting("audit.attributes", "list[str]", [], "Customer or transaction attribute columns audited for disparities."),
    Setting("audit.intersections", "list[list[str]]", [], "Combinations of attributes audited together."),
    Setting("audit.segment_by", "list[str]", [], "Columns whose every value also gets its own findings (e.g. category)."),
    Setting("audit.cell", "list[str]", ["product_id", "day"],
            "What makes two rows comparable (like for like): columns, or `day`, `week`, `month` (time grains of "
            "the timestamp). Rating factors for a policy book, grade and term for loans, room and night for "
            "bookings.", rule=NON_EMPTY),
    Setting("audit.controls", "list[str]", ["channel"],
            "Legitimate price factors compared within, besides the cell (e.g. channel, quantity_band)."),
    Setting("audit.reference", "table[str]", {},
            "Fixed reference group per attribute (`reference.gender = \"M\"`); default: all other customers. "
            "The group must exist in the audited data."),
    Setting("audit.checks", "list[str]", ["all"], "Checks to run (names from the catalogue) or `all`.",
            rule=NON_EMPTY),
    Setting("audit.window_days", "int", 30,
            "Rolling window of the nightly flow, in days (on-demand audits cover all data unless --from/--to).",
            rule=between(1, 3660)),
    Setting("audit.quantity_bands", "list[float]", [1, 2, 5, 10, 50],
            "Lower bounds of the quantity bands used by the `quantity_band` control.", rule=ASCENDING_POSITIVE),
    Setting("audit.bands", "table[list[float]]", {},
            "Numeric columns cut into ordered bands: COLUMN = [lower bounds] (e.g. `age = [18, 25, 35, 50, 65]` "
            "gives 18-24 ... 65+); the banded column is usable as attribute, control, cell or segment.",
            rule=BANDS),
    Setting("audit.tenure_days", "int", 365, "Customers with longer tenure count as existing in `loyalty_penalty`.",
            rule=between(1, 36_500)),
    Setting("audit.tenure.column", "str", None,
            "A numeric column holding each row's tenure (default: from customer_since, else the first purchase)."),
    Setting("audit.tenure.unit", "str", "days", "Unit of the tenure column.", choices=("days", "years")),
    Setting("audit.tenure.bands", "list[float]", [],
            "Lower bounds of tenure bands in the tenure unit (e.g. [0, 1, 3, 5]); each band above the first is "
            "compared with the first (new customers). Default: new and existing, split at tenure_days.",
            rule=ASCENDING),
    Setting("audit.renewal", "str", None,
            "A column marking renewals (true/1/yes/renewal) against new business: `loyalty_penalty` then "
            "compares renewal prices with the new-business price of the same cell (FCA PS21/5)."),
    Setting("audit.outcome.column", "str", "unit_price", "What is compared: the price paid by default, or any "
            "numeric column (a premium, an interest rate)."),
    Setting("audit.outcome.per", "str", None,
            "A benchmark column: the outcome becomes column / per (e.g. premium over pure premium)."),
    Setting("audit.outcome.scale", "str", "ratio",
            "ratio: gaps in % of the reference (log scale); points: absolute differences (e.g. rate points).",
            choices=("ratio", "points")),
    Setting("audit.outcome.noun", "str", "price", "What the outcome is called in every sentence (price, premium, "
            "interest rate, room rate)."),
    Setting("audit.exclude_products", "list[str]", [],
            "Product ids left out of every check (e.g. postage or fee lines that are not goods)."),
    Setting("audit.price_tolerance", "float", 0.005,
            "Two prices of the same cell closer than this (in the currency) are the same price: rounding.",
            rule=between(0, 1_000)),
    Setting("audit.max_groups", "int", 100,
            "An attribute or segment with more distinct values than this is refused (a likely identifier).",
            rule=between(2, 10_000)),
    Setting("thresholds.min_price_gap", "float", 0.01,
            "Practical significance for price ratios (0.01 = 1%); with outcome.scale = points, in points.",
            rule=between(0, 1)),
    Setting("thresholds.adverse_impact_ratio", "float", 0.8, "Four-fifths rule: discount-rate ratios below this flag.",
            rule=between(0, 1, low_open=True)),
    Setting("thresholds.max_dearer_ratio", "float", 1.25,
            "dearer_price: a group paying the dearer price of its cells this many times as often as the reference "
            "flags (1.25 mirrors the four-fifths rule).", rule=between(1, 100, low_open=True)),
    Setting("thresholds.consistency_high_share", "float", 0.001,
            "A consistency rule breached on at least this share of the lines it checks is high severity, else "
            "medium.", rule=between(0, 1, low_open=True)),
    Setting("thresholds.min_discount_depth", "float", 0.02,
            "Practical significance for differences in discount depth (percentage points as a fraction).",
            rule=between(0, 1)),
    Setting("thresholds.fdr", "float", 0.05, "Benjamini-Hochberg false discovery rate across all tests of a run.",
            rule=between(0, 0.5, low_open=True)),
    Setting("thresholds.confidence", "float", 0.95, "Confidence level of every interval.",
            rule=between(0.5, 1, high_open=True)),
    Setting("thresholds.min_group_customers", "int", 11, "Groups with fewer customers are suppressed, never shown.",
            rule=between(1, 1_000_000)),
    Setting("thresholds.count_rounding", "int", 10,
            "Every customer count the run publishes is rounded to a multiple of this, so that subtracting linked "
            "counts (an attribute and its intersections) cannot give a suppressed group's size away; 1 publishes "
            "exact counts.", rule=between(1, 1_000)),
    Setting("thresholds.min_customers_to_judge", "int", 30,
            "Groups with fewer customers on either side are shown but never flagged: their clustered error is "
            "unreliable.", rule=between(2, 1_000_000)),
    Setting("policy.max_discount_pct", "float", 0.40, "Deepest discount the pricing policy allows (0.40 = 40%).",
            rule=between(0, 1, low_open=True)),
    Setting("policy.allow_above_list", "bool", False, "Whether a unit price above the list price is acceptable."),
    Setting("validation.max_bad_share", "float", 0.05,
            "A batch whose quarantined share exceeds this stops the run (exit code 3).", rule=between(0, 1)),
    Setting("validation.currencies", "list[str]", ["EUR", "GBP", "USD", "CHF", "SEK", "DKK", "NOK", "PLN"],
            "Known currency codes; others are quarantined.", rule=CURRENCIES),
    Setting("validation.max_future_days", "int", 1, "Timestamps further in the future than this are quarantined.",
            rule=between(0, 3660)),
    Setting("validation.earliest", "str", "2000-01-01", "Timestamps before this date are quarantined.",
            rule=ISO_DATE),
    Setting("validation.chunk_rows", "int", 1_000_000, "Rows per Great Expectations validation chunk.",
            rule=between(1, 100_000_000)),
    Setting("schedule.nightly_cron", "str", "0 2 * * *", "Cron schedule of the nightly deployment.", rule=CRON),
    Setting("schedule.timezone", "str", "UTC", "Time zone of the nightly schedule.", rule=TIME_ZONE),
)
SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
# Keys that name a table of keys (`[audit.outcome]`), so a config may write them as TOML tables.
TABLES: frozenset[str] = frozenset(
    s.key.rsplit(".", 1)[0] for s in SETTINGS if s.key.count(".") > 1 and not s.key.startswith(("sources", "customers")))
# The thresholds a run may override (the on-demand form, `--threshold`): every key of these sections.
THRESHOLD_SECTIONS: tuple[str, ...] = ("thresholds", "policy")


def threshold_settings() -> list[Setting]:
    """The settings an on-demand run may override, by their short name."""
    return [s for s in SETTINGS if s.key.split(".")[0] in THRESHOLD_SECTIONS and s.type in ("int", "float")]


def settings_markdown() -> str:
    """The reference table of every setting, for docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `audits/settings.py` (`SETTINGS`); `make docs` rewrites it and a test fails when it drifts.",
        "Paths are relative to the config file. `sources[]` is an array of tables (`[[sources]]`); a key with",
        "three parts, such as `audit.outcome.column`, may be written in a table (`[audit.outcome]`, `column = ...`).",
        "Every value is checked when the config is read: a value outside its allowed range stops the run with",
        "exit code 2, naming the key.",
        "",
        "| key | type | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "(required)" if s.required else f"`{s.default!r}`" if s.default is not None else "(none)"
        cells = (f"`{s.key}`", s.type, default, s.allowed, s.help)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
