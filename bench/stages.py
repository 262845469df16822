"""One bench stage, run in its own process: `python bench/stages.py STAGE JOB.json RESULT.json`.

The stages call the library directly (audits.config.parse_config, audits.warehouse.open_warehouse,
audits.ingest.ingest_all, audits.runner.run_audit, reports.render.render_report), not the Prefect
flows, so the seconds measure our code and not the orchestrator. JOB.json says what to run on
(written by bench/run.py); RESULT.json receives the phases (wall s, CPU s, peak RSS, DuckDB spill)
and what the stage produced.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # `bench` itself; audits etc. are installed

from bench.measure import Sampler, peak_rss_mb  # noqa: E402

STAGES = ("generate", "ingest", "audit", "audit_warm", "report", "floor", "naive", "pyfixest", "engine_cr1",
          "nightly_flow")
UNKNOWN_STAGE = "unknown stage {stage!r}; choose one of {choices}"


def main(argv: list[str]) -> int:
    stage, job_path, result_path = argv
    if stage not in STAGES:
        print(UNKNOWN_STAGE.format(stage=stage, choices=", ".join(STAGES)), file=sys.stderr)
        return 2
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    spill_dir = Path(job["warehouse_path"] + ".tmp") if job.get("warehouse_path") else None
    sampler = Sampler(spill_dir=spill_dir).start()
    started = time.monotonic()
    produced = _RUNNERS[stage](job, sampler)
    sampler.stop()
    result = {
        "stage": stage,
        "wall_s": time.monotonic() - started,
        "peak_rss_mb": peak_rss_mb(),
        "phases": {p.name: {"wall_s": p.wall_s, "cpu_s": p.cpu_s, "peak_rss_mb": p.peak_rss_mb,
                            "own_peak_rss_mb": p.own_peak_rss_mb,
                            "peak_spill_mb": p.peak_spill_mb} for p in sampler.phases},
        **produced,
    }
    Path(result_path).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


def _config(job: dict[str, Any]):
    from audits.config import parse_config

    return parse_config(job["config"], file="bench config")


def _open(config, *, read_only: bool = False):
    from audits.warehouse import open_warehouse

    return open_warehouse(config.warehouse_path, read_only=read_only, memory_limit=config.memory_limit,
                          threads=config.threads, lock_timeout_seconds=config.lock_timeout_seconds)


def _period(job: dict[str, Any]) -> tuple[dt.date, dt.date]:
    """The job's first and last day audited."""
    return dt.date.fromisoformat(job["period_start"]), dt.date.fromisoformat(job["period_end"])


def _duckdb_settings(con) -> dict[str, Any]:
    """The limits DuckDB actually applied (the bench checks that memory_limit was honoured)."""
    names = ("memory_limit", "threads", "temp_directory", "max_temp_directory_size")
    rows = con.execute("select name, value from duckdb_settings() where list_contains($n, name)",
                       {"n": list(names)}).fetchall()
    return dict(rows)


