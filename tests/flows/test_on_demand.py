"""The on-demand flow: period, attributes, segments, filters and thresholds as typed parameters."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest
from prefect.utilities.callables import parameter_schema

from audits.errors import ConfigError
from audits.findings import AuditResult
from audits.settings import SETTINGS
from flows.on_demand import on_demand_audit
from flows.pipeline import Thresholds


def test_thresholds_become_config_overrides_only_when_set():
    assert Thresholds().overrides() == {}
    assert Thresholds(fdr=0.01, min_group_customers=20, max_discount_pct=0.3).overrides() == {
        "thresholds.fdr": 0.01, "thresholds.min_group_customers": 20, "policy.max_discount_pct": 0.3}


def test_parameters_are_typed_for_the_ui_form():
    schema = parameter_schema(on_demand_audit.fn).model_dump()
    properties, definitions = schema["properties"], schema["definitions"]
    assert schema["required"] == ["config_path"]
    assert {"format": "date", "type": "string"} in properties["period_start"]["anyOf"]
    assert {"items": {"type": "string"}, "type": "array"} in properties["attributes"]["anyOf"]
    assert {"additionalProperties": {"type": "string"}, "type": "object"} in properties["filters"]["anyOf"]
    assert set(definitions["Thresholds"]["properties"]) == {  # every thresholds.* setting, and the policy limit
        *(s.name for s in SETTINGS if s.key.startswith("thresholds.")), "max_discount_pct"}
    assert definitions["ScaleOut"]["properties"]["executor"]["enum"] == ["local", "dask"]
    assert all(p.get("description") for p in properties.values())  # every field of the form is explained


def test_on_demand_audit_applies_period_attributes_filters_and_thresholds(prefect_harness, workspace, tmp_path):
    config_path = workspace()
    out = tmp_path / "question"
    report = on_demand_audit(
        config_path=str(config_path), period_start=dt.date(2026, 9, 1), period_end=dt.date(2026, 9, 10),
        attributes=["gender"], segment_by=[], filters={"channel": "online"},
        thresholds=Thresholds(fdr=0.01, max_discount_pct=0.3), ingest_first=True, out_dir=str(out))
    assert Path(report) == out / "report.html" and Path(report).exists()
    result = AuditResult.read(out / "findings.json")

    with duckdb.connect(str(config_path.parent / "warehouse.duckdb"), read_only=True) as con:
        expected_lines = con.execute(
            "select count(*) from transactions where channel = 'online' "
            "and timestamp >= '2026-09-01' and timestamp < '2026-09-11'").fetchone()[0]
    assert result.run.transactions == expected_lines > 0
    assert (result.run.period_start, result.run.period_end, result.run.scope) == ("2026-09-01", "2026-09-10", "on-demand")
    assert result.method["filters"] == {"channel": "online"}
    assert result.method["attributes"] == ["gender"] and result.method["segment_by"] == []
    assert result.method["thresholds"]["fdr"] == 0.01 and result.method["thresholds"]["max_discount_pct"] == 0.3
    disparity = [f for f in result.findings if f.attribute is not None]
    assert disparity and {f.attribute for f in disparity} <= {"gender", "gender & age_band", "tenure"}
    assert all(f.segment is None for f in disparity)


def test_a_reversed_period_is_a_config_error(prefect_harness, workspace):
    with pytest.raises(ConfigError, match="after period_end"):
        on_demand_audit(config_path=str(workspace()), period_start=dt.date(2026, 9, 10),
                        period_end=dt.date(2026, 9, 1))


@pytest.mark.parametrize(("flow_name", "body_name"), [("on_demand", "on_demand"), ("nightly", "nightly")])
def test_each_flow_takes_its_bodys_parameters_and_their_docs(flow_name, body_name):
    """The Prefect flows take their parameters from their body (flows/pipeline.py, which the CLI also calls
    without Prefect): the same names, types and defaults, all by keyword, and each described in the schema the
    UI's form and the deployments read."""
    import importlib
    import inspect

    from flows import pipeline

    flow = getattr(importlib.import_module(f"flows.{flow_name}"), {"on_demand": "on_demand_audit",
                                                                   "nightly": "nightly_audit"}[flow_name])
    declared = inspect.signature(flow.fn).parameters
    body = inspect.signature(getattr(pipeline, body_name), eval_str=True).parameters
    assert list(declared) == [name for name in body if name not in ("run", "askers")]
    for name, parameter in declared.items():
        assert (parameter.annotation, parameter.default, parameter.kind) == (
            body[name].annotation, body[name].default, inspect.Parameter.KEYWORD_ONLY), name
    schema = flow.parameters.model_dump()["properties"]
    assert list(schema) == list(declared)
    assert all(schema[name].get("description") for name in declared), schema


def test_a_flow_runs_days_and_window_are_checked_like_the_cli_options():
    """What the UI's form sends is checked before anything is read: a huge value overflowed the dates."""
    from flows.pipeline import DIRECT, nightly, on_demand

    with pytest.raises(ConfigError, match=r"parameter 'period_end' must be a date written YYYY-MM-DD, between 1900 "
                                          r"and 2100, got 9999-12-31"):
        on_demand("no-such.toml", period_end=dt.date(9999, 12, 31), run=DIRECT)
    with pytest.raises(ConfigError, match=r"parameter 'window_days' must be between 1 and 3660, got 99999999999"):
        nightly("no-such.toml", window_days=99_999_999_999, run=DIRECT)
