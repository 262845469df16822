"""Configuration: read a TOML file, check every key against `audits.settings.SETTINGS`, build the model.

`load_config` rejects any key not in the settings table (with a did-you-mean), checks each value's
type and allowed range, fills defaults and resolves paths relative to the config file. The model's
fields are the settings' names (`Setting.name`); a test fails if the two drift apart.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from audits.catalogue import CHECK_NAMES
from audits.errors import ConfigError, one_line
from audits.settings import SETTINGS, SETTINGS_BY_KEY, TABLES, threshold_settings

CANONICAL_TRANSACTION_COLUMNS: tuple[str, ...] = (
    "transaction_id", "timestamp", "customer_id", "product_id", "quantity", "list_price", "unit_price",
    "category", "channel", "discount_amount", "line_total", "discount_code", "currency",
)
CANONICAL_CUSTOMER_COLUMNS: tuple[str, ...] = ("customer_id", "customer_since")
TIME_GRAINS: tuple[str, ...] = ("day", "week", "month")  # usable in audit.cell

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
SOURCE_KINDS: tuple[str, ...] = SETTINGS_BY_KEY["sources[].kind"].choices
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.key.split(".")[0].removesuffix("[]") for s in SETTINGS))

UNKNOWN_KEY = "{file}: unknown key '{key}'{hint}; see docs/configuration.md for every key"
WRONG_TYPE = "{file}: key '{key}' must be {expected}, got {got!r}"
OUT_OF_RANGE = "{file}: key '{key}' must be {allowed}, got {got!r}"
BAD_IDENTIFIER = (
    "{file}: key '{key}' has {value!r}, which is not a column name: use lower-case letters, digits and _"
)
MISSING_KEY = "{file}: key '{key}' is required: {help}"
UNREADABLE = "{file}: cannot read the config ({reason}); check the path and the TOML syntax"
UNKNOWN_CHECK = "{file}: key 'audit.checks' names unknown check {check!r}{hint}"


@dataclass(frozen=True)
class SourceConfig:
    """One source of transactions (or the customers), as `sources[]` / `[customers]` describe it."""

    name: str
    kind: str
    path: Path | None = None
    dsn: str | None = None
    table: str | None = None
    query: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    derive: dict[str, str] = field(default_factory=dict)
    na_values: tuple[str, ...] = ("", "NA", "null")
    attributes: tuple[str, ...] = ()
    watermark: str = "timestamp"
    currency: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    lookback_hours: float = 48.0
    timestamp_format: str | None = None
    # not a setting: every column the config file's audit section names, which the ingest keeps from a
    # source that has it (a run's --attribute or --segment-by changes what is audited, not what is kept)
    audited: tuple[str, ...] = ()

    def source_column(self, canonical: str) -> str:
        """The source's name for a canonical column."""
        return self.columns.get(canonical, canonical)


@dataclass(frozen=True)
class Config:
    """A validated configuration. Every field but the first four is a setting (`Setting.name`)."""

    path: Path | None
    sha256: str
    sources: tuple[SourceConfig, ...]
    customers: SourceConfig | None
    warehouse_path: Path
    memory_limit: str
    threads: int
    lock_timeout_seconds: float
    output_dir: Path
    max_breach_rows: int
    attributes: tuple[str, ...]
    intersections: tuple[tuple[str, ...], ...]
    segment_by: tuple[str, ...]
    cell: tuple[str, ...]
    controls: tuple[str, ...]
    reference: dict[str, str]
    checks: tuple[str, ...]
    window_days: int
    quantity_bands: tuple[float, ...]
    bands: dict[str, tuple[float, ...]]
    tenure_days: int
    tenure_column: str | None
    tenure_unit: str
    tenure_bands: tuple[float, ...]
    renewal: str | None
    outcome_column: str
    outcome_per: str | None
    outcome_scale: str
    outcome_noun: str
    exclude_products: tuple[str, ...]
    price_tolerance: float
    max_groups: int
    min_price_gap: float
    adverse_impact_ratio: float
    max_dearer_ratio: float
    consistency_high_share: float
    min_discount_depth: float
    fdr: float
    confidence: float
    min_group_customers: int
    count_rounding: int
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
        """The run's thresholds by name (what an on-demand run may override), as findings.json states them."""
        return {s.name: getattr(self, s.name) for s in threshold_settings()}

    def sql_values(self) -> dict[str, Any]:
        """The values the checks' SQL files may declare as parameters (bound, never formatted in)."""
        return {"max_discount_pct": self.max_discount_pct, "tenure_days": self.tenure_days,
                "min_price_gap": self.min_price_gap, "price_tolerance": self.price_tolerance}

    def setting(self, key: str) -> Any:
        """The value of a setting by its key (`thresholds.fdr`)."""
        return getattr(self, SETTINGS_BY_KEY[key].name)