def _generate(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    from bench.market import generate_market

    with sampler.phase("generate"):
        market = generate_market(Path(job["data_dir"]), job["label"], job["rows"])
    return {"market": market.__dict__}


def _ingest(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """ingest_all, with Great Expectations timed apart: validate_transactions is wrapped, not changed."""
    import audits.validate as validate_module
    from audits import ingest as ingest_module

    config = _config(job)
    validate_walls: list[tuple[float, float]] = []
    original = validate_module.validate_transactions

    def timed_validate(*args: Any, **kwargs: Any) -> Any:
        with sampler.phase("validate") as phase:
            result = original(*args, **kwargs)
        validate_walls.append((phase.wall_s, phase.cpu_s))
        return result

    validate_module.validate_transactions = timed_validate
    if hasattr(ingest_module, "validate_transactions"):  # in case it is ever imported at module level
        ingest_module.validate_transactions = timed_validate
    messages: list[tuple[float, str]] = []
    clock = time.monotonic()
    with sampler.phase("ingest_total"):
        with _open(config) as con:
            settings = _duckdb_settings(con)
            batches = ingest_module.ingest_all(con, config, progress=lambda m: messages.append((time.monotonic() - clock, m)))
            rows = con.execute("select count(*) from transactions").fetchall()[0][0]
    total = next(p for p in sampler.phases if p.name == "ingest_total")
    validate_s = sum(w for w, _ in validate_walls)
    return {
        "duckdb": settings,
        "rows_in_warehouse": rows,
        "rows_read": sum(b.rows_read for b in batches if b.source != "customers"),
        "batches": [{"source": b.source, "rows_read": b.rows_read, "rows_loaded": b.rows_loaded,
                     "rows_duplicate": b.rows_duplicate, "rows_quarantined": b.rows_quarantined,
                     "seconds": b.seconds, "status": b.status} for b in batches],
        "ingest_without_validate_s": total.wall_s - validate_s,
        "ingest_without_validate_cpu_s": total.cpu_s - sum(c for _, c in validate_walls),
        "progress": messages,
    }


def _audit(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """run_audit over the job's period, then the run-over-run comparison the nightly flow does."""
    return audit_windows({**job, "windows": [job]}, sampler)[0]


def _audit_warm(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """The audit stage as a process that stays loaded would run it: what the audit imports on first use
    (numba's compiled loops, scipy.stats for Benjamini-Hochberg) loaded before the clock, as pyfixest's
    import is for its stage; then the audit twice over the job's period, the second one timed (phase
    `audit_warm`; the first, `audit`, also warms DuckDB's and the OS's caches)."""
    import scipy.stats  # noqa: F401

    from audits import line_sums

    line_sums.compile_kernels()
    audit_windows({**job, "windows": [job]}, sampler, phase="audit_first")
    return audit_windows({**job, "windows": [job]}, sampler, phase="audit_warm")[0]


def audit_windows(job: dict[str, Any], sampler: Sampler, *, phase: str = "audit") -> list[dict[str, Any]]:
    """run_audits over the job's windows (as the nightly flow's audit task does), then each one's
    run-over-run comparison; each window's findings.json is written, and a summary returned per window.
    Also bench/audit_once.py's audit."""
    from audits.history import compare_with_previous
    from audits.ingest import data_quality_summary
    from audits.runner import run_audits

    config = _config(job)
    windows = {w["scope"]: (dt.date.fromisoformat(w["period_start"]), dt.date.fromisoformat(w["period_end"]))
               for w in job["windows"]}
    with sampler.phase(phase):
        with _open(config) as con:
            settings = _duckdb_settings(con)
            quality = data_quality_summary(con)
            results = run_audits(con, config, windows, data_quality=quality, then=compare_with_previous)
    out = []
    for window in job["windows"]:
        result = results[window["scope"]]
        result.write(Path(window["findings_path"]))
        start, end = windows[window["scope"]]
        out.append({
            "duckdb": settings,
            "rows_audited": result.run.transactions,
            "period_days": (end - start).days + 1,
            "customers_audited": result.run.customers,
            "findings": len(result.findings),
            "flagged": len(result.flagged),
            "checks": [{"check": c.check, "status": c.status, "seconds": c.seconds, "n_tests": c.n_tests,
                        "reason": c.reason} for c in result.checks],
        })
    return out


def data_days(job: dict[str, Any]) -> tuple[dt.date, dt.date]:
    """The first and last day of the warehouse's transactions (bench/audit_once.py's default period)."""
    with _open(_config(job), read_only=True) as con:
        first, last = con.execute("select min(timestamp)::date, max(timestamp)::date from transactions").fetchone()
    return first, last


def _report(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """findings.json -> report.html, and the run remembered for the next comparison."""
    from audits.findings import AuditResult
    from audits.history import record_run
    from reports.render import index_entry, render_report

    config = _config(job)
    with sampler.phase("report"):
        result = AuditResult.read(Path(job["findings_path"]))
        report = render_report(result, Path(job["report_dir"]))
        with _open(config) as con:
            record_run(con, result, index=index_entry(result))
    return {"report_bytes": report.stat().st_size, "rows_audited": result.run.transactions}


def _floor(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    from bench.references import run_floor

    config, (start, end) = _config(job), _period(job)
    with _open(config, read_only=True) as con:
        settings = _duckdb_settings(con)
        with sampler.phase("floor"):
            figures = run_floor(con, config, start=start, end=end)
    return {"duckdb": settings, "figures": figures, "rows": sum(f["lines"] for f in figures if f["grouping"] ==
                                                                 config.attributes[0] and not f["segment"])}


def _naive(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    from bench.references import load_naive, run_naive

    config = _config(job)
    with sampler.phase("naive_load"):
        tx, customers = load_naive(job["landing_glob"], job["customers_file"], config)
    with sampler.phase("naive_compute"):
        figures = run_naive(tx, customers, config)
    return {"figures": figures, "rows": len(tx)}


def _pyfixest(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """The careful analyst's regressions (bench/pyfixest_reference.py): pyfixest imported before the clock,
    as the audit stage's modules are; then the lines read from the warehouse and every check's models."""
    clock = time.monotonic()
    import pyfixest

    pyfixest.feols  # noqa: B018  (pyfixest imports its modules on first use)

    from bench.pyfixest_reference import load_lines, run_pyfixest
    import_s = time.monotonic() - clock

    config, (start, end) = _config(job), _period(job)
    with _open(config, read_only=True) as con:
        settings = _duckdb_settings(con)
        with sampler.phase("pyfixest_load"):
            frame = load_lines(con, config, start=start, end=end)
    checks = run_pyfixest(frame, config, phase=sampler.phase)
    return {"duckdb": settings, "import_s": import_s, "rows": len(frame), "checks": checks}


def _engine_cr1(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """The audit's disparity engine with plain CR1 errors (leverage_adjusted=False) over the job's period,
    every test's beta and standard error: what pyfixest's CRV1 is compared with."""
    from audits.runner import build_audit_lines, code_audit_lines, run_disparity
    from bench.pyfixest_reference import CHECKS

    config, (start, end) = _config(job), _period(job)
    tests = []
    with _open(config, read_only=True) as con, sampler.phase("engine_cr1"):
        build_audit_lines(con, config, period_start=start, period_end=end, filters={})
        coding = code_audit_lines(con, config)
        for check in (c for c in config.checks if c in CHECKS):  # the checks pyfixest fits
            for t in run_disparity(con, check, config, coding, leverage_adjusted=False):
                if t.difference is None:
                    continue
                segment = f"{t.dimension.segment_column}={t.segment_value}" if t.dimension.segment_column else ""
                tests.append({"check": check, "grouping": t.dimension.attribute, "segment": segment, "group": t.group,
                              "beta": t.difference.beta, "se": t.difference.se,
                              "n_clusters": t.difference.n_clusters})
    return {"tests": tests}


def _nightly_flow(job: dict[str, Any], sampler: Sampler) -> dict[str, Any]:
    """What the nightly flow (flows/nightly.py) does, in one process as the flow runs its tasks, without
    Prefect: the ingest, then the windows' audits (`job["windows"]`: the rolling window, the month to date)
    in one call of run_audits, as the flow's audit task makes it, then each one's report in order. The
    stages' own code; `parts` gives each one's seconds, and `audits and reports` the span from the audits'
    start to the last report."""
    parts: dict[str, float] = {}
    clock = time.monotonic()
    _ingest(job, sampler)
    parts["ingest"] = time.monotonic() - clock

    clock = time.monotonic()
    audit_windows(job, sampler)
    parts["audits"] = time.monotonic() - clock
    for window in job["windows"]:
        started = time.monotonic()
        _report({**job, **window}, sampler)
        parts[f"report {window['scope']}"] = time.monotonic() - started
    parts["audits and reports"] = time.monotonic() - clock
    return {"parts": parts}


_RUNNERS: dict[str, Callable[[dict[str, Any], Sampler], dict[str, Any]]] = {
    "generate": _generate, "ingest": _ingest, "audit": _audit, "audit_warm": _audit_warm, "report": _report,
    "floor": _floor, "naive": _naive,
    "pyfixest": _pyfixest, "engine_cr1": _engine_cr1, "nightly_flow": _nightly_flow,
}

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
