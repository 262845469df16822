"""Configuration: one declarative table of settings from which the model, validation and docs derive.

Every key a user can write is a row of `SETTINGS` (name, default, help). `load_config` rejects any
key not in the table (with a did-you-mean), checks types, fills defaults and resolves paths relative
to the config file. `docs/configuration.md` is generated from the same table (`settings_markdown`),
and a test fails if the two drift apart.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from audits.errors import ConfigError, one_line

CANONICAL_TRANSACTION_COLUMNS: tuple[str, ...] = (
    "transaction_id", "timestamp", "customer_id", "product_id", "quantity", "list_price", "unit_price",
    "category", "channel", "discount_amount", "line_total", "discount_code", "currency",
)
REQUIRED_TRANSACTION_COLUMNS: tuple[str, ...] = (
    "timestamp", "customer_id", "product_id", "quantity", "unit_price",
)
CANONICAL_CUSTOMER_COLUMNS: tuple[str, ...] = ("customer_id", "customer_since")

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SourceKind = Literal["parquet", "csv", "postgres"]
SOURCE_KINDS: tuple[str, ...] = ("parquet", "csv", "postgres")

UNKNOWN_KEY = "{file}: unknown key '{key}'{hint}; see docs/configuration.md for every key"
WRONG_TYPE = "{file}: key '{key}' must be {expected}, got {got!r}"
BAD_IDENTIFIER = (
    "{file}: key '{key}' has {value!r}, which is not a column name: use lower-case letters, digits and _"
)
MISSING_KEY = "{file}: key '{key}' is required: {help}"
UNREADABLE = "{file}: cannot read the config ({reason}); check the path and the TOML syntax"


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its type, default and meaning."""

    key: str
    type: str  # str | int | float | bool | list[str] | list[list[str]] | table[str] | path
    default: Any
    help: str
    required: bool = False


_SOURCE_SETTINGS: tuple[tuple[str, str, Any, str], ...] = (
    ("name", "str", None, "Name of the source, used in batch records and messages."),
    ("kind", "str", "parquet", "parquet | csv | postgres."),
    ("path", "path", None, "parquet/csv: a file, a glob (`tx/*.parquet`) or a hive-partitioned folder."),
    ("dsn", "str", None, "postgres: a libpq connection string; `env:VAR` reads it from environment variable VAR."),
    ("table", "str", None, "postgres: the table to read (schema.table allowed)."),
    ("query", "str", None, "postgres: a SELECT to read instead of a table."),
    ("columns", "table[str]", {}, "Canonical name = source column name; unmapped canonical names are read as is."),
    ("attributes", "list[str]", [], "Transaction-level attribute columns (canonical names) kept from this source."),
    ("watermark", "str", "timestamp", "Incremental loads: `timestamp` or `transaction_id` (canonical column)."),
    ("currency", "str", None, "Currency of rows that have no currency column."),
    ("delimiter", "str", ",", "csv: field delimiter."),
    ("encoding", "str", "utf-8", "csv: file encoding."),
)