_MODEL_SETTINGS = tuple(s for s in SETTINGS if not s.key.startswith(("sources[]", "customers")))


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
    own = dict(flat)  # the file's own keys: what a source keeps does not change with a run's overrides
    for key, value in (overrides or {}).items():
        if key not in SETTINGS_BY_KEY or key.startswith(("sources", "customers")):
            raise ConfigError(UNKNOWN_KEY.format(file="parameter", key=key, hint=_did_you_mean(key)))
        flat[key] = value
    values = {s.key: _value(s.key, flat[s.key], file, base_dir) if s.key in flat else _default(s.key, base_dir)
              for s in _MODEL_SETTINGS}

    audited = _audited_columns({SETTINGS_BY_KEY[key].name: _value(key, own[key], file, base_dir) if key in own
                                else _default(key, base_dir) for key in values})
    sources = tuple(_source(body, f"sources[{i}]", file, base_dir, audited=audited)
                    for i, body in enumerate(raw.get("sources", [])))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"{file}: key 'sources[].name' must be unique, got {names}")
    customers = _source(raw["customers"], "customers", file, base_dir, name="customers") if "customers" in raw else None

    for key in ("audit.attributes", "audit.segment_by", "audit.controls", "audit.cell"):
        for value in values[key]:
            _identifier(key, value, file)
    for combo in values["audit.intersections"]:
        for value in combo:
            _identifier("audit.intersections", value, file)
    for key in ("audit.reference", "audit.bands"):
        for column in values[key]:
            _identifier(f"{key}.{column}", column, file)
    for key in ("audit.outcome.column", "audit.outcome.per", "audit.tenure.column", "audit.renewal"):
        if values[key] is not None:
            _identifier(key, values[key], file)
    checks = tuple(values["audit.checks"])
    if checks == ("all",):
        checks = CHECK_NAMES
    for check in checks:
        if check not in CHECK_NAMES:
            raise ConfigError(UNKNOWN_CHECK.format(file=file, check=check, hint=_close(check, CHECK_NAMES)))
    values["audit.checks"] = checks

    model = {SETTINGS_BY_KEY[key].name: _frozen(value) for key, value in values.items()}
    return Config(
        path=None if file == "<config>" else Path(file),
        sha256=hashlib.sha256(raw_bytes if raw_bytes is not None else repr(sorted(flat.items())).encode()).hexdigest(),
        sources=sources,
        customers=customers,
        **model,
    )


def _frozen(value: Any) -> Any:
    """Lists as tuples (the model is immutable); tables stay dicts of frozen values."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def _flatten(raw: dict[str, Any], file: str) -> dict[str, Any]:
    """Dotted key -> value for every key outside sources and customers; a table key may be a TOML table."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, body: dict[str, Any]) -> None:
        for key, value in body.items():
            dotted = f"{prefix}.{key}"
            if dotted in TABLES and isinstance(value, dict):
                walk(dotted, value)
            elif dotted in SETTINGS_BY_KEY:
                flat[dotted] = value
            else:
                raise ConfigError(UNKNOWN_KEY.format(file=file, key=dotted, hint=_did_you_mean(dotted)))

    for section, body in raw.items():
        if section in ("sources", "customers"):
            continue  # validated per source
        if section not in SECTIONS or not isinstance(body, dict):
            raise ConfigError(UNKNOWN_KEY.format(file=file, key=section, hint=_did_you_mean(section)))
        walk(section, body)
    return flat


def _audited_columns(model: dict[str, Any]) -> tuple[str, ...]:
    """The column names the audit settings of `model` (field name -> value) name, time grains left out."""
    names = [*model["attributes"], *(c for combo in model["intersections"] for c in combo), *model["segment_by"],
             *model["cell"], *model["controls"], *model["bands"], *model["reference"], model["outcome_column"],
             *(model[k] for k in ("outcome_per", "tenure_column", "renewal") if model[k] is not None)]
    return tuple(dict.fromkeys(n for n in names if n not in TIME_GRAINS))


