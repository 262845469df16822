"""The pyfixest reference, its agreement checks and the bench's targets.

Run from the repository root: `.venv/bin/python -m pytest bench/tests` (needs the `bench` extra).
"""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import duckdb
import pytest

from audits.config import parse_config
from audits.sample import MarketSpec, generate_market
from audits.warehouse import add_attribute_columns, apply_schema
from bench.measure import Sampler
from bench.pyfixest_reference import compare_with_engine, compare_with_findings, load_lines, run_pyfixest
from bench.run import targets
from bench.stages import _engine_cr1, _pyfixest
from tests.audits.conftest import load_market

pytest.importorskip("pyfixest")
REPO = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 1, 5)
# (customer, product, day offset, unit price): every cell (product x day, one channel) has one woman and one man
LINES = [("c1", "p1", 0, 110), ("c2", "p1", 0, 100), ("c3", "p2", 0, 220), ("c4", "p2", 0, 200),
         ("c1", "p1", 1, 121), ("c4", "p1", 1, 105), ("c3", "p2", 1, 230), ("c2", "p2", 1, 200)]
GENDER = {"c1": "F", "c2": "M", "c3": "F", "c4": "M"}
CATEGORY = {"p1": "food", "p2": "toys"}


def hand_warehouse(path: Path) -> None:
    """LINES in a warehouse built from the real sql/schema."""
    with duckdb.connect(str(path)) as con:
        apply_schema(con)
        add_attribute_columns(con, "customers", ["gender"])
        for customer, gender in GENDER.items():
            con.execute("insert into customers (customer_id, customer_since, batch_id, gender) values (?, ?, 1, ?)",
                        [customer, dt.date(2020, 1, 1), gender])
        for i, (customer, product, offset, price) in enumerate(LINES):
            con.execute("insert into transactions (transaction_id, source, timestamp, customer_id, product_id, quantity, "
                        "list_price, unit_price, category, channel, currency, batch_id) "
                        "values (?, 'shop', ?, ?, ?, 1, ?, ?, ?, 'store', 'EUR', 1)",
                        [f"t{i}", dt.datetime.combine(DAY + dt.timedelta(days=offset), dt.time(12)), customer, product,
                         price, price, CATEGORY[product]])


def config_document(warehouse: Path, **audit) -> dict:
    return {"warehouse": {"path": str(warehouse)},
            "audit": {"attributes": ["gender"], "intersections": [], "segment_by": ["category"], "controls": ["channel"],
                      **audit}}


def test_pyfixest_beta_is_the_within_cell_difference_of_log_prices(tmp_path):
    hand_warehouse(tmp_path / "w.duckdb")
    config = parse_config(config_document(tmp_path / "w.duckdb", checks=["price_gap"]))
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        frame = load_lines(con, config, start=DAY, end=DAY + dt.timedelta(days=1))
    checks = run_pyfixest(frame, config, phase=lambda name: nullcontext())
    assert list(checks) == ["price_gap"]  # the config's disparity checks only
    beta = {(t["segment"], t["group"]): t["beta"] for t in checks["price_gap"]["tests"]}
    # one woman and one man per cell, so each cell weighs the same: the mean of the cells' log ratios
    food = (math.log(110 / 100) + math.log(121 / 105)) / 2
    toys = (math.log(220 / 200) + math.log(230 / 200)) / 2
    overall = (food + toys) / 2
    assert beta[("", "F")] == pytest.approx(overall, abs=1e-12)
    assert beta[("", "M")] == pytest.approx(-overall, abs=1e-12)
    assert beta[("category=food", "F")] == pytest.approx(food, abs=1e-12)
    assert beta[("category=toys", "F")] == pytest.approx(toys, abs=1e-12)
    assert checks["price_gap"]["models"] == 6  # 2 groups x (whole sample, 2 categories)


def test_pyfixest_agrees_with_the_engine_on_every_check_of_a_small_market(tmp_path):
    warehouse = tmp_path / "w.duckdb"
    market = generate_market(MarketSpec(n_customers=400, days=12, n_products=15, seed=4))
    with duckdb.connect(str(warehouse)) as con:
        apply_schema(con)
        load_market(con, market)
    job = {"config": config_document(warehouse), "period_start": market.spec.start.isoformat(),
           "period_end": market.spec.end.isoformat(), "warehouse_path": str(warehouse)}
    fitted = _pyfixest(job, Sampler())["checks"]
    engine = _engine_cr1(job, Sampler())["tests"]
    agreement = compare_with_engine(fitted, engine)
    assert set(agreement) == {"price_gap", "discount_incidence", "discount_depth", "loyalty_penalty"}
    for check, c in agreement.items():
        assert c["tests_in_both"] == c["tests_pyfixest"] > 0, check
        assert c["max_abs_beta_difference"] < 1e-10, check
        assert c["max_rel_sandwich_se_difference"] < 1e-8, check
        assert c["median_ssc"] > 1  # pyfixest's (N-1)/(N-k) counts the cells' fixed effects


