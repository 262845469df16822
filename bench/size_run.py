"""One market size of the benchmark (bench/run.py): its first run, references and nightly runs, each stage in
its own process (bench/stages.py), summarised as the tables and ratios run.py prints."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.market import BenchMarket, cached_market, land_new_day, reset_landing
from bench.measure import ChildRun, run_child
from bench.pyfixest_reference import compare_with_engine, compare_with_findings
from bench.references import compare

BENCH_DIR = Path(__file__).resolve().parent
STAGES_SCRIPT = BENCH_DIR / "stages.py"
GIB = 1024 ** 3
# pyfixest runs up to this many lines: its CPU per model grows with the lines (0.13 s at 400k, 0.25 s at
# 1M, 636 models), so 10M would take about half an hour on an idle machine
PYFIXEST_MAX_ROWS = 1_000_000
PYFIXEST_MISSING = "not installed, skipped (`make bench` installs it: pip install -c constraints.txt -e '.[bench]')"
# A nightly run's stages: what the nightly flow does by default (the rolling window, then the month to date)
NIGHTLY_STAGES = ("nightly_ingest", "nightly_audit", "nightly_report", "nightly_mtd_audit", "nightly_mtd_report")
# The bench's new day is the 1st of a month, when the month to date is one day; on a month's last day it is
# up to 31 days, as long as the rolling window. That night is measured too, with the 31 days up to the new
# day standing in for the month to date: an audit's cost follows its lines, not the calendar.
LONGEST_MONTH_DAYS = 31

BENCH_AUDIT = {  # what flows/demo.toml audits
    "attributes": ["gender", "age_band", "region"],
    "intersections": [["gender", "age_band"]],
    "segment_by": ["category"],
    "controls": ["channel"],
}
SOURCE_COLUMNS = {  # canonical = column of the generated files (audits.sample.TRANSACTION_COLUMN_MAP)
    "transaction_id": "order_line_id", "timestamp": "sold_at", "customer_id": "client_ref", "product_id": "sku",
    "quantity": "qty", "unit_price": "paid_unit_price", "discount_code": "promo_code",
}



def bench_config(market: BenchMarket, work: Path, *, memory_limit: str, threads: int, window_days: int) -> dict[str, Any]:
    """The bench's config document (what a TOML file would hold), for audits.config.parse_config."""
    return {
        "warehouse": {"path": str(work / "warehouse.duckdb"), "memory_limit": memory_limit, "threads": threads},
        "output": {"dir": str(work / "reports")},
        "sources": [{"name": "shop", "kind": "parquet", "path": market.landing_glob, "columns": SOURCE_COLUMNS}],
        "customers": {"kind": "parquet", "path": market.customers_file, "columns": {"customer_id": "client_ref"}},
        "audit": {**BENCH_AUDIT, "window_days": window_days},
    }


