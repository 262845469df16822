"""The `priceparity` command line: demo, sample, ingest, audit, nightly, serve.

Exit codes: 0 success; 1 flagged findings with --fail-on-findings; 2 bad input or config (one line on
stderr, no traceback); 3 a data-quality stop.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from audits.errors import ConfigError, PriceParityError, one_line

if TYPE_CHECKING:
    from flows.dask_contrast import ScaleOut

app = typer.Typer(add_completion=False, no_args_is_help=True, help="PriceParity: pricing fairness auditor.")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The TOML config file.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's and Dask's own logs.")]
ExecutorOption = Annotated[Literal["local", "dask"], typer.Option(
    "--executor", help="Where the disparity checks' per-customer sums run: this process, or Prefect tasks on Dask.")]
DaskAddressOption = Annotated[str | None, typer.Option(
    "--dask-address", help="Scheduler of an existing Dask cluster (tcp://host:8786); default: a local cluster.")]
DaskWorkersOption = Annotated[int, typer.Option("--dask-workers", min=1, help="Workers of the local Dask cluster.")]
PartitionsOption = Annotated[int | None, typer.Option(
    "--partitions", min=1, help="Customer partitions, one Prefect task each (default: one per Dask worker).")]
ScratchOption = Annotated[Path | None, typer.Option(
    "--scratch-dir", help="Folder for the run's Parquet files; on a real cluster, storage all workers can read.")]
DayFormats = ["%Y-%m-%d"]

BAD_PAIR = "{option} {value!r}: expected {form}, e.g. {example}"
ADDRESS_WITHOUT_DASK = "--dask-address {address!r} needs --executor dask"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn an error the user can fix into one line on stderr and its exit code."""
    try:
        yield
    except PriceParityError as err:
        typer.echo(f"error: {one_line(err)}", err=True)
        raise typer.Exit(err.exit_code) from None


def _prefect_defaults() -> None:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The first ephemeral server on a new machine creates and migrates its database, which can take
    # longer than Prefect's default 20 s wait (seen: `make demo` timing out on a fresh machine).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _quiet_prefect(verbose: bool) -> None:
    # Prefect and Dask log failures with tracebacks; the CLI reports them itself in one line.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    _prefect_defaults()
    if not verbose:
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")


def _check_config(path: Path):
    from audits.config import load_config

    if not path.exists():
        raise ConfigError(f"{path}: config file not found; pass --config with the path of your TOML file")
    return load_config(path)


def _pairs(items: list[str] | None, *, option: str, form: str, example: str) -> dict[str, str]:
    """Parse repeated NAME=VALUE options."""
    pairs = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(BAD_PAIR.format(option=option, value=item, form=form, example=example))
        pairs[name.strip()] = value.strip()
    return pairs


