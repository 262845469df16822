"""The `priceparity` command line: demo, sample, ingest, audit, serve.

Exit codes: 0 success; 1 flagged findings with --fail-on-findings; 2 bad input or config (one line on
stderr, no traceback); 3 a data-quality stop.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from audits.errors import ConfigError, PriceParityError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="PriceParity: pricing fairness auditor.")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="The TOML config file.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own logs.")]
BAD_FILTER = "--filter {value!r}: expected COLUMN=VALUE, e.g. --filter category=grocery"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn an error the user can fix into one line on stderr and its exit code."""
    try:
        yield
    except PriceParityError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(err.exit_code) from None


def _quiet_prefect(verbose: bool) -> None:
    # Prefect logs failures with tracebacks; the CLI reports them itself in one line.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _check_config(path: Path):
    from audits.config import load_config

    if not path.exists():
        raise ConfigError(f"{path}: config file not found; pass --config with the path of your TOML file")
    return load_config(path)


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
    verbose: VerboseOption = False,
) -> None:
    """Build a sample market, run the nightly flow on it once, and print the report's path."""
    _quiet_prefect(verbose)
    from audits.sample import MarketSpec, write_sample_market

    with _user_errors():
        out.mkdir(parents=True, exist_ok=True)
        config_path = out / "priceparity.toml"
        config_path.write_text(resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8"))
        typer.echo(f"writing a sample market to {out / 'landing'} ...")
        write_sample_market(out / "landing", spec=MarketSpec())
        _check_config(config_path)
        from flows.nightly import nightly_audit

        report = nightly_audit(config_path=str(config_path))
    typer.echo(f"what was planted: {out / 'landing' / 'PLANTED.md'}")
    typer.echo(f"report: {Path(report).resolve()}")


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
    start: Annotated[dt.datetime | None, typer.Option("--from", formats=["%Y-%m-%d"], help="First day audited.")] = None,
    end: Annotated[dt.datetime | None, typer.Option("--to", formats=["%Y-%m-%d"], help="Last day audited.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report.html and findings.json.")] = None,
    attributes: Annotated[list[str] | None, typer.Option("--attribute", help="Audit only these attributes.")] = None,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="COLUMN=VALUE, e.g. category=grocery.")] = None,
    ingest_first: Annotated[bool, typer.Option("--ingest/--no-ingest", help="Load new source data first.")] = True,
    fail_on_findings: Annotated[bool, typer.Option(help="Exit 1 when anything is flagged.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Audit a period on demand and write DIR/report.html and DIR/findings.json."""
    _quiet_prefect(verbose)
    with _user_errors():
        cfg = _check_config(config)
        parsed_filters = {}
        for item in filters or []:
            column, sep, value = item.partition("=")
            if not sep or not column:
                raise ConfigError(BAD_FILTER.format(value=item))
            parsed_filters[column.strip()] = value
        if start and end and start > end:
            raise ConfigError(f"--from {start:%Y-%m-%d} is after --to {end:%Y-%m-%d}; swap them")
        if ingest_first and cfg.sources:
            from flows.tasks import ingest

            ingest.fn(cfg)
        from flows.on_demand import on_demand_audit

        report = on_demand_audit(
            config_path=str(config), period_start=start.date() if start else None,
            period_end=end.date() if end else None, attributes=attributes or None,
            filters=parsed_filters or None, out_dir=str(out) if out else None)
    from audits.findings import AuditResult

    result = AuditResult.read(Path(report).parent / "findings.json")
    counts = result.severity_counts()
    typer.echo(f"{counts['high']} high, {counts['medium']} medium, {counts['low']} low; "
               f"{result.data_quality.quarantined_rows} rows quarantined")
    typer.echo(f"report: {Path(report).resolve()}")
    if fail_on_findings and result.flagged:
        raise typer.Exit(1)


@app.command()
def serve(config: ConfigOption, verbose: VerboseOption = False) -> None:
    """Serve both flows as Prefect deployments: nightly on the configured cron, on-demand from the UI."""
    _quiet_prefect(verbose)
    with _user_errors():
        cfg = _check_config(config)
        from flows.deployments import serve_deployments

        serve_deployments(cfg, config_path=config.resolve())


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