class SizeRun:
    """Everything measured for one market size."""

    def __init__(self, label: str, rows: int, args: argparse.Namespace, *, memory_limit: str, naive: bool,
                 nightly: bool) -> None:
        self.label, self.rows, self.args = label, rows, args
        self.memory_limit, self.do_naive, self.do_nightly = memory_limit, naive, nightly
        self.root = args.data_dir / label
        self.work = self.root / "run"
        self.logs = self.work / "logs"
        self.runs: dict[str, ChildRun] = {}
        self.nightly_totals: list[float] = []  # every nightly run's total (stage processes), in order
        self.nightly_totals_with_month: list[float] = []  # the same with the month-to-date audit and report
        self.nightly_flow_totals: list[float] = []  # the same night's work in one process, as the flow runs it
        self.nightly_flow_late_totals: list[float] = []  # the same on a month's last day (month to date 31 days)

    def stage(self, name: str, stage: str, job: dict[str, Any]) -> ChildRun:
        """Run one stage process and keep what it measured under `name`."""
        job_path = self.work / f"{name}.job.json"
        job_path.write_text(json.dumps(job, indent=2, default=str) + "\n", encoding="utf-8")
        load_before = os.getloadavg()
        print(f"  {self.label} {name:<18} ...", end="", flush=True)
        run = run_child(name, [sys.executable, str(STAGES_SCRIPT), stage, str(job_path), str(self.work / f"{name}.result.json")],
                        result_path=self.work / f"{name}.result.json", log_path=self.logs / f"{name}.log",
                        timeout_s=self.args.stage_timeout)
        run.load_average = {"before": load_before, "after": os.getloadavg()}
        status = "" if run.status == "ok" else f" {run.status.upper()}: {run.error}"
        print(f" {run.process_wall_s:8.1f} s, peak RSS {run.process_peak_rss_mb:7.0f} MB{status}", flush=True)
        self.runs[name] = run
        return run

    def execute(self) -> dict[str, Any]:
        market = None if self.args.regenerate else cached_market(self.args.data_dir, self.label, self.rows)
        self.work.mkdir(parents=True, exist_ok=True)
        generated = market is None
        if generated:
            self.root.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
            run = self.stage("generate", "generate", {"data_dir": str(self.args.data_dir), "label": self.label,
                                                      "rows": self.rows})
            if run.status != "ok":
                return {"label": self.label, "error": run.error, "stages": self._runs_json()}
            market = BenchMarket(**run.result["market"])
        _fresh(self.work)
        self.logs.mkdir(parents=True, exist_ok=True)
        reset_landing(market)
        config = bench_config(market, self.work, memory_limit=self.memory_limit, threads=self.args.threads,
                              window_days=self.args.window_days)
        base = {"config": config, "warehouse_path": config["warehouse"]["path"]}
        full = {**base, "period_start": market.period_start, "period_end": market.period_end, "scope": "full",
                "findings_path": str(self.work / "full" / "findings.json"), "report_dir": str(self.work / "full")}
        print(f"{self.label}: {market.history_rows:,} lines, {market.customers:,} customers, "
              f"memory_limit {self.memory_limit}", flush=True)
        ok = self.stage("ingest", "ingest", base).status == "ok"
        ok = ok and self.stage("audit", "audit", full).status == "ok"
        ok = ok and self.stage("report", "report", full).status == "ok"
        skip = {s.strip() for s in self.args.skip.split(",") if s.strip()}
        if ok and "floor" not in skip:
            self.stage("floor", "floor", full)
        if self.do_naive and "naive" not in skip:
            self.stage("naive", "naive", {**base, "landing_glob": market.landing_glob,
                                          "customers_file": market.customers_file})
        if ok and self.rows <= PYFIXEST_MAX_ROWS and "pyfixest" not in skip:
            if importlib.util.find_spec("pyfixest") is None:
                print(f"  {self.label} pyfixest: {PYFIXEST_MISSING}", flush=True)
            else:
                self.stage("pyfixest", "pyfixest", full)
                self.stage("engine_cr1", "engine_cr1", full)
                self.stage("audit_warm", "audit_warm", {**full, "findings_path": str(self.work / "warm" / "findings.json")})
        if ok and self.do_nightly and "nightly" not in skip:
            land_new_day(market)
            try:
                day = dt.date.fromisoformat(market.new_day)
                nightly = {**base, "period_start": (day - dt.timedelta(days=self.args.window_days - 1)).isoformat(),
                           "period_end": day.isoformat(), "scope": f"rolling-{self.args.window_days}d",
                           "findings_path": str(self.work / "nightly" / "findings.json"),
                           "report_dir": str(self.work / "nightly")}
                # what the nightly flow (flows/nightly.py) audits besides the rolling window, by default
                month = {**nightly, "period_start": day.replace(day=1).isoformat(), "scope": "month-to-date",
                         "findings_path": str(self.work / "nightly-mtd" / "findings.json"),
                         "report_dir": str(self.work / "nightly-mtd")}
                late = {**month, "period_start": (day - dt.timedelta(days=LONGEST_MONTH_DAYS - 1)).isoformat(),
                        "findings_path": str(self.work / "nightly-mtd-late" / "findings.json"),
                        "report_dir": str(self.work / "nightly-mtd-late")}
                self.nightly_runs(Path(config["warehouse"]["path"]), base, nightly, month, late)
            finally:
                reset_landing(market)
        return self.summarise(market, generated=generated)

    def nightly_runs(self, warehouse: Path, ingest_job: dict[str, Any], audit_job: dict[str, Any],
                     month_job: dict[str, Any], late_month_job: dict[str, Any]) -> None:
        """The nightly run, --nightly-runs times, each on a copy of the warehouse as the first run left it: a
        total of a few seconds moves by up to a tenth from one run to the next. A run is what the nightly
        flow does by default: ingest of the new day, audit of the rolling window and its report, then audit
        of the month to date and its report (nightly_mtd_*). After them, on the same copy again, the
        whole night in one process, as the flow runs its tasks (nightly_flow), and that night as it would be
        on a month's last day, with `late_month_job` as the month to date (nightly_flow_late). The run whose
        rolling window (its first three stages) has the median total (the lower middle one of an even
        number) is kept as the nightly_* stages; every run's totals go to self.nightly_totals (rolling
        window), self.nightly_totals_with_month, self.nightly_flow_totals and self.nightly_flow_late_totals."""
        import shutil

        wal = warehouse.with_name(warehouse.name + ".wal")
        saved = {f: f.with_name(f.name + ".before-nightly") for f in (warehouse, wal) if f.exists()}
        for original, copy in saved.items():
            shutil.copyfile(original, copy)

        def restore() -> None:
            for original, copy in saved.items():
                shutil.copyfile(copy, original)
            if wal not in saved:
                wal.unlink(missing_ok=True)  # the last run's log, not the first run's state

        # the night in one process, after the stage processes: on the bench's new day (a 1st) and on a month's last
        one_process = (("nightly_flow", month_job), ("nightly_flow_late", late_month_job))
        every_stage = len(NIGHTLY_STAGES) + len(one_process)
        repeats: list[dict[str, ChildRun]] = []
        try:
            for attempt in range(max(1, self.args.nightly_runs)):
                if attempt:
                    restore()
                runs: dict[str, ChildRun] = {}
                for name, stage, job in (("nightly_ingest", "ingest", ingest_job), ("nightly_audit", "audit", audit_job),
                                         ("nightly_report", "report", audit_job),
                                         ("nightly_mtd_audit", "audit", month_job),
                                         ("nightly_mtd_report", "report", month_job)):
                    runs[name] = self.stage(name, stage, job)
                    if runs[name].status != "ok":
                        break
                for name, month in one_process:
                    if len(runs) < len(NIGHTLY_STAGES) or any(run.status != "ok" for run in runs.values()):
                        break
                    restore()  # the same night again, as one process
                    windows = [{key: job[key] for key in ("period_start", "period_end", "scope", "findings_path",
                                                          "report_dir")} for job in (audit_job, month)]
                    runs[name] = self.stage(name, "nightly_flow", {**ingest_job, "windows": windows})
                repeats.append(runs)
                if len(runs) < every_stage or any(run.status != "ok" for run in runs.values()):
                    break  # a failure is reported as it is, not measured again
        finally:
            restore()  # the warehouse as the first run left it, for whatever runs on it next (an A/B of a night)
            for copy in saved.values():
                copy.unlink(missing_ok=True)

        def rolling(runs: dict[str, ChildRun]) -> float:
            return sum(runs[name].process_wall_s for name in NIGHTLY_STAGES[:3])

        complete = [runs for runs in repeats
                    if len(runs) == every_stage and all(r.status == "ok" for r in runs.values())]
        self.nightly_totals = [rolling(runs) for runs in complete]
        self.nightly_totals_with_month = [sum(runs[name].process_wall_s for name in NIGHTLY_STAGES) for runs in complete]
        self.nightly_flow_totals = [runs["nightly_flow"].process_wall_s for runs in complete]
        self.nightly_flow_late_totals = [runs["nightly_flow_late"].process_wall_s for runs in complete]
        chosen = repeats[-1] if len(complete) < len(repeats) else \
            sorted(complete, key=rolling)[(len(complete) - 1) // 2]
        self.runs.update(chosen)

    def _runs_json(self) -> dict[str, Any]:
        out = {}
        for name, run in self.runs.items():
            data = asdict(run)
            if data["result"]:  # per figure and per test lists: only their comparisons are kept
                data["result"] = {k: v for k, v in data["result"].items() if k not in ("figures", "tests")}
                if isinstance(data["result"].get("checks"), dict):  # pyfixest's, per check
                    data["result"]["checks"] = {check: {k: v for k, v in fits.items() if k != "tests"}
                                                for check, fits in data["result"]["checks"].items()}
            out[name] = data
        return out

    def summarise(self, market: BenchMarket, *, generated: bool) -> dict[str, Any]:
        rows = market.history_rows
        table: list[dict[str, Any]] = []

        def result(name: str) -> dict[str, Any] | None:
            run = self.runs.get(name)
            return run.result if run and run.status == "ok" else None

        def row(label: str, wall: float | None, cpu: float | None, peak: float | None, n: int | None,
                note: str = "", key: str | None = None) -> None:
            table.append({"stage": label, "key": key or label, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak,
                          "rows": n, "rows_per_s": (n / wall if n and wall else None), "note": note})

        def failed(name: str, label: str) -> bool:
            run = self.runs.get(name)
            if run is None:
                return True
            if run.status != "ok":
                row(label, run.process_wall_s, run.process_cpu_s, run.process_peak_rss_mb, None,
                    f"{run.status}: {(run.error or '').splitlines()[0][:80]}", key=name)
                return True
            return False

        gen = self.runs.get("generate")
        if gen and gen.status == "ok":
            phase = gen.result["phases"]["generate"]
            row("generate market", phase["wall_s"], phase["cpu_s"], gen.process_peak_rss_mb,
                market.history_rows + market.new_day_rows, "audits.sample, 366 days", key="generate")
        elif not generated:
            table.append({"stage": "generate market", "key": "generate", "wall_s": None, "cpu_s": None,
                          "peak_rss_mb": None, "rows": None, "rows_per_s": None, "note": "cached"})

        def pipeline(prefix: str, label: str) -> dict[str, float] | None:
            """Rows for ingest, validate, audit, report of the first or nightly run; their totals."""
            totals = {"process_wall_s": 0.0, "wall_s": 0.0, "peak_rss_mb": 0.0}
            if not failed(f"{prefix}ingest", f"{label}ingest"):
                ingest = result(f"{prefix}ingest")
                phases = ingest["phases"]
                read = ingest["rows_read"]
                validate = phases.get("validate", {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss_mb": 0.0})
                row(f"{label}ingest", ingest["ingest_without_validate_s"], ingest["ingest_without_validate_cpu_s"],
                    phases["ingest_total"]["own_peak_rss_mb"], read,
                    f"DuckDB staging + upsert; {ingest['rows_in_warehouse']:,} rows in warehouse",
                    key=f"{prefix}ingest")
                row(f"{label}validate", validate["wall_s"], validate["cpu_s"], validate["peak_rss_mb"], read,
                    "Great Expectations on pandas chunks", key=f"{prefix}validate")
                run = self.runs[f"{prefix}ingest"]
                totals["process_wall_s"] += run.process_wall_s
                totals["wall_s"] += phases["ingest_total"]["wall_s"]
                totals["peak_rss_mb"] = max(totals["peak_rss_mb"], run.process_peak_rss_mb)
            else:
                return None
            for stage in ("audit", "report"):
                if failed(f"{prefix}{stage}", f"{label}{stage}"):
                    return None
                data, run = result(f"{prefix}{stage}"), self.runs[f"{prefix}{stage}"]
                phase = data["phases"][stage]
                note = ""
                if stage == "audit":
                    ok = sum(c["status"] == "ok" and not c["reason"] for c in data["checks"])
                    degraded = [c["check"] for c in data["checks"] if c["status"] == "ok" and c["reason"]]
                    note = f"{ok} of {len(data['checks'])} checks complete"
                    note += f"; DEGRADED {', '.join(degraded)}" if degraded else ""
                    errored = [c["check"] for c in data["checks"] if c["status"] == "errored"]
                    skipped = [c["check"] for c in data["checks"] if c["status"] == "skipped"]
                    note += f"; ERRORED {', '.join(errored)}" if errored else ""
                    note += f"; skipped {', '.join(skipped)}" if skipped else ""
                    note += f"; spilled {phase['peak_spill_mb']:.0f} MB" if phase["peak_spill_mb"] else ""
                row(f"{label}{stage}", phase["wall_s"], phase["cpu_s"], run.process_peak_rss_mb,
                    data["rows_audited"], note, key=f"{prefix}{stage}")
                totals["process_wall_s"] += run.process_wall_s
                totals["wall_s"] += phase["wall_s"]
                totals["peak_rss_mb"] = max(totals["peak_rss_mb"], run.process_peak_rss_mb)
            return totals

        first = pipeline("", "")
        if first:
            row("end to end", first["process_wall_s"], None, first["peak_rss_mb"], rows,
                f"stage processes incl. start-up; in-process {first['wall_s']:.1f} s", key="e2e")
        floor = result("floor")
        if not failed("floor", "floor (a)") and floor:
            phase = floor["phases"]["floor"]
            row("floor (a)", phase["wall_s"], phase["cpu_s"], self.runs["floor"].process_peak_rss_mb, floor["rows"],
                "one DuckDB query", key="floor")
        naive = result("naive")
        if "naive" in self.runs and not failed("naive", "naive (b)") and naive:
            load, compute = naive["phases"]["naive_load"], naive["phases"]["naive_compute"]
            row("naive (b)", load["wall_s"] + compute["wall_s"], load["cpu_s"] + compute["cpu_s"],
                self.runs["naive"].process_peak_rss_mb, naive["rows"],
                f"pandas: read {load['wall_s']:.1f} s + groupby {compute['wall_s']:.1f} s", key="naive")
        fixest = result("pyfixest")
        if "pyfixest" in self.runs and not failed("pyfixest", "pyfixest (c)") and fixest:
            phases = fixest["phases"]
            fits = fixest["checks"]
            row("pyfixest (c)", sum(p["wall_s"] for p in phases.values()), sum(p["cpu_s"] for p in phases.values()),
                self.runs["pyfixest"].process_peak_rss_mb, fixest["rows"],
                f"read {phases['pyfixest_load']['wall_s']:.1f} s + {sum(f['models'] for f in fits.values())} models: "
                + ", ".join(f"{check} {f['models']} in {f['seconds']:.0f} s" for check, f in fits.items()),
                key="pyfixest")
        warm = result("audit_warm")
        if "audit_warm" in self.runs and not failed("audit_warm", "audit, loaded") and warm:
            phase = warm["phases"]["audit_warm"]
            row("audit, loaded", phase["wall_s"], phase["cpu_s"], self.runs["audit_warm"].process_peak_rss_mb,
                warm["rows_audited"], "a second audit in a process with the libraries loaded (not a target: what a "
                "persistent worker would take)", key="audit_warm")
        nightly = pipeline("nightly_", "nightly ") if "nightly_ingest" in self.runs else None
        if nightly:  # the kept run is the one with the median rolling total: its total is that median
            _, spread = _median_of_runs(self.nightly_totals, nightly["process_wall_s"])
            row("nightly total", nightly["process_wall_s"], None, nightly["peak_rss_mb"], market.new_day_rows,
                f"+{market.new_day_rows:,} lines, audit of {self.args.window_days} days{spread}", key="nightly_e2e")
            self._whole_night(row, failed, result, nightly)

        by_key = {r["key"]: r for r in table}
        ratios: dict[str, Any] = {}
        audit = by_key.get("audit", {}).get("wall_s") if "audit" in by_key and not by_key["audit"]["note"].startswith(("failed", "timeout")) else None
        if audit and floor:
            ratios["audit_over_floor"] = audit / by_key["floor"]["wall_s"]
        if audit and naive:
            ratios["naive_over_audit"] = by_key["naive"]["wall_s"] / audit
            ratios["naive_groupby_only_over_audit"] = naive["phases"]["naive_compute"]["wall_s"] / audit
        if audit and fixest:
            ratios["pyfixest_over_audit"] = by_key["pyfixest"]["wall_s"] / audit
            ratios["pyfixest_cpu_over_audit_cpu"] = by_key["pyfixest"]["cpu_s"] / by_key["audit"]["cpu_s"]
            ratios["audit_rss_over_pyfixest_rss"] = by_key["audit"]["peak_rss_mb"] / by_key["pyfixest"]["peak_rss_mb"]
            ratios["pyfixest_rss_over_audit_rss"] = by_key["pyfixest"]["peak_rss_mb"] / by_key["audit"]["peak_rss_mb"]
            if warm:
                ratios["pyfixest_over_loaded_audit"] = by_key["pyfixest"]["wall_s"] / by_key["audit_warm"]["wall_s"]
        if first and nightly:
            ratios["nightly_over_first_run"] = nightly["process_wall_s"] / first["process_wall_s"]
            if "with_month_process_wall_s" in nightly:
                ratios["nightly_with_month_over_first_run"] = nightly["with_month_process_wall_s"] / first["process_wall_s"]
            if "flow_process_wall_s" in nightly:
                ratios["nightly_flow_over_first_run"] = nightly["flow_process_wall_s"] / first["process_wall_s"]
            if "flow_late_process_wall_s" in nightly:
                ratios["nightly_flow_month_end_over_first_run"] = (nightly["flow_late_process_wall_s"]
                                                                   / first["process_wall_s"])
        agreement = compare(floor["figures"], naive["figures"]) if floor and naive else None
        fixest_agreement = None
        if fixest:
            findings = json.loads(Path(self.work / "full" / "findings.json").read_text(encoding="utf-8"))["findings"]
            engine = result("engine_cr1")
            fixest_agreement = {"audit_price_gap": compare_with_findings(fixest["checks"], findings),
                                "engine_cr1": compare_with_engine(fixest["checks"], engine["tests"]) if engine else None}
        limits = {name: (self.runs[name].result or {}).get("duckdb", {}).get("memory_limit")
                  for name in self.runs if self.runs[name].result and "duckdb" in self.runs[name].result}
        return {
            "label": self.label, "market": asdict(market), "memory_limit": self.memory_limit,
            "threads": self.args.threads, "window_days": self.args.window_days,
            "duckdb_memory_limit_applied": limits, "table": table, "ratios": ratios,
            "references_agree": agreement, "pyfixest_agrees": fixest_agreement, "stages": self._runs_json(),
            "first_run": first, "nightly_run": nightly, "nightly_totals": self.nightly_totals,
            "nightly_totals_with_month": self.nightly_totals_with_month, "nightly_flow_totals": self.nightly_flow_totals,
            "nightly_flow_late_totals": self.nightly_flow_late_totals,
        }

    def _whole_night(self, row: Any, failed: Any, result: Any, nightly: dict[str, float]) -> None:
        """Rows for the rest of what the nightly flow does (the month to date's audit and report) and for the
        whole night's total, as stage processes and in one process (nightly_flow), each its own median over
        the runs, and for the night in one process on a month's last day (nightly_flow_late); the totals go
        into `nightly` (with_month_process_wall_s, flow_process_wall_s, flow_late_process_wall_s)."""
        total = nightly["process_wall_s"]
        for name, label in (("nightly_mtd_audit", "nightly mtd audit"), ("nightly_mtd_report", "nightly mtd report")):
            if failed(name, label):
                return
            data, run = result(name), self.runs[name]
            phase = data["phases"][name.removeprefix("nightly_mtd_")]
            period = f"{data.get('period_days', '?')} day(s)" if name.endswith("audit") else ""
            row(label, phase["wall_s"], phase["cpu_s"], run.process_peak_rss_mb, data["rows_audited"],
                f"month to date: {period}" if period else "", key=name)
            total += run.process_wall_s
        total, spread = _median_of_runs(self.nightly_totals_with_month, total)
        row("nightly with mtd", total, None, None, None,
            f"what the nightly flow does by default: also the month to date{spread}", key="nightly_with_month_e2e")
        nightly["with_month_process_wall_s"] = total
        for name, label, totals, what, key in (
                ("nightly_flow", "nightly flow", self.nightly_flow_totals,
                 "the same in one process, as the flow runs its tasks", "flow_process_wall_s"),
                ("nightly_flow_late", "nightly flow, 31st", self.nightly_flow_late_totals,
                 f"the same on a month's last day: month to date {LONGEST_MONTH_DAYS} days (the "
                 f"{LONGEST_MONTH_DAYS} days up to the new day)", "flow_late_process_wall_s")):
            if failed(name, label):
                return
            run = self.runs[name]
            flow_total, flow_spread = _median_of_runs(totals, run.process_wall_s)
            parts = ", ".join(f"{part} {seconds:.1f}" for part, seconds in run.result["parts"].items())
            row(label, flow_total, None, run.process_peak_rss_mb, None, f"{what}{flow_spread}; parts of one run: {parts}",
                key=name)
            nightly[key] = flow_total


def _median_of_runs(totals: list[float], single: float) -> tuple[float, str]:
    """The median (the lower middle one of an even number) of several runs' totals, and a note giving
    their number and range; `single` and no note when there was one run."""
    if len(totals) < 2:
        return single, ""
    return statistics.median_low(totals), f"; median of {len(totals)} runs ({min(totals):.1f}-{max(totals):.1f} s)"


def _fresh(work: Path) -> None:
    """An empty work folder: warehouse, reports and logs of an earlier bench run removed."""
    import shutil

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
