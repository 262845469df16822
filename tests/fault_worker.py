"""A pipeline run for fault-injection tests: ingest, audit, publish, announcing each stage on stdout.

Run as `python -m tests.fault_worker CONFIG OUT_DIR`; tests kill it with SIGKILL mid-stage. It calls
the flows' task functions directly (`.fn`), so what is killed is our code, not a Prefect server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from audits.config import load_config
from flows.tasks import audit, data_days, ingest, publish


def main(config_path: str, out_dir: str) -> None:
    config = load_config(Path(config_path))
    print("stage ingest", flush=True)
    quality = ingest.fn(config)
    end = data_days.fn(config)[1]
    start = end.replace(day=1)
    print("stage audit", flush=True)
    result = audit.fn(config, start, end, scope="faults", data_quality=quality)
    print("stage publish", flush=True)
    publish.fn(config, result, Path(out_dir))
    print("stage done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
