"""The CLI's exit codes and its one-line errors, run as real processes where stderr matters."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audits.findings import AuditResult
from flows.cli import app
from tests.flows.conftest import PRICEPARITY, cli_env, direct_env

# What the CLI imports only where it is needed (seconds each): never for --help, an argument or config error,
# or (Prefect, Great Expectations) a direct audit that loads nothing new.
SLOW_IMPORTS = ("prefect", "great_expectations", "scipy", "numba")


def _run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(PRICEPARITY), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_a_bad_config_exits_2_with_one_line_and_no_traceback(tmp_path):
    config = tmp_path / "priceparity.toml"
    config.write_text('[thresholds]\nfdr = 0.05\nfdrr = 0.1\n', encoding="utf-8")
    done = _run("audit", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {config}: unknown key 'thresholds.fdrr' (did you mean 'thresholds.fdr'?); "
        "see docs/configuration.md for every key"]
    assert "Traceback" not in done.stdout + done.stderr


def test_a_data_quality_stop_exits_3_with_one_line(prefect_harness, bad_market_config):
    done = _run("nightly", "--config", str(bad_market_config), env=cli_env())
    assert done.returncode == 3, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and "8 of 20 rows" in line and "validation.max_bad_share" in line
    assert "Traceback" not in done.stdout + done.stderr


def test_audit_command_runs_the_on_demand_flow(workspace, tmp_path, monkeypatch):
    for name in ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL",
                 "DASK_LOGGING__DISTRIBUTED"):  # the CLI sets them with setdefault; keep them scoped
        monkeypatch.setenv(name, "CRITICAL")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no Prefect server: the flow's body runs here
    config_path = workspace()
    out = tmp_path / "grocery"
    done = CliRunner().invoke(app, [
        "audit", "--config", str(config_path), "--from", "2026-08-01", "--to", "2026-09-14",
        "--filter", "category=grocery", "--threshold", "min_price_gap=0.02", "--segment-by", "channel",
        "--out", str(out), "--fail-on-findings"])
    result = AuditResult.read(out / "findings.json")
    assert done.exit_code == (1 if result.flagged else 0), done.output
    assert f"report: {(out / 'report.html').resolve()}" in done.stdout
    assert result.method["filters"] == {"category": "grocery"}
    assert result.method["segment_by"] == ["channel"]
    assert result.method["thresholds"]["min_price_gap"] == 0.02


def test_bad_options_name_the_fix(tmp_path, workspace):
    config_path = str(workspace())
    runner = CliRunner()
    cases = {
        ("--filter", "category"): "--filter 'category': expected COLUMN=VALUE",
        ("--threshold", "fdr=2"): "--threshold fdr must be greater than 0 and at most 0.5, got 2.0",
        ("--threshold", "min_price_gap=-0.5"): "--threshold min_price_gap must be between 0 and 1, got -0.5",
        ("--dask-address", "tcp://x:8786"): "--dask-address 'tcp://x:8786' needs --executor dask",
        ("--from", "2026-09-02", "--to", "2026-09-01"): "--from 2026-09-02 is after --to 2026-09-01",
    }
    for args, message in cases.items():
        done = runner.invoke(app, ["audit", "--config", config_path, "--no-ingest", *args])
        assert done.exit_code == 2, (args, done.output)
        assert done.stderr.startswith(f"error: {message}") and len(done.stderr.splitlines()) == 1


def test_serve_registers_both_deployments_and_runs_what_the_ui_asks_for(prefect_harness, workspace, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    config = workspace()
    with config.open("a", encoding="utf-8") as toml:
        toml.write('\n[schedule]\nnightly_cron = "45 4 * * *"\ntimezone = "Europe/Berlin"\n')
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen([str(PRICEPARITY), "serve", "--config", str(config)], env=cli_env(),
                                  stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline, nightly, on_demand = time.monotonic() + 120, None, None
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    nightly = client.read_deployment_by_name("nightly_audit/nightly")
                    on_demand = client.read_deployment_by_name("on_demand_audit/on-demand")
                except ObjectNotFound:
                    pass
                # serve registers one deployment after the other: the second may not exist yet
                if nightly and on_demand and [s.schedule.cron for s in nightly.schedules] == ["45 4 * * *"] \
                        and on_demand.parameters["config_path"] == str(config.resolve()):
                    break
                time.sleep(1)
        assert server.poll() is None, log.read_text()
        assert nightly.schedules[0].schedule.timezone == "Europe/Berlin"
        assert on_demand.parameters["config_path"] == str(config.resolve())

        # What the UI's "Run" button does: a flow run of the deployment, executed by the serving process.
        out = tmp_path / "from-the-ui"
        run = run_deployment("on_demand_audit/on-demand", timeout=300, parameters={
            "period_start": "2026-09-01", "ingest_first": True, "out_dir": str(out),
            "thresholds": {"fdr": 0.01}, "filters": {"channel": "app"}})
        assert run.state.is_completed(), (run.state, log.read_text())
        result = AuditResult.read(out / "findings.json")
        assert result.method["filters"] == {"channel": "app"} and result.method["thresholds"]["fdr"] == 0.01
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C, how a person stops `priceparity serve`
        server.wait(timeout=60)


def _run_importtime(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, set[str], list[str]]:
    """The CLI as `python -X importtime -m flows.cli ARGS`: the run, the top-level packages it imported, and
    its stderr lines other than the import report."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "flows.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)
    report = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in report[1:]}
    return done, imported, [line for line in done.stderr.splitlines() if not line.startswith("import time:")]


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new), encoding="utf-8")


