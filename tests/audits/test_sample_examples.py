"""examples/insurance.toml and examples/lending.toml against the sample books they are written for.

End to end through the real CLI, as examples/README.md tells a user: `priceparity sample --kind K --out
out/K/landing`, then `priceparity audit --config examples/K.toml` (a copy beside a scratch `out/`, so the
example's relative paths hold): the ingest reads the export with its derived columns and na_values, the
audit finds the planted truth at its size and does not flag the confounders (the truth: examples/README.md
and the docstrings of audits/sample/insurance.py and lending.py). The books are smaller than the default
ones (4,000 policies, 12,000 loans) to keep the runs short; the planted effects are many standard errors
wide at that size. Besides: each config names only columns the export has (or derives), its derived
expressions run over the export without losing a value, its bands are the ones the truth is stated for,
and the config snippets of docs/modelling-your-data.md load.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import duckdb
import pytest

from audits.config import load_config, parse_config
from audits.sample import insurance, lending, write_market

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "insurance": (ROOT / "examples" / "insurance.toml", insurance.POLICIES_SCHEMA, insurance.INSURANCE_COLUMN_MAP,
                  insurance.INSURANCE_DERIVE, insurance.POLICIES_FILE),
    "lending": (ROOT / "examples" / "lending.toml", lending.LOANS_SCHEMA, lending.LENDING_COLUMN_MAP,
                lending.LENDING_DERIVE, lending.LOANS_FILE),
}


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    out = tmp_path_factory.mktemp("books")
    return {kind: write_market(out / kind, kind=kind, size=3_000) for kind in EXAMPLES}


def audited_names(config) -> set[str]:
    """Every column name the config's audit section uses."""
    names = {*config.attributes, *config.cell, *config.controls, *config.segment_by, *config.bands,
             config.outcome_column, *config.reference}
    names |= {name for combo in config.intersections for name in combo}
    return names | {n for n in (config.outcome_per, config.tenure_column, config.renewal) if n is not None}


@pytest.mark.parametrize("kind", EXAMPLES)
def test_the_example_config_names_only_columns_the_export_has_or_derives(kind):
    path, schema, column_map, derive, _ = EXAMPLES[kind]
    config = load_config(path)
    (source,) = config.sources
    assert source.derive == derive
    assert {name: source.source_column(name) for name in column_map} == column_map
    export_columns = set(schema.names)
    for name in (*source.columns, *source.attributes):
        assert source.source_column(name) in export_columns, name
    # every column the audit names is derived or read from the export (kept without an attributes list)
    readable = {name for name in audited_names(config) if source.source_column(name) in export_columns}
    assert audited_names(config) <= readable | set(source.derive) | {"unit_price"}
    assert "null" in source.na_values


@pytest.mark.parametrize("kind", EXAMPLES)
def test_derived_columns_run_over_the_export_without_losing_a_value(books, kind):
    path, _, _, _, file_name = EXAMPLES[kind]
    (source,) = load_config(path).sources
    con = duckdb.connect()
    con.execute(f"create view book as select * from read_parquet('{books[kind] / file_name}')")
    n_rows = con.execute("select count(*) from book").fetchone()[0]
    for name, expression in source.derive.items():
        query = f"select count({expression}), count(distinct {expression}) from book"
        n_values, n_distinct = con.execute(query).fetchone()
        assert n_values == n_rows, name
        if name == "transaction_id":
            assert n_distinct == n_rows


def test_the_configs_bands_are_the_ones_the_truth_is_stated_for():
    insurance_config, lending_config = (load_config(EXAMPLES[kind][0]) for kind in EXAMPLES)
    assert insurance_config.bands == {"age": insurance.AGE_BANDS, "bonus_malus": insurance.BONUS_MALUS_BANDS}
    assert insurance_config.tenure_bands == insurance.TENURE_BANDS
    assert (insurance_config.tenure_column, insurance_config.tenure_unit, insurance_config.renewal) == (
        "tenure_years", "years", "renewal")
    assert (insurance_config.outcome_column, insurance_config.outcome_per, insurance_config.outcome_scale) == (
        "premium", "pure_premium", "ratio")
    assert lending_config.bands == {"age": lending.AGE_BANDS}
    assert (lending_config.outcome_column, lending_config.outcome_per, lending_config.outcome_scale) == (
        "rate", None, "points")
    assert lending_config.reference == {"group": "P1"}
    # the planted effects are larger than the practical thresholds, the confounded gaps within cells smaller
    assert insurance_config.min_price_gap < 0.08 and lending_config.min_price_gap < 0.35


