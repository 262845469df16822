"""The CLI's exit codes and its one-line errors, run as real processes where stderr matters."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

from audits.findings import AuditResult
from flows.cli import app
from tests.flows.conftest import PRICEPARITY, cli_env


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


def test_audit_command_runs_the_on_demand_flow(prefect_harness, workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "CRITICAL")  # the CLI sets it with setdefault; keep it scoped
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


def test_the_nightly_command_starts_importing_great_expectations_before_its_flow(workspace):
    """Validating the night's rows would otherwise wait for GE's import (about 1.5 s) once Prefect's temporary
    server is up: the command starts it on a thread first. A fresh process, so that no test imported GE."""
    script = (
        "import sys, threading\n"
        "import flows.nightly\n"
        "from audits.ingest import GE_IMPORT_THREAD\n"
        "def flow(**kwargs):\n"
        "    importing = any(t.name == GE_IMPORT_THREAD for t in threading.enumerate())\n"
        "    print('great_expectations imported or importing:', 'great_expectations' in sys.modules or importing)\n"
        "    return {}\n"
        "flows.nightly.nightly_audit = flow\n"
        "from flows.cli import app\n"
        "app(['nightly', '--config', sys.argv[1]], standalone_mode=False)\n")
    done = subprocess.run([sys.executable, "-c", script, str(workspace())], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "great_expectations imported or importing: True" in done.stdout


def test_bad_options_name_the_fix(tmp_path, workspace):
    config_path = str(workspace())
    runner = CliRunner()
    cases = {
        ("--filter", "category"): "--filter 'category': expected COLUMN=VALUE",
        ("--threshold", "fdr=2"): "--threshold fdr: Input should be less than or equal to 1",
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