def _scale_out(executor: Literal["local", "dask"], dask_address: str | None, dask_workers: int, partitions: int | None,
               scratch_dir: Path | None) -> ScaleOut:
    from flows.dask_contrast import ScaleOut

    if dask_address and executor != "dask":
        raise ConfigError(ADDRESS_WITHOUT_DASK.format(address=dask_address))
    return ScaleOut(executor=executor, dask_address=dask_address, dask_workers=dask_workers, partitions=partitions,
                    scratch_dir=str(scratch_dir.resolve()) if scratch_dir else None)


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Folder for the market's Parquet files.")] = Path("out/sample"),
    customers: Annotated[int, typer.Option(min=100, help="Number of customers.")] = 20_000,
    days: Annotated[int, typer.Option(min=7, help="Number of days of transactions.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same market.")] = 7,
) -> None:
    """Write a synthetic market with planted unfair treatments (see PLANTED.md in the folder)."""
    from audits.sample import MarketSpec, write_sample_market

    with _user_errors():
        path = write_sample_market(out, spec=MarketSpec(n_customers=customers, days=days, seed=seed))
    typer.echo(f"sample market written to {path} (what was planted: {path / 'PLANTED.md'})")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, warehouse and reports.")] = Path("out/demo"),
    executor: ExecutorOption = "local",
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = 2,
    partitions: PartitionsOption = None,
    scratch_dir: ScratchOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Build a sample market, run the nightly flow on it once, and print the report's path."""
    _quiet_prefect(verbose)
    from audits.sample import MarketSpec, write_sample_market

    with _user_errors():
        scale_out = _scale_out(executor, dask_address, dask_workers, partitions, scratch_dir)
        out.mkdir(parents=True, exist_ok=True)
        config_path = out / "priceparity.toml"
        config_path.write_text(resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8"))
        typer.echo(f"writing a sample market to {out / 'landing'} ...")
        write_sample_market(out / "landing", spec=MarketSpec())
        _check_config(config_path)
        from flows.nightly import nightly_audit

        _validation_meanwhile()
        reports = nightly_audit(config_path=str(config_path), scale_out=scale_out)
    typer.echo(f"what was planted: {out / 'landing' / 'PLANTED.md'}")
    _echo_reports(reports)


def _validation_meanwhile() -> None:
    """Before a flow that ingests: import Great Expectations on a thread while Prefect starts its temporary
    server (about 5 s, spent waiting on another process), so that validating new rows does not wait for the
    import (about 1.5 s). Wasted, on another core, when there is nothing new to validate."""
    from audits.ingest import import_great_expectations_meanwhile

    import_great_expectations_meanwhile()


def _echo_reports(reports: dict[str, str]) -> None:
    """The first scope's report as `report: PATH` (what scripts read), then the others by scope."""
    for i, (scope, path) in enumerate(reports.items()):
        typer.echo(f"{'report' if i == 0 else scope + ' report'}: {Path(path).resolve()}")


@app.command("ingest")
def ingest_command(config: ConfigOption, verbose: VerboseOption = False) -> None:
    """Load every configured source into the warehouse (incremental, idempotent)."""
    _quiet_prefect(verbose)
    with _user_errors():
        cfg = _check_config(config)
        from audits.ingest import ingest_all
        from audits.warehouse import open_warehouse

        with open_warehouse(cfg.warehouse_path, memory_limit=cfg.memory_limit, threads=cfg.threads,
                            lock_timeout_seconds=cfg.lock_timeout_seconds) as con:
            ingest_all(con, cfg, progress=typer.echo)


@app.command("audit")
def audit_command(
    config: ConfigOption,
    start: Annotated[dt.datetime | None, typer.Option("--from", formats=DayFormats, help="First day audited.")] = None,
    end: Annotated[dt.datetime | None, typer.Option("--to", formats=DayFormats, help="Last day audited.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report.html and findings.json.")] = None,
    attributes: Annotated[list[str] | None, typer.Option("--attribute", help="Audit only these attributes.")] = None,
    segment_by: Annotated[list[str] | None, typer.Option("--segment-by", help="Findings per value of these columns.")] = None,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="COLUMN=VALUE, e.g. category=grocery.")] = None,
    thresholds: Annotated[list[str] | None, typer.Option("--threshold", help="NAME=VALUE, e.g. fdr=0.01.")] = None,
    ingest_first: Annotated[bool, typer.Option("--ingest/--no-ingest", help="Load new source data first.")] = True,
    fail_on_findings: Annotated[bool, typer.Option(help="Exit 1 when anything is flagged.")] = False,
    executor: ExecutorOption = "local",
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = 2,
    partitions: PartitionsOption = None,
    scratch_dir: ScratchOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Audit a period on demand and write DIR/report.html and DIR/findings.json."""
    _quiet_prefect(verbose)
    with _user_errors():
        cfg = _check_config(config)
        if start and end and start > end:
            raise ConfigError(f"--from {start:%Y-%m-%d} is after --to {end:%Y-%m-%d}; swap them")
        parsed_filters = _pairs(filters, option="--filter", form="COLUMN=VALUE", example="--filter category=grocery")
        scale_out = _scale_out(executor, dask_address, dask_workers, partitions, scratch_dir)
        from pydantic import ValidationError

        from flows.on_demand import Thresholds, on_demand_audit

        try:
            limits = Thresholds(**_pairs(thresholds, option="--threshold", form="NAME=VALUE",
                                       example="--threshold fdr=0.01"))
        except ValidationError as err:
            problem = err.errors()[0]
            raise ConfigError(f"--threshold {'.'.join(map(str, problem['loc']))}: {problem['msg']}; "
                              f"known thresholds are {', '.join(Thresholds.model_fields)}") from None
        if ingest_first and cfg.sources:
            _validation_meanwhile()
        report = on_demand_audit(
            config_path=str(config), period_start=start.date() if start else None,
            period_end=end.date() if end else None, attributes=attributes or None, segment_by=segment_by or None,
            filters=parsed_filters or None, thresholds=limits, ingest_first=ingest_first and bool(cfg.sources),
            out_dir=str(out) if out else None, scale_out=scale_out)
    from audits.findings import AuditResult

    result = AuditResult.read(Path(report).parent / "findings.json")
    counts = result.severity_counts()
    typer.echo(f"{counts['high']} high, {counts['medium']} medium, {counts['low']} low; "
               f"{result.data_quality.quarantined_rows} rows quarantined")
    typer.echo(f"report: {Path(report).resolve()}")
    if fail_on_findings and result.flagged:
        raise typer.Exit(1)


@app.command()
def nightly(
    config: ConfigOption,
    as_of: Annotated[dt.datetime | None, typer.Option("--as-of", formats=DayFormats,
                                                      help="Last day audited (default: the newest data).")] = None,
    window_days: Annotated[int | None, typer.Option(min=1, help="Rolling window (default: audit.window_days).")] = None,
    month_to_date: Annotated[bool, typer.Option(help="Also audit the month to date.")] = True,
    executor: ExecutorOption = "local",
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = 2,
    partitions: PartitionsOption = None,
    scratch_dir: ScratchOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the nightly flow once now: ingest, audit the rolling window and the month to date, publish."""
    _quiet_prefect(verbose)
    with _user_errors():
        _check_config(config)
        scale_out = _scale_out(executor, dask_address, dask_workers, partitions, scratch_dir)
        from flows.nightly import nightly_audit

        _validation_meanwhile()
        reports = nightly_audit(config_path=str(config), as_of=as_of.date() if as_of else None,
                                window_days=window_days, month_to_date=month_to_date, scale_out=scale_out)
    _echo_reports(reports)


