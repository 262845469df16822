"""One audit of an existing warehouse in one process, timed: for an A/B of two code versions.

    python bench/audit_once.py --warehouse W --config C [--from YYYY-MM-DD] [--to YYYY-MM-DD] [--findings F]

C is a PriceParity TOML config or a bench job file (`/tmp/pp-bench/<size>/run/audit.job.json`), whose
config is taken; its warehouse is replaced by W. The period defaults to the warehouse's first and last day
of transactions. The audit is what the bench's audit stage runs (bench/stages.py: run_audits and the
run-over-run comparison); it prints that call's wall and CPU seconds, then the whole process's, so a
whole-process timer (`/usr/bin/time`, hyperfine) sees the same work. Run each version's tree with its own
`.venv/bin/python`, alternating, and compare medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import psutil

sys.path.append(str(Path(__file__).resolve().parent.parent))  # `bench` itself; audits etc. are installed

from bench.measure import Sampler, peak_rss_mb  # noqa: E402
from bench.stages import audit_windows, data_days  # noqa: E402

NO_WAREHOUSE = "--warehouse {path}: no such file; give the warehouse.duckdb of an earlier run"
BAD_CONFIG = "--config {path}: {reason}; give a PriceParity TOML config or a bench job file (audit.job.json)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--from", dest="start", type=dt.date.fromisoformat, default=None, help="first day audited")
    parser.add_argument("--to", dest="end", type=dt.date.fromisoformat, default=None, help="last day audited")
    parser.add_argument("--findings", type=Path, default=None, help="keep findings.json here (to compare versions)")
    args = parser.parse_args(argv)
    if not args.warehouse.is_file():
        print(NO_WAREHOUSE.format(path=args.warehouse), file=sys.stderr)
        return 2
    try:
        document = _config_document(args.config)
    except (OSError, ValueError, KeyError) as err:  # tomllib's and json's decode errors are ValueErrors
        print(BAD_CONFIG.format(path=args.config, reason=type(err).__name__), file=sys.stderr)
        return 2
    document.setdefault("warehouse", {})["path"] = str(args.warehouse.resolve())
    job = {"config": document}
    if args.start is None or args.end is None:
        first, last = data_days(job)
        args.start, args.end = args.start or first, args.end or last
    with tempfile.TemporaryDirectory() as scratch:
        findings = args.findings or Path(scratch) / "findings.json"
        sampler = Sampler().start()
        (summary,) = audit_windows({**job, "windows": [{
            "scope": "full", "period_start": args.start.isoformat(), "period_end": args.end.isoformat(),
            "findings_path": str(findings)}]}, sampler)
        sampler.stop()
    audit = next(p for p in sampler.phases if p.name == "audit")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    checks = summary["checks"]
    not_ok = [c["check"] for c in checks if c["status"] != "ok"]
    print(f"audit {args.start}..{args.end}: {summary['rows_audited']:,} lines, {len(checks) - len(not_ok)} of "
          f"{len(checks)} checks ok" + (f" (not ok: {', '.join(not_ok)})" if not_ok else ""))
    print(f"audit: {audit.wall_s:.2f} s wall, {audit.cpu_s:.2f} s CPU; process: "
          f"{time.time() - psutil.Process().create_time():.2f} s wall, {usage.ru_utime + usage.ru_stime:.2f} s CPU, "
          f"peak RSS {peak_rss_mb():.0f} MB")
    return 0


def _config_document(path: Path) -> dict:
    """The config document (what a TOML file holds) of a TOML config or of a bench job file."""
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))["config"]
    return tomllib.loads(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    sys.exit(main())