KNOWN = ("age_band, category, channel, currency, customer_id, customer_since, discount_amount, discount_code, gender, "
         "line_total, list_price, product_id, quantity, quantity_band, region, tenure, timestamp, transaction_id, "
         "unit_price")


@pytest.mark.parametrize(("args", "edit", "message"), [
    (["--from", "2026-02-30"], None, "--from 2026-02-30: not a date (YYYY-MM-DD)"),
    (["--to", "14/09/2026"], None, "--to 14/09/2026: not a date (YYYY-MM-DD)"),
    (["--no-ingest", "--attribute", "colour"], None, f"--attribute colour: no column 'colour' in the warehouse; known: {KNOWN}"),
    # with an ingest first the column could come with the new rows: checked once they are in (nothing new here)
    (["--attribute", "colour"], None, f"--attribute colour: no column 'colour' in the warehouse; known: {KNOWN}"),
    (["--no-ingest", "--filter", "colour=red"], None, "--filter colour: no column 'colour' in the warehouse"),
    (["--no-ingest", "--segment-by", "Colour"], None, "--segment-by 'Colour': not a column name"),
    (["--no-ingest"], ('controls = ["channel"]', 'controls = ["chanel"]'),
     "priceparity.toml: config key 'audit.controls' names column 'chanel', which is not in the warehouse"),
    ([], ("landing/transactions.parquet", "landing/nowhere.parquet"),
     "landing/nowhere.parquet: no files match for source 'shop'; check the source's path"),
    (["--nope"], None, "No such option: --nope"),
])
def test_argument_and_config_errors_name_what_was_typed_before_anything_slow(filled_workspace, args, edit, message):
    config = filled_workspace
    if edit:
        _edit(config, *edit)
    done, imported, errors = _run_importtime("audit", "--config", str(config), *args, env=direct_env())
    assert done.returncode == 2, done.stderr
    [line] = errors
    assert line.startswith("error: ") and message in line
    assert "Traceback" not in done.stdout + done.stderr
    assert not imported & set(SLOW_IMPORTS), imported & set(SLOW_IMPORTS)


def test_help_imports_nothing_slow():
    done, imported, errors = _run_importtime("audit", "--help", env=direct_env())
    assert done.returncode == 0 and "--attribute" in done.stdout and errors == []
    assert not imported & set(SLOW_IMPORTS)