def _source(raw: Any, where: str, file: str, base_dir: Path, *, name: str | None = None,
            audited: tuple[str, ...] = ()) -> SourceConfig:
    prefix = "customers" if where == "customers" else "sources[]"
    if not isinstance(raw, dict):
        raise ConfigError(WRONG_TYPE.format(file=file, key=where, expected="a table", got=raw))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}.{key}"
        if dotted not in SETTINGS_BY_KEY:
            raise ConfigError(UNKNOWN_KEY.format(file=file, key=f"{where}.{key}", hint=_did_you_mean(dotted)))
        values[key] = _value(dotted, value, file, base_dir, shown=f"{where}.{key}")
    if name is not None:
        values.setdefault("name", name)
    if "name" not in values:
        raise ConfigError(MISSING_KEY.format(file=file, key=f"{where}.name", help=SETTINGS_BY_KEY["sources[].name"].help))
    kind = values.setdefault("kind", "parquet")
    if kind in ("parquet", "csv") and not values.get("path"):
        raise ConfigError(MISSING_KEY.format(file=file, key=f"{where}.path", help="a file source needs a path"))
    if kind == "postgres" and not values.get("dsn"):
        raise ConfigError(MISSING_KEY.format(file=file, key=f"{where}.dsn", help="a postgres source needs a dsn"))
    if kind == "postgres" and bool(values.get("table")) == bool(values.get("query")):
        raise ConfigError(f"{file}: {where} needs exactly one of 'table' or 'query'")
    allowed = CANONICAL_CUSTOMER_COLUMNS if prefix == "customers" else CANONICAL_TRANSACTION_COLUMNS
    for canonical in values.get("columns", {}):
        _identifier(f"{where}.columns", canonical, file)
        if prefix != "customers" and canonical not in (*allowed, *values.get("attributes", ()), *audited):
            raise ConfigError(
                f"{file}: key '{where}.columns.{canonical}' is not a canonical column"
                f"{_close(canonical, allowed)}; list transaction attributes in '{where}.attributes'"
            )
    for derived in values.get("derive", {}):
        _identifier(f"{where}.derive", derived, file)
        if derived in values.get("columns", {}) or derived in ("source", "batch_id"):
            what = "mapped in its columns too" if derived in values.get("columns", {}) else "a bookkeeping column"
            raise ConfigError(f"{file}: key '{where}.derive.{derived}' names {derived!r}, {what}; "
                              "give the derived column another name")
    for attribute in values.get("attributes", ()):
        _identifier(f"{where}.attributes", attribute, file)
    return SourceConfig(**{k: _frozen(v) for k, v in values.items()}, audited=audited)


def _value(key: str, value: Any, file: str, base_dir: Path, *, shown: str | None = None) -> Any:
    """The value typed as its setting says and checked against its allowed range."""
    setting = SETTINGS_BY_KEY[key]
    shown = shown or key
    typed = _typed(setting.type, value, lambda expected: ConfigError(
        WRONG_TYPE.format(file=file, key=shown, expected=expected, got=value)))
    if (allowed := setting.check(typed)) is not None:
        raise ConfigError(OUT_OF_RANGE.format(file=file, key=shown, allowed=allowed, got=value))
    return base_dir / typed if setting.type == "path" else typed


def _typed(kind: str, value: Any, wrong: Any) -> Any:
    """`value` as setting type `kind`; `wrong(expected)` is the error to raise otherwise."""

    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if kind in ("str", "path"):
        if not isinstance(value, str) or "\x00" in value:
            raise wrong("a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("a whole number")
        return value
    if kind == "float":
        if not number(value):
            raise wrong("a finite number")
        return float(value)
    if kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        return list(value)
    if kind == "list[float]":
        if not isinstance(value, list) or not all(number(v) for v in value):
            raise wrong("a list of finite numbers")
        return [float(v) for v in value]
    if kind == "list[list[str]]":
        if not isinstance(value, list) or not all(
            isinstance(v, list) and len(v) >= 2 and all(isinstance(x, str) for x in v) for v in value
        ):
            raise wrong("a list of lists of at least two column names")
        return [list(v) for v in value]
    if kind == "table[str]":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise wrong("a table of strings")
        return dict(value)
    if kind == "table[list[float]]":
        if not isinstance(value, dict) or not all(
                isinstance(v, list) and all(number(x) for x in v) for v in value.values()):
            raise wrong("a table of lists of finite numbers")
        return {k: [float(x) for x in v] for k, v in value.items()}
    raise AssertionError(f"unknown setting type {kind}")


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


def model_fields() -> set[str]:
    """The config model's setting fields (a test holds them equal to the settings' names)."""
    return {f.name for f in fields(Config)} - {"path", "sha256", "sources", "customers"}


def settings_names() -> set[str]:
    return {s.name for s in _MODEL_SETTINGS}
