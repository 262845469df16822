"""Scale-out: pass 2 split into customer partitions (Parquet in, sums out) gives the single-process findings.

The sums of each partition are computed apart and added up, so they differ from one pass over all
customers only in the order floating-point numbers were added: the findings are compared exactly on
everything but floats, and floats to 1e-9 relative.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from audits.config import load_config
from audits.errors import ConfigError
from audits.findings import AuditResult, DataQuality
import numpy as np

from audits.contrasts import add_sums
from audits.partitioned import export_partitions, partition_sums_from
from audits.catalogue import DISPARITY_CHECKS as METRICS
from audits.runner import in_process_contrast, run_audit
from audits.warehouse import open_warehouse
from flows.dask_contrast import ScaleOut
from flows.on_demand import on_demand_audit
from tests.flows.conftest import filled_copy

RELATIVE = 1e-9


def _same_number(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=RELATIVE, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return a == b


def assert_same_sums(single: dict[str, Any], merged: dict[str, Any]) -> None:
    assert single.keys() == merged.keys()
    for name in single:
        np.testing.assert_allclose(merged[name], single[name], rtol=RELATIVE, atol=1e-12, err_msg=name)


def assert_same_findings(a: AuditResult, b: AuditResult) -> None:
    """Same findings, floats equal to rounding and everything else exactly (status aside).

    Compared by key, not position: groups without overlap are appended in the order DuckDB's parallel
    aggregate yields them (audits/disparity.py), which varies from run to run even in one process.
    """
    left, right = {f.key: f for f in a.findings}, {f.key: f for f in b.findings}
    assert len(left) == len(a.findings) and left.keys() == right.keys()
    for key, x in left.items():
        y = right[key]
        for name, value in x.__dict__.items():
            if name != "status":
                assert _same_number(value, y.__dict__[name]), (key, name, value, y.__dict__[name])
    assert [(c.check, c.status, c.n_tests) for c in a.checks] == [(c.check, c.status, c.n_tests) for c in b.checks]


@pytest.fixture(scope="module")
def filled_config(market, filled_warehouse, tmp_path_factory) -> Path:
    """A config whose warehouse already holds the shared market."""
    return filled_copy(tmp_path_factory.mktemp("scale-out"), market, filled_warehouse)


def test_partitions_add_up_to_one_pass_over_all_customers(filled_config, tmp_path):
    config = load_config(filled_config)
    compared = []

    def both(con, relation, state, partitions):
        single = in_process_contrast(con, relation, state, partitions)
        folder = export_partitions(con, relation, state, tmp_path / f"pass-{len(compared)}", partitions=3)
        merged: dict[str, Any] = {}
        for p in range(3):
            add_sums(merged, partition_sums_from(folder, partition=p))
        compared.append((single, merged))
        return single

    with open_warehouse(config.warehouse_path) as con:
        run_audit(con, config, period_start=dt.date(2026, 8, 1), period_end=dt.date(2026, 9, 14),
                  data_quality=DataQuality(passed=True), contrast=both)
    assert len(compared) >= len(METRICS)  # every disparity check went through pass 2
    for single, merged in compared:
        assert single
        assert_same_sums(single, merged)


def test_a_partition_is_a_disjoint_share_of_the_customers(filled_config, tmp_path):
    config = load_config(filled_config)
    shares = []

    def count(con, relation, state, partitions):
        whole = partition_sums_from(export_partitions(con, relation, state, tmp_path / "whole", partitions=1),
                                    partition=0)
        folder = export_partitions(con, relation, state, tmp_path / "parts", partitions=4)
        parts = [partition_sums_from(folder, partition=p) for p in range(4)]
        clusters = [name for name in whole if name.endswith(":n_clusters")]
        shares.append((sum(whole[n].sum() for n in clusters), [sum(part[n].sum() for n in clusters) for part in parts]))
        return whole

    with open_warehouse(config.warehouse_path) as con:
        run_audit(con, replace(config, checks=("price_gap",)),
                  period_start=dt.date(2026, 8, 1), period_end=dt.date(2026, 9, 14),
                  data_quality=DataQuality(passed=True), contrast=count)
    [(whole, parts)] = shares
    assert sum(parts) == whole and all(0 < part < whole for part in parts)


def test_missing_phase_two_inputs_name_the_scratch_folder(tmp_path):
    with pytest.raises(ConfigError, match="scratch_dir"):
        partition_sums_from(tmp_path, partition=0)


@pytest.fixture(scope="module")
def process_cluster() -> Iterator[str]:
    """A Dask cluster of two worker processes: what `--dask-address tcp://...` points at."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


