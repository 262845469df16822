"""`priceparity` with a pause at one named point, for the kill tests.

The product has no test hooks: this script wraps the real functions at the points the tests kill the
process at (a stage of the flows, between the files of a publication, before and after its swap, inside an
ingest batch's transaction), prints `paused at POINT` on stderr when the run gets there, and waits to be
killed.

    python tests/flows/paused_cli.py POINT audit --config ... --out ...
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

PAUSED = "paused at {point}"


def _pause(point: str, name: str) -> None:
    if name == point:
        print(PAUSED.format(point=name), file=sys.stderr, flush=True)
        time.sleep(3600)


def _wrap(module: ModuleType, attribute: str, point: str, *, before: str | None = None, after: str | None = None
          ) -> None:
    original: Callable[..., Any] = getattr(module, attribute)

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            _pause(point, before)
        result = original(*args, **kwargs)
        if after:
            _pause(point, after)
        return result

    setattr(module, attribute, wrapped)


def main() -> None:
    point, arguments = sys.argv[1], sys.argv[2:]
    import reports.render
    from audits import ingest
    from flows import cli, publication, stages

    for stage in ("ingest", "data_days", "audit", "publish"):
        _wrap(stages, stage, point, before=stage)
    _wrap(reports.render, "render_report", point, before="publish_between_files")  # findings.json is written
    _wrap(publication, "_swap_in", point, before="publish_before_swap", after="publish_after_swap")
    # inside a batch's transaction: its rows replaced and inserted; then its records written, before COMMIT
    _wrap(ingest._Batch, "_upsert", point, after="ingest_after_upsert")
    _wrap(ingest, "record_expectations", point, after="ingest_before_commit")
    sys.argv = ["priceparity", *arguments]
    cli.main()


if __name__ == "__main__":
    main()