SETTINGS: tuple[Setting, ...] = (
    Setting("warehouse.path", "path", "out/warehouse.duckdb", "The DuckDB warehouse file."),
    Setting("warehouse.memory_limit", "str", "1.5GB",
            "DuckDB memory limit; beyond it DuckDB spills to disk. The audit holds up to about 0.8 GB of "
            "arrays besides (10M lines), so 1.5GB keeps a run under 2.5 GB."),
    Setting("warehouse.threads", "int", 0, "DuckDB threads; 0 means one per core."),
    Setting("warehouse.lock_timeout_seconds", "float", 60.0,
            "How long a run waits for another run's writer lock before failing."),
    Setting("output.dir", "path", "out/reports", "Where reports and findings.json are written (one folder per run)."),
    *(Setting(f"sources[].{k}", t, d, h, required=(k == "name")) for k, t, d, h in _SOURCE_SETTINGS),
    Setting("sources[].lookback_hours", "float", 48.0,
            "postgres, timestamp watermark: also re-read rows this many hours before the stored watermark, "
            "so late and corrected rows are caught."),
    Setting("sources[].timestamp_format", "str", None,
            "Format of text timestamps (strptime, e.g. `%d/%m/%Y %H:%M`); default: ISO 8601."),
    *(Setting(f"customers.{k}", t, d, h) for k, t, d, h in _SOURCE_SETTINGS if k not in ("attributes", "watermark", "currency")),
    Setting("audit.attributes", "list[str]", [], "Customer or transaction attribute columns audited for disparities."),
    Setting("audit.intersections", "list[list[str]]", [], "Combinations of attributes audited together."),
    Setting("audit.segment_by", "list[str]", [], "Columns whose every value also gets its own findings (e.g. category)."),
    Setting("audit.controls", "list[str]", ["channel"],
            "Legitimate price factors compared within, besides product and day (e.g. channel, quantity_band)."),
    Setting("audit.reference", "table[str]", {},
            "Fixed reference group per attribute (`reference.gender = \"M\"`); default: all other customers."),
    Setting("audit.checks", "list[str]", ["all"], "Checks to run (names from the catalogue) or `all`."),
    Setting("audit.window_days", "int", 30, "Rolling window audited by the nightly flow, in days."),
    Setting("audit.quantity_bands", "list[float]", [1, 2, 5, 10, 50],
            "Lower bounds of the quantity bands used by the `quantity_band` control."),
    Setting("audit.tenure_days", "int", 365, "Customers with longer tenure count as existing in `loyalty_penalty`."),
    Setting("audit.exclude_products", "list[str]", [],
            "Product ids left out of every check (e.g. postage or fee lines that are not goods)."),
    Setting("thresholds.min_price_gap", "float", 0.01, "Practical significance for price ratios (0.01 = 1%)."),
    Setting("thresholds.adverse_impact_ratio", "float", 0.8, "Four-fifths rule: discount-rate ratios below this flag."),
    Setting("thresholds.min_discount_depth", "float", 0.02,
            "Practical significance for differences in discount depth (percentage points as a fraction)."),
    Setting("thresholds.fdr", "float", 0.05, "Benjamini-Hochberg false discovery rate across all tests of a run."),
    Setting("thresholds.min_group_customers", "int", 11, "Groups with fewer customers are suppressed, never shown."),
    Setting("thresholds.min_customers_to_judge", "int", 30,
            "Groups with fewer customers on either side are shown but never flagged: their clustered error is unreliable."),
    Setting("policy.max_discount_pct", "float", 0.40, "Deepest discount the pricing policy allows (0.40 = 40%)."),
    Setting("policy.allow_above_list", "bool", False, "Whether a unit price above the list price is acceptable."),
    Setting("validation.max_bad_share", "float", 0.05,
            "A batch whose quarantined share exceeds this stops the run (exit code 3)."),
    Setting("validation.currencies", "list[str]", ["EUR", "GBP", "USD", "CHF", "SEK", "DKK", "NOK", "PLN"],
            "Known currency codes; others are quarantined."),
    Setting("validation.max_future_days", "int", 1, "Timestamps further in the future than this are quarantined."),
    Setting("validation.earliest", "str", "2000-01-01", "Timestamps before this date are quarantined."),
    Setting("validation.chunk_rows", "int", 1_000_000, "Rows per Great Expectations validation chunk."),
    Setting("schedule.nightly_cron", "str", "0 2 * * *", "Cron schedule of the nightly deployment."),
    Setting("schedule.timezone", "str", "UTC", "Time zone of the nightly schedule."),
)
SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.key.split(".")[0].removesuffix("[]") for s in SETTINGS))


@dataclass(frozen=True)
class SourceConfig:
    name: str
    kind: str
    path: Path | None = None
    dsn: str | None = None
    table: str | None = None
    query: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    attributes: tuple[str, ...] = ()
    watermark: str = "timestamp"
    currency: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    lookback_hours: float = 48.0
    timestamp_format: str | None = None

    def source_column(self, canonical: str) -> str:
        """The source's name for a canonical column."""
        return self.columns.get(canonical, canonical)


