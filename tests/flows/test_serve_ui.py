"""`priceparity serve --ui`: a Prefect server with its UI and the deployments against it, in one command.

One `serve --ui` for the module (the server takes 10-20 s to start): the printed UI answers, the printed
command starts an on-demand run that completes with its artifact, the server schedules the nightly runs, and
a SIGKILLed `serve` takes its server with it. Its own Prefect home, so no other test's runs are in the way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.flows.conftest import PRICEPARITY, direct_env, filled_copy

pytestmark = pytest.mark.slow  # serve starts a Prefect server and flow-run processes: 20-40 s

STARTUP_SECONDS = 240


@dataclass
class Served:
    process: subprocess.Popen
    config: Path
    home: Path
    lines: list[str] = field(default_factory=list)

    def line(self, prefix: str) -> str:
        return next(line.removeprefix(prefix) for line in self.lines if line.startswith(prefix))

    @property
    def api_url(self) -> str:
        return re.search(r"PREFECT_API_URL=(\S+)", self.line("on-demand audit: ")).group(1)

    def api(self, path: str, body: dict | None = None):
        request = urllib.request.Request(self.api_url + path, data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, market, filled_warehouse) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve-ui")
    config = filled_copy(folder, market, filled_warehouse)
    process = subprocess.Popen(
        [str(PRICEPARITY), "serve", "--ui", "--port", str(_free_port()), "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=direct_env(PREFECT_HOME=str(folder / "prefect-home")))
    served = Served(process, config, folder / "prefect-home")
    ready = threading.Event()

    def read() -> None:
        for line in process.stdout:
            served.lines.append(line.rstrip("\n"))
            if line.startswith("on-demand audit: "):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(STARTUP_SECONDS)
    try:
        assert ready.is_set(), "\n".join(served.lines)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C, how a person stops it
            process.wait(timeout=60)
        reader.join(timeout=10)
        process.stdout.close()


def test_the_printed_ui_answers_and_the_printed_command_runs_an_on_demand_audit(served):
    ui = served.line("Prefect UI: ")
    with urllib.request.urlopen(ui, timeout=30) as response:
        assert response.status == 200 and "<html" in response.read().decode().lower()

    command = served.line("on-demand audit: ")
    # as printed, from a shell that knows nothing of the server
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    [run_id] = re.findall(r"UUID: ([0-9a-f-]{36})", done.stdout)

    deadline = time.monotonic() + 300
    while (run := served.api(f"/flow_runs/{run_id}"))["state"]["type"] not in ("COMPLETED", "FAILED", "CRASHED"):
        assert time.monotonic() < deadline, run["state"]
        time.sleep(1)
    assert run["state"]["type"] == "COMPLETED", "\n".join(served.lines)
    [artifact] = served.api("/artifacts/filter", {"artifacts": {
        "key": {"any_": ["on-demand-audit"]}, "flow_run_id": {"any_": [run_id]}}})
    [report] = re.findall(r"`([^`]+/report\.html)`", artifact["data"])
    assert Path(report).parent.parent == served.config.parent / "reports" / "on-demand"
    assert json.loads((Path(report).parent / "findings.json").read_text())["run"]["scope"] == "on-demand"
    assert not any("nanobind" in line or "Traceback" in line for line in served.lines)


def test_the_server_schedules_the_nightly_runs(served):
    log = served.home / "priceparity-server.log"
    deadline = time.monotonic() + 60  # the scheduler looks at new deployments every 5 s
    while True:
        runs = served.api("/flow_runs/filter", {"flows": {"name": {"any_": ["nightly_audit"]}},
                                                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}})
        if runs or time.monotonic() > deadline or "Traceback" in log.read_text(errors="replace"):  # the scheduler failed
            break
        time.sleep(1)
    assert runs and all(run["expected_start_time"].endswith("T02:00:00Z") for run in runs)


def test_a_killed_serve_takes_its_prefect_server_and_its_flow_runs_with_it(served):
    """SIGKILL while a flow run of a deployment is auditing: its process (started by Prefect's runner), the
    Prefect server and anything else `serve` started end with it."""
    auditing = sum("audit on-demand" in line and line.endswith("...") for line in served.lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    subprocess.run(["bash", "-c", served.line("on-demand audit: ")], capture_output=True, env=env, timeout=120,
                   check=True)
    deadline = time.monotonic() + 120
    while sum("audit on-demand" in line and line.endswith("...") for line in served.lines) == auditing:
        assert time.monotonic() < deadline, "\n".join(served.lines)
        time.sleep(0.2)
    children = psutil.Process(served.process.pid).children(recursive=True)
    commands = [c.cmdline() for c in children]
    assert ["server", "start"] in [c[-6:-4] for c in commands] and ["-m", "prefect.engine"] in [c[-2:] for c in commands]
    os.kill(served.process.pid, signal.SIGKILL)
    served.process.wait(timeout=10)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], [c.cmdline() for c in alive]