@app.command()
def serve(
    config: ConfigOption,
    executor: ExecutorOption = "local",
    dask_address: DaskAddressOption = None,
    dask_workers: DaskWorkersOption = 2,
    partitions: PartitionsOption = None,
    scratch_dir: ScratchOption = None,
) -> None:
    """Serve both flows as Prefect deployments: nightly on the configured cron, on-demand from the UI."""
    _prefect_defaults()
    with _user_errors():
        cfg = _check_config(config)
        scale_out = _scale_out(executor, dask_address, dask_workers, partitions, scratch_dir)
        from flows.deployments import serve_deployments

        serve_deployments(cfg, config_path=config.resolve(), scale_out=scale_out)


def _silence_interpreter_shutdown() -> None:
    """Send what the interpreter prints while it shuts down to /dev/null.

    duckdb's nanobind bindings report objects still alive at interpreter exit ("nanobind: leaked 27
    instances!"), dozens of lines after our one-line error. nanobind documents these reports as
    benign at shutdown; they are not ours to act on. Registered first, this runs after every other
    atexit handler (Prefect stopping its temporary server), just before the interpreter finalizes.
    """
    def redirect() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)

    atexit.register(redirect)


def main() -> None:
    if not {"-v", "--verbose"} & set(sys.argv[1:]):
        _silence_interpreter_shutdown()
    app()


if __name__ == "__main__":
    sys.exit(main())