def test_compare_with_findings_takes_log_of_the_estimate_and_skips_suppressed_findings():
    checks = {"price_gap": {"tests": [
        {"grouping": "gender", "segment": "", "group": "F", "beta": 0.1 + 3e-7},
        {"grouping": "gender", "segment": "category=food", "group": "F", "beta": -0.2},
        {"grouping": "gender", "segment": "", "group": "X", "beta": 5.0}]}}
    findings = [
        {"check": "price_gap", "attribute": "gender", "segment": None, "group": "F", "estimate": math.exp(0.1)},
        {"check": "price_gap", "attribute": "gender", "segment": {"category": "food"}, "group": "F",
         "estimate": math.exp(-0.2)},
        {"check": "price_gap", "attribute": "gender", "segment": None, "group": "X", "estimate": None},  # suppressed
        {"check": "discount_depth", "attribute": "gender", "segment": None, "group": "F", "estimate": 0.5}]
    result = compare_with_findings(checks, findings)
    assert (result["tests_audit"], result["tests_pyfixest"], result["tests_in_both"]) == (2, 3, 2)
    assert result["max_abs_beta_difference"] == pytest.approx(3e-7, rel=1e-6)


def test_compare_with_engine_divides_out_each_sides_small_sample_factor():
    # engine: G = 10 clusters, CR1 se = sqrt(10/9) * s; pyfixest: ssc = 1.44, se = 1.2 * s (the same sandwich s)
    s = 0.01
    engine = [{"check": "price_gap", "grouping": "gender", "segment": "", "group": "F", "beta": 0.05,
               "se": math.sqrt(10 / 9) * s, "n_clusters": 10}]
    fitted = {"price_gap": {"tests": [{"grouping": "gender", "segment": "", "group": "F", "beta": 0.05,
                                       "se": 1.2 * s, "ssc": 1.44}]}}
    c = compare_with_engine(fitted, engine)["price_gap"]
    assert c["max_rel_sandwich_se_difference"] == pytest.approx(0, abs=1e-12)
    assert c["median_se_ratio"] == pytest.approx(1.2 / math.sqrt(10 / 9))
    fitted["price_gap"]["tests"][0]["se"] = 1.2 * s * 1.01  # a sandwich 1% off is reported
    assert compare_with_engine(fitted, engine)["price_gap"]["max_rel_sandwich_se_difference"] == pytest.approx(0.01)


def test_targets_check_pyfixest_speed_memory_and_agreement_at_each_size():
    def size(over: float, rss_share: float, beta_difference: float) -> dict:
        return {"ratios": {"pyfixest_over_audit": over, "pyfixest_cpu_over_audit_cpu": over,
                           "audit_rss_over_pyfixest_rss": rss_share, "pyfixest_rss_over_audit_rss": 1 / rss_share},
                "pyfixest_agrees": {"audit_price_gap": {"max_abs_beta_difference": beta_difference},
                                    "engine_cr1": {"price_gap": {"max_abs_beta_difference": 0.0}}}}

    rows = targets({"400k": size(25.0, 0.29, 1e-15), "1M": size(19.0, 0.15, 1e-6)})
    status = {row["target"]: row["status"] for row in rows}
    assert status["audit stage at least 20x faster than pyfixest (400k)"] == "met"
    assert status["audit stage peak RSS at most one fifth of pyfixest's (400k)"] == "MISSED"
    assert status["pyfixest computes the audit's estimates (400k)"] == "met"
    assert status["audit stage at least 20x faster than pyfixest (1M)"] == "MISSED"
    assert status["audit stage peak RSS at most one fifth of pyfixest's (1M)"] == "met"
    assert status["pyfixest computes the audit's estimates (1M)"] == "MISSED"
    assert not any("naive" in row["target"] for row in rows)  # a reference, no longer a target


def test_audit_once_times_one_audit_and_rejects_a_missing_warehouse(tmp_path):
    hand_warehouse(tmp_path / "w.duckdb")
    config = tmp_path / "c.toml"
    config.write_text('[audit]\nattributes = ["gender"]\n', encoding="utf-8")
    script = [sys.executable, str(REPO / "bench" / "audit_once.py"), "--config", str(config)]
    done = subprocess.run([*script, "--warehouse", str(tmp_path / "w.duckdb")], capture_output=True, text=True,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.startswith("audit 2026-01-05..2026-01-06: 8 lines, ")  # the warehouse's days by default
    assert second.startswith("audit: ") and " s CPU; process: " in second
    missing = subprocess.run([*script, "--warehouse", str(tmp_path / "none.duckdb")], capture_output=True, text=True,
                             cwd=REPO, check=False)
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "none.duckdb" in missing.stderr


def test_cold_cli_targets_are_the_medians_against_issue_25s_limits():
    from bench.run import cold_cli_targets

    def stage(wall, first_line):
        return {"wall": {"median": wall}, "first_line": {"median": first_line}}

    rows = cold_cli_targets({"stages": {"audit": stage(4.21, 0.41), "config_error": stage(1.2, 1.1)}})
    assert [(r["measured"], r["goal"], r["status"]) for r in rows] == [
        ("4.21 s", "< 5 s", "met"), ("0.41 s", "< 1 s", "met"), ("1.20 s", "< 1 s", "MISSED")]
