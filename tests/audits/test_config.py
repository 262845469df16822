"""Config: every key documented, unknown keys and wrong types rejected with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from audits.catalogue import CHECK_NAMES
from audits.config import load_config, model_fields, parse_config, settings_names
from audits.errors import ConfigError
from audits.settings import SETTINGS, TYPES, settings_markdown

ROOT = Path(__file__).resolve().parents[2]
SOURCE = {"name": "shop", "path": "tx.parquet"}


def test_docs_match_the_settings_table():
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == settings_markdown(), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_every_setting_has_help_and_a_known_type():
    for setting in SETTINGS:
        assert setting.help.strip(), setting.key
        assert setting.type in TYPES, setting.key
        assert setting.check(setting.default) is None, f"{setting.key}: its default is outside its own range"


def test_the_model_has_one_field_per_setting():
    assert model_fields() == settings_names()


def test_defaults_fill_an_empty_config():
    config = parse_config({}, base_dir=Path("/base"))
    assert config.fdr == 0.05
    assert config.min_group_customers == 11
    assert config.warehouse_path == Path("/base/out/warehouse.duckdb")
    assert config.checks == CHECK_NAMES and "price_gap" in config.checks


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"audit": {"atributes": ["gender"]}}, "unknown key 'audit.atributes' (did you mean 'audit.attributes'?)"),
        ({"thresholds": {"fdr": "low"}}, "key 'thresholds.fdr' must be a finite number"),
        ({"thresholds": {"fdr": 2}}, "key 'thresholds.fdr' must be greater than 0 and at most 0.5, got 2"),
        ({"audit": {"attributes": ["gender; drop table x"]}}, "is not a column name"),
        ({"audit": {"checks": ["price_gapp"]}}, "unknown check 'price_gapp' (did you mean 'price_gap'?)"),
        ({"sources": [{"name": "a", "kind": "excel", "path": "x"}]}, "key 'sources[0].kind' must be one of"),
        ({"sources": [{"name": "a"}]}, "key 'sources[0].path' is required"),
        ({"sources": [{"name": "a", "kind": "postgres", "dsn": "x"}]}, "needs exactly one of 'table' or 'query'"),
        ({"sources": [{**SOURCE, "columns": {"price": "p"}}]}, "'sources[0].columns.price' is not a canonical column"),
        ({"sources": [SOURCE, SOURCE]}, "'sources[].name' must be unique"),
        ({"warehouse": "x.duckdb"}, "unknown key 'warehouse'"),
        ({"audit": {"intersections": [["gender"]]}}, "a list of lists of at least two column names"),
        # settings that would change what an audit concludes, or crash it, are refused with their range
        ({"thresholds": {"min_price_gap": -0.5}}, "key 'thresholds.min_price_gap' must be between 0 and 1, got -0.5"),
        ({"thresholds": {"min_discount_depth": -0.1}}, "'thresholds.min_discount_depth' must be between 0 and 1"),
        ({"thresholds": {"adverse_impact_ratio": float("inf")}}, "'thresholds.adverse_impact_ratio' must be a finite"),
        ({"thresholds": {"fdr": float("nan")}}, "key 'thresholds.fdr' must be a finite number"),
        ({"audit": {"tenure_days": -30}}, "key 'audit.tenure_days' must be between 1 and 36500, got -30"),
        ({"audit": {"checks": []}}, "key 'audit.checks' must be a non-empty list, got []"),
        ({"validation": {"currencies": []}}, "key 'validation.currencies' must be a non-empty list of three-letter"),
        ({"validation": {"max_future_days": -100000}}, "'validation.max_future_days' must be between 0 and 3660"),
        ({"validation": {"max_future_days": 10**12}}, "'validation.max_future_days' must be between 0 and 3660"),
        ({"audit": {"window_days": 10**12}}, "key 'audit.window_days' must be between 1 and 3660"),
        ({"warehouse": {"threads": -4}}, "key 'warehouse.threads' must be between 0 and 1024, got -4"),
        ({"warehouse": {"memory_limit": "lots"}}, "key 'warehouse.memory_limit' must be a size such as '1.5GB'"),
        ({"validation": {"earliest": "yesterday"}}, "key 'validation.earliest' must be a date written YYYY-MM-DD"),
        ({"schedule": {"nightly_cron": "at two"}}, "key 'schedule.nightly_cron' must be a cron expression"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "key 'schedule.timezone' must be a time zone name"),
        ({"audit": {"outcome": {"scale": "log"}}}, "key 'audit.outcome.scale' must be one of 'ratio', 'points'"),
        ({"audit": {"outcome": {"colour": "x"}}}, "unknown key 'audit.outcome.colour'"),
        ({"audit": {"bands": {"age": [65, 18]}}}, "key 'audit.bands' must be a table of column = [lower bounds]"),
        ({"sources": [{**SOURCE, "lookback_hours": -1}]}, "key 'sources[0].lookback_hours' must be between 0"),
        ({"sources": [{**SOURCE, "delimiter": ";;"}]}, "key 'sources[0].delimiter' must be a single character"),
        ({"sources": [{**SOURCE, "derive": {"Bad Name": "1"}}]}, "'sources[0].derive' has 'Bad Name'"),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, file="my.toml")
    text = str(caught.value)
    assert text.startswith("my.toml: ")
    assert message in text
    assert "\n" not in text


def test_unreadable_toml_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[audit\nattributes = 1", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml: cannot read the config"):
        load_config(path)


def test_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "pp.toml"
    path.write_text('[warehouse]\npath = "w.duckdb"\n[[sources]]\nname = "s"\npath = "tx/*.parquet"\n', encoding="utf-8")
    config = load_config(path)
    assert config.warehouse_path == tmp_path / "w.duckdb"
    assert config.sources[0].path == tmp_path / "tx/*.parquet"
    assert len(config.sha256) == 64


def test_overrides_are_validated_like_the_file():
    config = parse_config({}, overrides={"thresholds.fdr": 0.1, "audit.attributes": ["region"]})
    assert config.fdr == 0.1 and config.attributes == ("region",)
    with pytest.raises(ConfigError, match="unknown key 'thresholds.fd'"):
        parse_config({}, overrides={"thresholds.fd": 0.1})


def test_table_keys_may_be_written_as_tables_or_dotted():
    as_table = parse_config({"audit": {"outcome": {"column": "premium", "per": "pure_premium", "scale": "points"}}})
    dotted = parse_config({}, overrides={"audit.outcome.column": "premium"})
    assert (as_table.outcome_column, as_table.outcome_per, as_table.outcome_scale) == ("premium", "pure_premium",
                                                                                       "points")
    assert dotted.outcome_column == "premium" and dotted.outcome_noun == "price"


def test_thresholds_are_the_threshold_and_policy_numbers():
    config = parse_config({"thresholds": {"fdr": 0.01}})
    assert config.thresholds()["fdr"] == 0.01
    assert set(config.thresholds()) == {"min_price_gap", "adverse_impact_ratio", "max_dearer_ratio",
                                        "consistency_high_share", "min_discount_depth", "fdr", "confidence",
                                        "min_group_customers", "count_rounding", "min_customers_to_judge",
                                        "max_discount_pct"}