@dataclass(frozen=True)
class Config:
    path: Path | None
    sha256: str
    warehouse_path: Path
    memory_limit: str
    threads: int
    lock_timeout_seconds: float
    output_dir: Path
    sources: tuple[SourceConfig, ...]
    customers: SourceConfig | None
    attributes: tuple[str, ...]
    intersections: tuple[tuple[str, ...], ...]
    segment_by: tuple[str, ...]
    controls: tuple[str, ...]
    reference: dict[str, str]
    checks: tuple[str, ...]
    window_days: int
    quantity_bands: tuple[float, ...]
    tenure_days: int
    exclude_products: tuple[str, ...]
    min_price_gap: float
    adverse_impact_ratio: float
    min_discount_depth: float
    fdr: float
    min_group_customers: int
    min_customers_to_judge: int
    max_discount_pct: float
    allow_above_list: bool
    max_bad_share: float
    currencies: tuple[str, ...]
    max_future_days: int
    earliest: str
    chunk_rows: int
    nightly_cron: str
    timezone: str

    def thresholds(self) -> dict[str, float]:
        return {
            "min_price_gap": self.min_price_gap,
            "adverse_impact_ratio": self.adverse_impact_ratio,
            "min_discount_depth": self.min_discount_depth,
            "fdr": self.fdr,
            "min_group_customers": self.min_group_customers,
            "max_discount_pct": self.max_discount_pct,
        }


def load_config(path: Path, *, overrides: dict[str, Any] | None = None) -> Config:
    """Read, validate and resolve a TOML config file; `overrides` maps dotted keys to values."""
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(UNREADABLE.format(file=path, reason=one_line(err))) from err
    return parse_config(raw, file=str(path), base_dir=path.parent, raw_bytes=raw_bytes, overrides=overrides)