def _task_run_names(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client.request("POST", "/task_runs/filter", json={
            "flow_runs": {"id": {"any_": [str(flow_run_id)]}}, "limit": 200})
    return [run["name"] for run in response.json()]


def test_dask_runs_give_the_single_process_findings(prefect_harness, filled_config, process_cluster, tmp_path):
    period = {"period_start": dt.date(2026, 8, 1), "period_end": dt.date(2026, 9, 14)}
    local = on_demand_audit(config_path=str(filled_config), out_dir=str(tmp_path / "local"), **period)
    remote_state = on_demand_audit(
        config_path=str(filled_config), out_dir=str(tmp_path / "cluster"), return_state=True,
        scale_out=ScaleOut(executor="dask", dask_address=process_cluster, scratch_dir=str(tmp_path / "scratch")),
        **period)
    in_process_cluster = on_demand_audit(
        config_path=str(filled_config), out_dir=str(tmp_path / "local-cluster"),
        scale_out=ScaleOut(executor="dask", dask_workers=2, partitions=3), **period)

    single = AuditResult.read(Path(local).parent / "findings.json")
    assert single.flagged
    for report in (remote_state.result(), in_process_cluster):
        other = AuditResult.read(Path(report).parent / "findings.json")
        # a secondary estimate that failed is only a note on its check (and changes what is flagged)
        ran = [c for c in single.checks if c.status == "ok"]
        assert [c.reason for c in other.checks] == [c.reason for c in single.checks]
        assert [c.reason for c in ran] == [None] * len(ran) and len(ran) >= len(single.checks) - 1
        assert_same_findings(single, other)

    # One Prefect task per partition (2 workers: 2 partitions) for every pass 2 of every disparity check
    # (the main pass, and the intersections' excess pass where an intersection may be flagged), and for the
    # list-price comparison of the price gaps whose group also has a flagged discount finding.
    names = _task_run_names(remote_state.state_details.flow_run_id)
    disparity_ok = [c for c in single.checks if c.check in METRICS and c.status == "ok"]
    tasks = sum(name.startswith("contrast_partition_task") for name in names)
    assert tasks % 2 == 0 and 2 * len(disparity_ok) <= tasks <= 4 * len(disparity_ok) + 2
    assert list((tmp_path / "scratch").iterdir()) == []  # the run's Parquet files are gone


@pytest.mark.slow  # starts a Dask cluster and audits twice
def test_a_run_without_prefect_uses_plain_dask_and_gives_the_single_process_findings(filled_config, tmp_path):
    """Outside a Prefect run the partitions are plain Dask futures: no Prefect API is needed (here: none is
    reachable), and the findings are those of one process."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import DIRECT, on_demand

    period = {"period_start": dt.date(2026, 8, 1), "period_end": dt.date(2026, 9, 14)}
    local = on_demand(str(filled_config), out_dir=str(tmp_path / "local"), run=DIRECT, **period)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        on_dask = on_demand(str(filled_config), out_dir=str(tmp_path / "dask"), run=DIRECT,
                            scale_out=ScaleOut(executor="dask", dask_workers=2, partitions=3), **period)
    assert_same_findings(AuditResult.read(Path(local).parent / "findings.json"),
                         AuditResult.read(Path(on_dask).parent / "findings.json"))


def test_an_unreachable_scheduler_names_the_address(filled_config):
    import dask

    from flows.dask_contrast import contrast_executor

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
            pytest.raises(ConfigError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 .*--dask-address"):
        with contrast_executor(ScaleOut(executor="dask", dask_address="tcp://127.0.0.1:9"), load_config(filled_config)):
            pass


def test_an_unwritable_scratch_folder_names_the_option(filled_config, tmp_path):
    from flows.dask_contrast import contrast_executor

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    scale_out = ScaleOut(executor="dask", scratch_dir=str(blocker / "scratch"))
    with pytest.raises(ConfigError, match=r"a-file/scratch: cannot create the scratch folder .*--scratch-dir"):
        with contrast_executor(scale_out, load_config(filled_config)):
            pass