@pytest.mark.slow  # a real CLI process audits the demo market
def test_without_a_prefect_server_an_audit_runs_here_and_prints_only_its_own_lines(filled_workspace, tmp_path):
    out = tmp_path / "september"
    done, imported, errors = _run_importtime(
        "audit", "--config", str(filled_workspace), "--no-ingest", "--from", "2026-09-01", "--out", str(out),
        env=direct_env())
    assert done.returncode == 0, done.stderr
    assert errors == []  # nothing but our lines: no interpreter-shutdown report from duckdb, no Prefect
    assert "prefect" not in imported and "great_expectations" not in imported
    lines = done.stdout.splitlines()
    assert lines[0] == (f"on-demand audit with {filled_workspace}: 2026-09-01 to the newest data (--to), "
                        "attributes gender, age_band, region")
    assert lines[1] == ("audit on-demand 2026-09-01 to 2026-09-14 (up to the newest data, 2026-09-14: no end was "
                        "given (--to)) ...")
    result = AuditResult.read(out / "findings.json")
    assert re.fullmatch(rf"audit on-demand 2026-09-01 to 2026-09-14: {result.run.transactions:,} lines, "
                        rf"{len(result.findings)} tests, {len(result.flagged)} flagged in \d+\.\d s", lines[2])
    assert lines[-1] == f"report: {(out / 'report.html').resolve()}"
    assert (result.run.period_start, result.run.period_end) == ("2026-09-01", "2026-09-14")
    assert result.run.period_reason == "up to the newest data, 2026-09-14: no end was given (--to)"
    # the lines the consistency findings point to, published beside them (transaction ids, never customers)
    header = (out / "breaches.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith('"check","rule","transaction_id"') and "customer" not in header


def test_with_a_prefect_server_an_audit_is_a_flow_run_with_its_tasks_and_artifact(prefect_harness, filled_workspace,
                                                                                    tmp_path):
    from prefect.client.orchestration import get_client

    out = tmp_path / "recorded"
    done = _run("audit", "--config", str(filled_workspace), "--no-ingest", "--out", str(out), env=cli_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "recorded as a Prefect flow run at http://" in done.stdout.splitlines()[0]
    with get_client(sync_client=True) as client:
        runs = client.request("POST", "/flow_runs/filter", json={
            "flows": {"name": {"any_": ["on_demand_audit"]}}, "limit": 200}).json()
        [run] = [r for r in runs if r["parameters"].get("out_dir") == str(out)]
        assert run["state"]["type"] == "COMPLETED"
        deadline = time.monotonic() + 30  # task runs reach the API through events: they may trail the flow run
        while True:
            task_runs = client.request("POST", "/task_runs/filter", json={
                "flow_runs": {"id": {"any_": [run["id"]]}}}).json()
            names = sorted(t["name"].rsplit("-", 1)[0] for t in task_runs)
            if names == ["audit", "data_days", "publish"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        artifacts = client.request("POST", "/artifacts/filter", json={"artifacts": {
            "key": {"any_": ["on-demand-audit"]}, "flow_run_id": {"any_": [run["id"]]}}}).json()
        logs = client.request("POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    assert names == ["audit", "data_days", "publish"]
    # the progress lines are the run's log too (only Prefect's own terminal output is quieted)
    assert any(log["message"].startswith("audit on-demand ") and log["message"].endswith(" s") for log in logs)
    [artifact] = artifacts
    assert str(out / "report.html") in artifact["data"]


def test_ansi_escapes_in_a_csv_header_are_shown_escaped(tmp_path):
    (tmp_path / "tx.csv").write_text(
        "sold_at,\x1b[31mred\x1b[0m,product_id,quantity,unit_price\n2026-09-01 10:00:00,x,P1,1,9.5\n",
        encoding="utf-8")
    config = tmp_path / "priceparity.toml"
    config.write_text('[warehouse]\npath = "warehouse.duckdb"\n[[sources]]\nname = "shop"\nkind = "csv"\n'
                      'path = "tx.csv"\n[sources.columns]\ntimestamp = "sold_at"\ncustomer_id = "client"\n',
                      encoding="utf-8")
    done = _run("audit", "--config", str(config), env=direct_env())
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert "column 'client'" in line and "\\x1b[31mred\\x1b[0m" in line
    assert "\x1b" not in done.stdout + done.stderr