def parse_config(
    raw: dict[str, Any],
    *,
    file: str = "<config>",
    base_dir: Path = Path("."),
    raw_bytes: bytes | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Validate a parsed TOML document against `SETTINGS` and build the model."""
    flat = _flatten(raw, file)
    for key, value in (overrides or {}).items():
        if key not in SETTINGS_BY_KEY:
            raise ConfigError(UNKNOWN_KEY.format(file="parameter", key=key, hint=_did_you_mean(key)))
        flat[key] = value
    values = {key: _typed(key, value, file, base_dir) for key, value in flat.items()}

    def get(key: str) -> Any:
        return values.get(key, _default(key, base_dir))

    sources = tuple(
        _source(raw_source, f"sources[{i}]", file, base_dir) for i, raw_source in enumerate(raw.get("sources", []))
    )
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"{file}: key 'sources[].name' must be unique, got {names}")
    customers = _source(raw["customers"], "customers", file, base_dir, name="customers") if "customers" in raw else None

    for key in ("audit.attributes", "audit.segment_by", "audit.controls"):
        for value in get(key):
            _identifier(key, value, file)
    for combo in get("audit.intersections"):
        for value in combo:
            _identifier("audit.intersections", value, file)
    for attribute in get("audit.reference"):
        _identifier("audit.reference", attribute, file)

    checks = tuple(get("audit.checks"))
    from audits.findings import ALL_CHECKS  # the catalogue lives with the findings model

    if checks == ("all",):
        checks = ALL_CHECKS
    for check in checks:
        if check not in ALL_CHECKS:
            hint = _close(check, ALL_CHECKS)
            raise ConfigError(f"{file}: key 'audit.checks' names unknown check {check!r}{hint}")

    for key in ("thresholds.fdr", "thresholds.adverse_impact_ratio", "policy.max_discount_pct",
                "validation.max_bad_share"):
        if not 0 < get(key) <= 1:
            raise ConfigError(f"{file}: key '{key}' must be between 0 and 1, got {get(key)!r}")
    for key in ("thresholds.min_group_customers", "thresholds.min_customers_to_judge", "audit.window_days", "validation.chunk_rows"):
        if get(key) < 1:
            raise ConfigError(f"{file}: key '{key}' must be at least 1, got {get(key)!r}")

    return Config(
        path=None if file == "<config>" else Path(file),
        sha256=hashlib.sha256(raw_bytes if raw_bytes is not None else repr(sorted(flat.items())).encode()).hexdigest(),
        warehouse_path=get("warehouse.path"),
        memory_limit=get("warehouse.memory_limit"),
        threads=get("warehouse.threads"),
        lock_timeout_seconds=get("warehouse.lock_timeout_seconds"),
        output_dir=get("output.dir"),
        sources=sources,
        customers=customers,
        attributes=tuple(get("audit.attributes")),
        intersections=tuple(tuple(c) for c in get("audit.intersections")),
        segment_by=tuple(get("audit.segment_by")),
        controls=tuple(get("audit.controls")),
        reference=dict(get("audit.reference")),
        checks=checks,
        window_days=get("audit.window_days"),
        quantity_bands=tuple(sorted(get("audit.quantity_bands"))),
        tenure_days=get("audit.tenure_days"),
        exclude_products=tuple(get("audit.exclude_products")),
        min_price_gap=get("thresholds.min_price_gap"),
        adverse_impact_ratio=get("thresholds.adverse_impact_ratio"),
        min_discount_depth=get("thresholds.min_discount_depth"),
        fdr=get("thresholds.fdr"),
        min_group_customers=get("thresholds.min_group_customers"),
        min_customers_to_judge=get("thresholds.min_customers_to_judge"),
        max_discount_pct=get("policy.max_discount_pct"),
        allow_above_list=get("policy.allow_above_list"),
        max_bad_share=get("validation.max_bad_share"),
        currencies=tuple(get("validation.currencies")),
        max_future_days=get("validation.max_future_days"),
        earliest=get("validation.earliest"),
        chunk_rows=get("validation.chunk_rows"),
        nightly_cron=get("schedule.nightly_cron"),
        timezone=get("schedule.timezone"),
    )


def settings_markdown() -> str:
    """The reference table of every setting, for docs/configuration.md."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `audits/config.py` (`SETTINGS`); `make docs` rewrites it and a test fails when it drifts.",
        "Paths are relative to the config file. `sources[]` is an array of tables (`[[sources]]`).",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = "(required)" if s.required else f"`{s.default!r}`" if s.default is not None else "(none)"
        lines.append(f"| `{s.key}` | {s.type} | {default} | {s.help} |")
    return "\n".join(lines) + "\n"


def _flatten(raw: dict[str, Any], file: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in raw.items():
        if section in ("sources", "customers"):
            continue  # validated per source
        if section not in SECTIONS or not isinstance(body, dict):
            raise ConfigError(UNKNOWN_KEY.format(file=file, key=section, hint=_did_you_mean(section)))
        for key, value in body.items():
            dotted = f"{section}.{key}"
            if dotted not in SETTINGS_BY_KEY:
                raise ConfigError(UNKNOWN_KEY.format(file=file, key=dotted, hint=_did_you_mean(dotted)))
            flat[dotted] = value
    return flat


def _source(raw: Any, where: str, file: str, base_dir: Path, *, name: str | None = None) -> SourceConfig:
    prefix = "customers" if where == "customers" else "sources[]"
    if not isinstance(raw, dict):
        raise ConfigError(WRONG_TYPE.format(file=file, key=where, expected="a table", got=raw))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}"
        if dotted not in SETTINGS_BY_KEY:
            raise ConfigError(UNKNOWN_KEY.format(file=file, key=f"{where}.{key}", hint=_did_you_mean(dotted)))
        values[key] = _typed(dotted, value, file, base_dir)
    if name is not None:
        values.setdefault("name", name)
    if "name" not in values:
        raise ConfigError(MISSING_KEY.format(file=file, key=f"{where}.name", help=SETTINGS_BY_KEY["sources[].name"].help))
    kind = values.get("kind", "parquet")
    if kind not in SOURCE_KINDS:
        raise ConfigError(f"{file}: key '{where}.kind' must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
    if kind in ("parquet", "csv") and not values.get("path"):
        raise ConfigError(MISSING_KEY.format(file=file, key=f"{where}.path", help="a file source needs a path"))
    if kind == "postgres" and not values.get("dsn"):
        raise ConfigError(MISSING_KEY.format(file=file, key=f"{where}.dsn", help="a postgres source needs a dsn"))
    if kind == "postgres" and bool(values.get("table")) == bool(values.get("query")):
        raise ConfigError(f"{file}: {where} needs exactly one of 'table' or 'query'")
    allowed = CANONICAL_CUSTOMER_COLUMNS if prefix == "customers" else CANONICAL_TRANSACTION_COLUMNS
    for canonical in values.get("columns", {}):
        _identifier(f"{where}.columns", canonical, file)
        if prefix != "customers" and canonical not in allowed and canonical not in values.get("attributes", ()):
            raise ConfigError(
                f"{file}: key '{where}.columns.{canonical}' is not a canonical column"
                f"{_close(canonical, allowed)}; list transaction attributes in '{where}.attributes'"
            )
    for attribute in values.get("attributes", ()):
        _identifier(f"{where}.attributes", attribute, file)
    if values.get("watermark", "timestamp") not in ("timestamp", "transaction_id"):
        raise ConfigError(f"{file}: key '{where}.watermark' must be 'timestamp' or 'transaction_id'")
    return SourceConfig(
        name=values["name"],
        kind=kind,
        path=values.get("path"),
        dsn=values.get("dsn"),
        table=values.get("table"),
        query=values.get("query"),
        columns=dict(values.get("columns", {})),
        attributes=tuple(values.get("attributes", ())),
        watermark=values.get("watermark", "timestamp"),
        currency=values.get("currency"),
        delimiter=values.get("delimiter", ","),
        encoding=values.get("encoding", "utf-8"),
        lookback_hours=values.get("lookback_hours", 48.0),
        timestamp_format=values.get("timestamp_format"),
    )


def _typed(key: str, value: Any, file: str, base_dir: Path) -> Any:
    kind = SETTINGS_BY_KEY[key].type

    def wrong(expected: str) -> ConfigError:
        return ConfigError(WRONG_TYPE.format(file=file, key=key, expected=expected, got=value))

    if kind in ("str", "path"):
        if not isinstance(value, str | Path):
            raise wrong("a string")
        return (base_dir / value) if kind == "path" else value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("a whole number")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        return float(value)
    if kind in ("list[str]", "list[float]"):
        item_type = str if kind == "list[str]" else (int, float)
        if not isinstance(value, list | tuple) or not all(isinstance(v, item_type) and not isinstance(v, bool) for v in value):
            raise wrong("a list of " + ("strings" if kind == "list[str]" else "numbers"))
        return list(value)
    if kind == "list[list[str]]":
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, list | tuple) and len(v) >= 2 and all(isinstance(x, str) for x in v) for v in value
        ):
            raise wrong("a list of lists of at least two column names")
        return [list(v) for v in value]
    if kind == "table[str]":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong("a table of strings")
        return dict(value)
    raise AssertionError(f"setting {key} has unknown type {kind}")


def _default(key: str, base_dir: Path) -> Any:
    setting = SETTINGS_BY_KEY[key]
    if setting.type == "path" and setting.default is not None:
        return base_dir / setting.default
    return setting.default


def _identifier(key: str, value: str, file: str) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise ConfigError(BAD_IDENTIFIER.format(file=file, key=key, value=value))
    return value


def _did_you_mean(key: str) -> str:
    return _close(key, SETTINGS_BY_KEY)


def _close(word: str, choices: Any) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""

