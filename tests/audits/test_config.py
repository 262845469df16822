"""Config: every key documented, unknown keys and wrong types rejected with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from audits.config import SETTINGS, load_config, parse_config, settings_markdown
from audits.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SOURCE = {"name": "shop", "path": "tx.parquet"}


def test_docs_match_the_settings_table():
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == settings_markdown(), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_every_setting_has_help_and_a_known_type():
    for setting in SETTINGS:
        assert setting.help.strip(), setting.key
        assert setting.type in {"str", "int", "float", "bool", "path", "list[str]", "list[float]",
                                "list[list[str]]", "table[str]"}, setting.key


def test_defaults_fill_an_empty_config():
    config = parse_config({}, base_dir=Path("/base"))
    assert config.fdr == 0.05
    assert config.min_group_customers == 11
    assert config.warehouse_path == Path("/base/out/warehouse.duckdb")
    assert "price_gap" in config.checks and len(config.checks) == 7


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"audit": {"atributes": ["gender"]}}, "unknown key 'audit.atributes' (did you mean 'audit.attributes'?)"),
        ({"thresholds": {"fdr": "low"}}, "key 'thresholds.fdr' must be a number"),
        ({"thresholds": {"fdr": 2}}, "key 'thresholds.fdr' must be between 0 and 1"),
        ({"audit": {"attributes": ["gender; drop table x"]}}, "is not a column name"),
        ({"audit": {"checks": ["price_gapp"]}}, "unknown check 'price_gapp' (did you mean 'price_gap'?)"),
        ({"sources": [{"name": "a", "kind": "excel", "path": "x"}]}, "key 'sources[0].kind' must be one of"),
        ({"sources": [{"name": "a"}]}, "key 'sources[0].path' is required"),
        ({"sources": [{"name": "a", "kind": "postgres", "dsn": "x"}]}, "needs exactly one of 'table' or 'query'"),
        ({"sources": [{**SOURCE, "columns": {"price": "p"}}]}, "'sources[0].columns.price' is not a canonical column"),
        ({"sources": [SOURCE, SOURCE]}, "'sources[].name' must be unique"),
        ({"warehouse": "x.duckdb"}, "unknown key 'warehouse'"),
        ({"audit": {"intersections": [["gender"]]}}, "a list of lists of at least two column names"),
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
