"""Cold CLI: what a person waits for when they type `priceparity audit --no-ingest` on a small market.

Builds (or reuses) the demo market and its warehouse once (`priceparity demo`), then times N cold runs
of `priceparity audit --config ... --no-ingest --out ...`, each a new process on a fresh copy of the demo's
warehouse, as a person would start it: wall seconds (median, min, max), CPU seconds (the machine may be
shared: CPU time moves less with other tenants' load), seconds until the first line of output, and beside
them the audit's own seconds (the `in X.X s` of the command's audit line; findings.json's started_at/finished_at, whole
seconds, when the command does not print it), so the command's overhead is visible. It also times a
config error (`--attribute colour`, a column the warehouse lacks) and `--help`.

Standalone: `python bench/cold_cli.py [--runs 7] [--work DIR] [--priceparity PATH] [--json PATH]`.
PREFECT_API_URL is removed from the runs' environment (the default experience); `--keep-prefect-api`
keeps it. One untimed run first warms the file cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_PRICEPARITY = Path(sys.executable).parent / "priceparity"
AUDIT_SECONDS = re.compile(r"^audit \S+ .* in (\d+(?:\.\d+)?) s$", re.MULTILINE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed cold runs of each command (default 7)")
    parser.add_argument("--work", type=Path, default=Path("out/bench-cold-cli"),
                        help="folder for the demo market, its warehouse and the runs' reports")
    parser.add_argument("--priceparity", type=Path, default=DEFAULT_PRICEPARITY,
                        help="the priceparity executable (default: the one beside this Python)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--keep-prefect-api", action="store_true",
                        help="keep PREFECT_API_URL in the runs' environment (runs become Prefect flow runs)")
    return parser.parse_args(argv)


def timed_run(argv: list[str], env: dict[str, str]) -> dict:
    """Run a command; wall seconds, CPU seconds (user + system, the command and its children), seconds to its
    first line on stdout or stderr, exit code, output."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    first_line_at = None
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        if first_line_at is None:
            first_line_at = time.perf_counter() - started
        lines.append(line.rstrip("\n"))
    code = process.wait()
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {"wall": wall, "cpu": cpu, "first_line": first_line_at, "code": code, "output": lines}


def fresh_workspace(demo: Path, run: Path) -> Path:
    """A config auditing the demo market with a copy of the demo's warehouse as `demo` left it, so every run
    starts from the same state (each audit adds a run to the warehouse, whose history later runs read)."""
    run.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(demo / "warehouse.duckdb", run / "warehouse.duckdb")
    text = (demo / "priceparity.toml").read_text(encoding="utf-8")
    config = run / "priceparity.toml"
    config.write_text(text.replace('path = "landing/', f'path = "{(demo / "landing").as_posix()}/'), encoding="utf-8")
    return config


def audit_seconds(run: dict, findings: Path) -> float | None:
    """The audit's own seconds: from the command's audit line, else from findings.json (whole seconds)."""
    found = AUDIT_SECONDS.findall("\n".join(run["output"]))
    if found:
        return float(found[-1])
    if not findings.exists():
        return None
    info = json.loads(findings.read_text(encoding="utf-8"))["run"]
    if not info.get("started_at") or not info.get("finished_at"):
        return None
    return (dt.datetime.fromisoformat(info["finished_at"]) - dt.datetime.fromisoformat(info["started_at"])).total_seconds()


def summary(values: list[float | None]) -> dict:
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(present), "min": min(present), "max": max(present), "n": len(present)}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    if not args.keep_prefect_api:
        env.pop("PREFECT_API_URL", None)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    work = args.work.resolve()
    demo = work / "demo"
    config = demo / "priceparity.toml"
    if not (demo / "warehouse.duckdb").exists():
        print(f"building the demo market and its warehouse in {demo} ...", flush=True)
        subprocess.run([str(args.priceparity), "demo", "--out", str(demo)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    out = work / "audit"
    run_config = fresh_workspace(demo, work / "run")
    audit = [str(args.priceparity), "audit", "--config", str(run_config), "--no-ingest", "--out", str(out)]
    config_error = [*audit, "--attribute", "colour"]
    help_ = [str(args.priceparity), "audit", "--help"]

    timed_run(audit, env)  # warm the file cache
    stages = {}
    for name, argv_, expected in (("audit", audit, 0), ("config_error", config_error, 2), ("help", help_, 0)):
        runs = []
        for i in range(args.runs):
            fresh_workspace(demo, work / "run")
            run = timed_run(argv_, env)
            if run["code"] != expected:
                print("\n".join(run["output"]), file=sys.stderr)
                raise SystemExit(f"{name}: exit code {run['code']}, expected {expected}")
            if name == "audit":
                run["audit"] = audit_seconds(run, out / "findings.json")
            runs.append(run)
            print(f"{name} run {i + 1}: {run['wall']:.2f} s wall, {run['cpu']:.2f} s CPU, "
                  f"first line at {run['first_line']:.2f} s"
                  + (f", audit {run['audit']:.2f} s" if run.get("audit") is not None else ""), flush=True)
        stages[name] = {
            "wall": summary([r["wall"] for r in runs]),
            "cpu": summary([r["cpu"] for r in runs]),
            "first_line": summary([r["first_line"] for r in runs]),
            **({"audit": summary([r["audit"] for r in runs])} if name == "audit" else {}),
            "last_output": runs[-1]["output"][-3:],
        }

    print(f"\ncold CLI on {platform.node()} ({os.cpu_count()} cores), {args.runs} runs each, "
          f"{args.priceparity}")
    print(f"{'command':<14}{'median s':>10}{'min':>8}{'max':>8}{'CPU s':>8}{'first line':>12}{'audit own s':>13}")
    for name, figures in stages.items():
        wall, first = figures["wall"], figures["first_line"]
        own = figures.get("audit", {}).get("median")
        print(f"{name:<14}{_seconds(wall['median']):>10}{_seconds(wall['min']):>8}{_seconds(wall['max']):>8}"
              f"{_seconds(figures['cpu']['median']):>8}{_seconds(first['median']):>12}{_seconds(own):>13}")
    own = stages["audit"]["audit"]["median"]
    if own is not None:
        print(f"overhead of the command beyond the audit's own work: {stages['audit']['wall']['median'] - own:.2f} s "
              "(median wall minus median audit)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": {"node": platform.node(), "cores": os.cpu_count()},
            "priceparity": str(args.priceparity), "runs": args.runs, "stages": stages,
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
