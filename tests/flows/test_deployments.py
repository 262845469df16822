"""`priceparity serve`'s deployments: the nightly one on the configured cron, the on-demand one unscheduled."""

from __future__ import annotations

from pathlib import Path

import pytest

from audits.config import load_config
from audits.errors import ConfigError
from flows.dask_contrast import ScaleOut
from flows.deployments import build_deployments


def _config(tmp_path: Path, schedule: str = ""):
    path = tmp_path / "priceparity.toml"
    path.write_text('[warehouse]\npath = "warehouse.duckdb"\n' + schedule, encoding="utf-8")
    return load_config(path), path


def test_the_nightly_deployment_defaults_to_two_in_the_morning_utc(tmp_path):
    config, path = _config(tmp_path)
    nightly, on_demand = build_deployments(config, config_path=path)
    assert (nightly.name, nightly.flow_name) == ("nightly", "nightly_audit")
    assert (on_demand.name, on_demand.flow_name) == ("on-demand", "on_demand_audit")
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")
    assert on_demand.schedules in (None, [])
    assert nightly.concurrency_limit == 1
    for deployment in (nightly, on_demand):
        assert deployment.parameters["config_path"] == str(path)
        assert deployment.parameters["scale_out"]["executor"] == "local"


def test_the_schedule_and_scale_out_come_from_config_and_options(tmp_path):
    config, path = _config(tmp_path, '[schedule]\nnightly_cron = "30 3 * * 1-5"\ntimezone = "Europe/Paris"\n')
    nightly, on_demand = build_deployments(
        config, config_path=path, scale_out=ScaleOut(executor="dask", dask_address="tcp://scheduler:8786"))
    assert (nightly.schedules[0].schedule.cron, nightly.schedules[0].schedule.timezone) == (
        "30 3 * * 1-5", "Europe/Paris")
    assert on_demand.parameters["scale_out"]["dask_address"] == "tcp://scheduler:8786"


def test_a_bad_schedule_names_the_keys(tmp_path):
    config, path = _config(tmp_path, '[schedule]\nnightly_cron = "61 2 * * *"\n')  # five fields, minute 61
    with pytest.raises(ConfigError, match="schedule.nightly_cron.*schedule.timezone"):
        build_deployments(config, config_path=path)


@pytest.mark.parametrize(("schedule", "key"), [('nightly_cron = "61 2 * *"', "schedule.nightly_cron"),
                                               ('timezone = "Nowhere/City"', "schedule.timezone")])
def test_a_malformed_schedule_is_refused_with_the_config(tmp_path, schedule, key):
    with pytest.raises(ConfigError, match=key):
        _config(tmp_path, f"[schedule]\n{schedule}\n")


def test_deployments_register_with_a_prefect_server(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    config, path = _config(tmp_path, '[schedule]\nnightly_cron = "15 1 * * *"\n')
    for deployment in build_deployments(config, config_path=path):
        deployment.apply()
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("nightly_audit/nightly")
        on_demand = client.read_deployment_by_name("on_demand_audit/on-demand")
    assert [s.schedule.cron for s in nightly.schedules] == ["15 1 * * *"]
    assert on_demand.schedules == []
    assert on_demand.parameters["config_path"] == str(path)
    form = on_demand.parameter_openapi_schema["properties"]
    assert {"period_start", "period_end", "attributes", "segment_by", "filters", "thresholds"} <= set(form)