@pytest.mark.parametrize("kind", EXAMPLES)
def test_the_example_reads_where_the_readme_writes_the_sample(kind):
    path, _, _, _, file_name = EXAMPLES[kind]
    (source,) = load_config(path).sources
    landing = f"out/{kind}/landing"
    assert source.path.resolve() == ROOT / landing / file_name
    assert f"priceparity sample --kind {kind} --out {landing}" in (ROOT / "examples" / "README.md").read_text()


def test_every_config_snippet_in_modelling_your_data_loads():
    text = (ROOT / "docs" / "modelling-your-data.md").read_text()
    snippets = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    assert len(snippets) == 4  # baskets, policies, loans, bookings
    cells = []
    for snippet in snippets:
        config = parse_config(tomllib.loads(snippet), file="docs/modelling-your-data.md")
        assert len(config.sources) == 1
        cells.append(config.cell)
    assert cells == [("product_id", "day"), ("cover", "vehicle_class", "region", "year", "bonus_malus"),
                     ("grade", "term_months"), ("room_type", "night")]


# --- end to end through the CLI ------------------------------------------------------------------------

SIZES = {"insurance": 4_000, "lending": 12_000}


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """kind -> (findings.json, the audit's console output), as a user gets them from the README's commands."""
    results = {}
    for kind in EXAMPLES:
        root = tmp_path_factory.mktemp(kind)
        (root / "examples").mkdir()
        shutil.copy(EXAMPLES[kind][0], root / "examples" / f"{kind}.toml")
        run_cli("sample", "--kind", kind, "--out", f"out/{kind}/landing", "--customers", str(SIZES[kind]), cwd=root)
        done = run_cli("audit", "--config", f"examples/{kind}.toml", "--out", f"out/{kind}/audit", cwd=root)
        results[kind] = json.loads((root / "out" / kind / "audit" / "findings.json").read_text()), done.stdout
    return results


def by_group(findings: dict, check: str, attribute: str) -> dict[str, dict]:
    return {f["group"]: f for f in findings["findings"] if f["check"] == check and f["attribute"] == attribute
            and f["metric"].startswith(("price_ratio", "points_diff"))}


@pytest.mark.slow
def test_the_insurance_example_finds_price_walking_of_eight_percent_and_nothing_else(audited):
    findings, console = audited["insurance"]
    assert "0 rows quarantined" in console and findings["data_quality"]["quarantined_rows"] == 0
    assert findings["run"]["transactions"] > 2 * SIZES["insurance"]  # policy-years, one snapshot
    tenure = by_group(findings, "loyalty_penalty", "tenure")
    for band in ("3-4 years", "5+ years"):
        assert tenure[band]["outcome"] == "flagged" and tenure[band]["reference"] == "new"
        assert 1.07 < tenure[band]["estimate"] < 1.09, tenure[band]  # planted: +8%
    assert tenure["1-2 years"]["outcome"] != "flagged" and abs(tenure["1-2 years"]["estimate"] - 1) < 0.01
    # the confounder: drivers aged 65+ buy comprehensive cover (naive +4%), within the cell they pay the same
    for attribute, groups in (("age", {"18-24", "25-34", "35-49", "50-64", "65+"}), ("gender", {"F", "M"})):
        found = by_group(findings, "price_gap", attribute)
        assert set(found) == groups  # "null" in Gender is missing (na_values), not a group
        assert all(f["outcome"] != "flagged" and abs(f["estimate"] - 1) < 0.01 for f in found.values())
    assert {f["check"] for f in findings["findings"] if f["outcome"] == "flagged"} == {"loyalty_penalty"}
    assert "higher premium than new customers for the same cover, vehicle class, region, year and bonus malus" in (
        tenure["3-4 years"]["summary"])


@pytest.mark.slow
def test_the_lending_example_finds_the_markup_of_group_p2_in_points_and_nothing_else(audited):
    findings, console = audited["lending"]
    assert "0 rows quarantined" in console and findings["run"]["transactions"] == SIZES["lending"]
    assert findings["run"]["customers"] == SIZES["lending"]  # no customer id: each loan its own borrower
    group = by_group(findings, "price_gap", "group")
    assert group["P2"]["outcome"] == "flagged" and group["P2"]["metric"] == "points_diff"
    assert 0.31 < group["P2"]["estimate"] < 0.39, group["P2"]  # planted: +0.35 points (naive: +3.6)
    assert [f for f in findings["findings"] if f["outcome"] == "flagged"] == [group["P2"]]
    for attribute in ("group", "age", "gender", "region"):
        others = [f for g, f in by_group(findings, "price_gap", attribute).items() if g != "P2"]
        assert others and all(abs(f["estimate"]) < 0.1 for f in others), attribute
    assert set(by_group(findings, "price_gap", "gender")) == {"F", "M"}
