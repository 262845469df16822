"""A Prefect server with its UI, as a child of `priceparity serve`.

`prefect server start` runs the API, the UI and the server's services (the scheduler that creates the
nightly runs) in one process. It is started in its own session (Ctrl-C reaches `serve`, which pauses its
schedules through the API before stopping the server), logs to a file (never to our stdout/stderr: nothing
that outlives us can hold them), and gets SIGTERM when `serve` ends, however it ends (PR_SET_PDEATHSIG).
The database is Prefect's (PREFECT_HOME, by default ~/.prefect/prefect.db), so runs are kept across restarts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from audits.errors import ConfigError, InputError, one_line
from flows.processes import die_with_this_process

# A first start on a new machine creates and migrates the database: Prefect's own default wait (20 s) is too
# short there (seen: `make demo` timing out on a fresh machine with the temporary server).
STARTUP_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 20.0
PORT_IN_USE = (
    "--port {port}: {host}:{port} is already in use; choose another --port, or set PREFECT_API_URL to the "
    "Prefect server listening there and drop --ui"
)
DID_NOT_START = "the Prefect server did not start ({reason}); its log: {log}"


@dataclass(frozen=True)
class PrefectServer:
    url: str  # the UI
    log: Path

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def prefect_home() -> Path:
    """Prefect's home folder (its database and our server's log), without importing Prefect."""
    return Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()


@contextmanager
def prefect_server(*, host: str, port: int) -> Iterator[PrefectServer]:
    """Start `prefect server start` on host:port, wait until it answers, stop it on exit."""
    with socket.socket() as probe:  # Prefect would only say so in its log
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(PORT_IN_USE.format(host=host, port=port)) from err
    server = PrefectServer(url=f"http://{host}:{port}", log=prefect_home() / "priceparity-server.log")
    server.log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_API_URL": server.api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_UI_ENABLED": "true", "PYTHONUNBUFFERED": "1"}  # the log as it happens
    with server.log.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            preexec_fn=die_with_this_process())
    try:
        _wait_until_healthy(server, process)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_healthy(server: PrefectServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            lines = server.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            reason = one_line(lines[-1], limit=200) if lines else f"exit code {process.returncode}"
            raise InputError(DID_NOT_START.format(reason=reason, log=server.log))
        try:
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise InputError(DID_NOT_START.format(reason=f"no answer within {STARTUP_TIMEOUT_SECONDS:.0f} s",
                                                  log=server.log))
        time.sleep(0.5)
