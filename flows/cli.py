"""The `priceparity` command line: demo, sample, ingest, audit, nightly, serve.

Exit codes: 0 success; 1 flagged findings with --fail-on-findings; 2 bad input or config (one line on
stderr, no traceback); 3 the run stopped without a result: a data-quality stop, nothing to audit, or out of
memory or disk (one line).

A command checks its options, its config and what they name (files, columns, the output folder) before
anything slow, and reports a mistake on one line naming the flag or key. Runs are Prefect flow runs when
PREFECT_API_URL names a Prefect server (recorded there with their tasks, logs and artifact); without one
the command runs the same flow code in this process (flows/pipeline.py) and never imports Prefect
(docs/orchestration.md). Heavy modules are imported where they are used: the first line comes within a second.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import sys
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer vendors click: its exceptions live here

from audits.errors import ConfigError, one_line, printable, scrub
from flows.cli_options import ConfigOption, VerboseOption, error_line, scale_out_options, user_errors
from flows.processes import quiet_process_exit
from flows.progress import to_terminal

if TYPE_CHECKING:
    from audits.config import Config
    from audits.findings import AuditResult
    from flows.stages import Asked
    from flows.dask_contrast import ScaleOut
    from flows.pipeline import Thresholds

app = typer.Typer(add_completion=False, no_args_is_help=True, help="PriceParity: pricing fairness auditor.")

BAD_PAIR = "{option} {value!r}: expected {form}, e.g. {example}"
NOT_A_DAY = "{option} {value}: not a date (YYYY-MM-DD)"
DAY_OUT_OF_RANGE = "{option} {value}: must be {allowed}"
OPTION_OUT_OF_RANGE = "{option} must be {allowed}, got {value} (as the config key {key})"
REVERSED = "--from {start} is after --to {end}; swap them"
NOT_A_COLUMN_NAME = "{option} {value!r}: not a column name; use lower-case letters, digits and _"
CONFIG_NOT_FOUND = "{path}: config file not found; pass --config with the path of your TOML file"
BAD_THRESHOLD = "--threshold {problem}; known thresholds are {known}"
USAGE = "{message} (see `{help}`)"
# Who asked for a column, named in the error when the warehouse lacks it (flows.pipeline.asked_columns)
FLAGS = {"attributes": "--attribute {column}", "segment_by": "--segment-by {column}", "filters": "--filter {column}"}


def _prefect_server() -> str | None:
    """The Prefect API runs are recorded in, if any: PREFECT_API_URL from the environment."""
    return os.environ.get("PREFECT_API_URL") or None


def _quiet(verbose: bool) -> None:
    # Prefect and Dask log failures with tracebacks, and Prefect's workers warn at exit while they flush; the
    # CLI reports errors itself in one line. Only Prefect's terminal handlers are quieted: a flow run's logs
    # still reach its server.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_DEBUG_LEVEL", "CRITICAL")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")


def _config(path: Path, **on_demand) -> Config:
    """The config file, checked (and, for an on-demand run, with its attributes, segments and thresholds)."""
    if not path.exists():
        raise ConfigError(CONFIG_NOT_FOUND.format(path=path))
    if on_demand:
        from flows.pipeline import on_demand_config

        return on_demand_config(path, **on_demand)
    from audits.config import load_config

    return load_config(path)


def _day(option: str, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        day = dt.datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ConfigError(NOT_A_DAY.format(option=option, value=printable(value))) from None
    from audits.settings import ISO_DATE  # the range of validation.earliest: a period's ends stay computable

    if not ISO_DATE.test(day.isoformat()):
        raise ConfigError(DAY_OUT_OF_RANGE.format(option=option, value=value, allowed=ISO_DATE.what))
    return day


def _in_range(option: str, value: int | None, key: str) -> None:
    """An option standing for a setting takes the setting's range (audits/settings.py)."""
    from audits.settings import SETTINGS_BY_KEY

    if value is not None and (allowed := SETTINGS_BY_KEY[key].check(value)) is not None:
        raise ConfigError(OPTION_OUT_OF_RANGE.format(option=option, allowed=allowed, value=value, key=key))


def _column_names(option: str, names: list[str] | None) -> list[str] | None:
    from audits.config import IDENTIFIER

    for name in names or []:
        if not IDENTIFIER.match(name):
            raise ConfigError(NOT_A_COLUMN_NAME.format(option=option, value=name))
    return names or None


def _pairs(items: list[str] | None, *, option: str, form: str, example: str) -> dict[str, str]:
    """Parse repeated NAME=VALUE options."""
    pairs = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(BAD_PAIR.format(option=option, value=item, form=form, example=example))
        pairs[name.strip()] = value.strip()
    return pairs


def _thresholds(items: list[str] | None) -> Thresholds:
    from pydantic import ValidationError

    from flows.pipeline import Thresholds

    try:
        return Thresholds(**_pairs(items, option="--threshold", form="NAME=VALUE", example="--threshold fdr=0.01"))
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        text = problem["msg"].removeprefix("Value error, ")
        raise ConfigError(BAD_THRESHOLD.format(problem=f"{where}: {text}" if where else text,
                                               known=", ".join(Thresholds.model_fields))) from None


def _ready(config: Config, *, ingest_first: bool, asked: Sequence[Asked] = ()) -> None:
    """Before anything slow: the source files exist (when ingesting) and the warehouse has the columns asked
    for. With an ingest first, a column may arrive with the new rows: it is checked again after it."""
    from flows import stages

    if ingest_first:
        stages.check_source_files(config)
    error = stages.unknown_column(config, asked)
    if error is not None and not ingest_first:
        raise error


def _recorded_at() -> str:
    server = _prefect_server()
    return f"; recorded as a Prefect flow run at {server}" if server else ""


@app.command()
def sample(
    out: Annotated[Path, typer.Option(help="Folder for the market's files.")] = Path("out/sample"),
    kind: Annotated[Literal["retail", "insurance", "lending"], typer.Option(
        help="retail: baskets of a shop; insurance: a motor renewal book; lending: a loan book.")] = "retail",
    customers: Annotated[int | None, typer.Option(
        min=100, help="Customers (retail), policies (insurance) or loans (lending); default: the kind's.")] = None,
    days: Annotated[int, typer.Option(min=7, help="retail: number of days of transactions.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same market.")] = 7,
) -> None:
    """Write a sample market with planted unfair treatments and known truth (PLANTED.md in the folder)."""
    with user_errors():
        if kind == "retail":
            from audits.sample import MarketSpec, write_sample_market

            spec = MarketSpec(days=days, seed=seed, **({"n_customers": customers} if customers else {}))
            path = write_sample_market(out, spec=spec)
        else:
            from audits.sample import write_market

            path = write_market(out, kind=kind, seed=seed, size=customers)
    typer.echo(f"sample {kind} market written to {path} (what was planted: {path / 'PLANTED.md'})")


@app.command()
@scale_out_options
def demo(
    scale_out: ScaleOut,
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, warehouse and reports.")] = Path("out/demo"),
    verbose: VerboseOption = False,
) -> None:
    """Build a sample market, run the nightly flow on it once, and print the report's path."""
    _quiet(verbose)
    with user_errors():
        out.mkdir(parents=True, exist_ok=True)
        config_path = out / "priceparity.toml"
        config_path.write_text(resources.files("flows").joinpath("demo.toml").read_text(encoding="utf-8"))
        typer.echo(f"writing a sample market to {out / 'landing'} ...")
        from audits.sample import MarketSpec, write_sample_market

        write_sample_market(out / "landing", spec=MarketSpec())
        _config(config_path)
        reports = _nightly(config_path=str(config_path), scale_out=scale_out)
    typer.echo(f"what was planted: {out / 'landing' / 'PLANTED.md'}")
    _echo_reports(reports)


def _echo_reports(reports: dict[str, str]) -> None:
    """The first scope's report as `report: PATH` (what scripts read), then the others by scope."""
    for i, (scope, path) in enumerate(reports.items()):
        typer.echo(f"{'report' if i == 0 else scope + ' report'}: {Path(path).resolve()}")


@app.command("ingest")
def ingest_command(config: ConfigOption, verbose: VerboseOption = False) -> None:
    """Load every configured source into the warehouse (incremental, idempotent)."""
    _quiet(verbose)
    with user_errors():
        cfg = _config(config)
        from flows import stages

        stages.check_source_files(cfg)
        stages.ingest(cfg)


@app.command("audit")
@scale_out_options
def audit_command(
    config: ConfigOption,
    scale_out: ScaleOut,
    start: Annotated[str | None, typer.Option(
        "--from", metavar="YYYY-MM-DD", help="First day audited (default: the first day of data).")] = None,
    end: Annotated[str | None, typer.Option(
        "--to", metavar="YYYY-MM-DD", help="Last day audited (default: the newest data).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for report.html and findings.json.")] = None,
    attributes: Annotated[list[str] | None, typer.Option("--attribute", help="Audit only these attributes.")] = None,
    segment_by: Annotated[list[str] | None, typer.Option("--segment-by", help="Findings per value of these columns.")] = None,
    filters: Annotated[list[str] | None, typer.Option("--filter", help="COLUMN=VALUE, e.g. category=grocery.")] = None,
    thresholds: Annotated[list[str] | None, typer.Option("--threshold", help="NAME=VALUE, e.g. fdr=0.01.")] = None,
    ingest_first: Annotated[bool, typer.Option("--ingest/--no-ingest", help="Load new source data first.")] = True,
    fail_on_findings: Annotated[bool, typer.Option(help="Exit 1 when anything is flagged.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Audit a period on demand and write DIR/report.html and DIR/findings.json."""
    _quiet(verbose)
    with user_errors():
        period_start, period_end = _day("--from", start), _day("--to", end)
        if period_start and period_end and period_start > period_end:
            raise ConfigError(REVERSED.format(start=period_start, end=period_end))
        attributes = _column_names("--attribute", attributes)
        segment_by = _column_names("--segment-by", segment_by)
        parsed_filters = _pairs(filters, option="--filter", form="COLUMN=VALUE", example="--filter category=grocery")
        _column_names("--filter", list(parsed_filters))
        limits = _thresholds(thresholds)
        cfg = _config(config, attributes=attributes, segment_by=segment_by, thresholds=limits)
        ingest_first = ingest_first and bool(cfg.sources)
        if out is not None:
            from flows.publication import check_publishable

            check_publishable(out)
        from flows.pipeline import asked_columns

        _ready(cfg, ingest_first=ingest_first, asked=asked_columns(
            cfg, attributes=attributes, segment_by=segment_by, filters=parsed_filters, askers=FLAGS))
        typer.echo(f"on-demand audit with {config}: {_period(period_start, period_end)}, "
                   f"attributes {', '.join(cfg.attributes) or '(none)'}"
                   f"{'; new source data first' if ingest_first else ''}{_recorded_at()}")
        parameters = dict(
            config_path=str(config), period_start=period_start, period_end=period_end, attributes=attributes,
            segment_by=segment_by, filters=parsed_filters or None, thresholds=limits, ingest_first=ingest_first,
            out_dir=str(out) if out else None, scale_out=scale_out)
        if _prefect_server():
            from flows.on_demand import on_demand_audit

            report = on_demand_audit(**parameters)
        else:
            from flows.pipeline import DIRECT, on_demand

            report = on_demand(**parameters, run=DIRECT, askers=FLAGS)
    from audits.findings import AuditResult

    result = AuditResult.read(Path(report).parent / "findings.json")
    typer.echo(_outcome_line(result))
    typer.echo(f"report: {Path(report).resolve()}")
    if fail_on_findings and result.flagged:
        raise typer.Exit(1)


def _period(start: dt.date | None, end: dt.date | None) -> str:
    """The period as the user asked for it; the audit's own line says which days that was, and why."""
    if start and end:
        return f"{start} to {end}"
    if start:
        return f"{start} to the newest data (--to)"
    if end:
        return f"the first day of data (--from) to {end}"
    return "all the data in the warehouse (narrow with --from/--to)"


def _outcome_line(result: AuditResult) -> str:
    """What the run concluded, in one line: its verdict, causes and tests by outcome."""
    counts = result.outcome_counts()
    causes = sum(c.status != "resolved" for c in result.causes)
    return (f"{result.verdict.replace('_', ' ')}: {causes} cause{'s' if causes != 1 else ''} "
            f"({counts['flagged']} flagged tests), {counts['clear']} clear, {counts['suppressed']} suppressed, "
            f"{counts['not_assessed']} not assessed; {result.data_quality.quarantined_rows} rows quarantined")


@app.command()
@scale_out_options
def nightly(
    config: ConfigOption,
    scale_out: ScaleOut,
    as_of: Annotated[str | None, typer.Option("--as-of", metavar="YYYY-MM-DD",
                                              help="Last day audited (default: the newest data).")] = None,
    window_days: Annotated[int | None, typer.Option(
        help="Rolling window in days, as audit.window_days (default: its value).")] = None,
    month_to_date: Annotated[bool, typer.Option(help="Also audit the month to date.")] = True,
    verbose: VerboseOption = False,
) -> None:
    """Run the nightly flow once now: ingest, audit the rolling window and the month to date, publish."""
    _quiet(verbose)
    with user_errors():
        day = _day("--as-of", as_of)
        _in_range("--window-days", window_days, "audit.window_days")
        cfg = _config(config)
        from flows.pipeline import asked_columns

        _ready(cfg, ingest_first=True, asked=asked_columns(cfg, attributes=None, segment_by=None, filters=None))
        typer.echo(f"nightly audit with {config}: new source data, then the {window_days or cfg.window_days} days "
                   f"up to {day or 'the newest data'}{' and the month to date' if month_to_date else ''}"
                   f"{_recorded_at()}")
        reports = _nightly(config_path=str(config), as_of=day, window_days=window_days, month_to_date=month_to_date,
                           scale_out=scale_out)
    _echo_reports(reports)


def _nightly(**parameters) -> dict[str, str]:
    """The nightly flow: a Prefect flow run with a Prefect server, else its body run here."""
    if _prefect_server():
        from flows.nightly import nightly_audit

        return nightly_audit(**parameters)
    from flows.pipeline import DIRECT, nightly as nightly_body

    return nightly_body(**parameters, run=DIRECT)


@app.command()
@scale_out_options
def serve(
    config: ConfigOption,
    scale_out: ScaleOut,
    ui: Annotated[bool, typer.Option(
        "--ui", help="Start a Prefect server with its UI for the deployments (what serve does when "
                     "PREFECT_API_URL is not set).")] = False,
    host: Annotated[str, typer.Option(help="Address the Prefect server started by serve listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the Prefect server started by serve.")] = 4200,
) -> None:
    """Serve both flows as Prefect deployments: nightly on the configured cron, on-demand from the UI."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with user_errors(), ExitStack() as stack:
        cfg = _config(config)
        api_url = _prefect_server()
        if ui or api_url is None:
            from flows.prefect_server import prefect_server

            typer.echo(f"starting a Prefect server with its UI at http://{host}:{port} ...")
            api_url = stack.enter_context(prefect_server(host=host, port=port)).api_url
            os.environ["PREFECT_API_URL"] = api_url  # before Prefect is imported: its settings read it
        from flows.deployments import serve_deployments
        from flows.processes import SERVE_PID_ENV

        os.environ[SERVE_PID_ENV] = str(os.getpid())  # the flow runs it starts end with it (flows/processes.py)
        serve_deployments(cfg, config_path=config.resolve(), api_url=api_url, scale_out=scale_out)


def main() -> None:
    quiet_process_exit()  # first: runs after every other exit handler
    to_terminal()
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError:  # the help is printed already
        code = 2
    except ClickException as err:  # a usage error: one line, as every other error
        command = err.ctx.command_path.split(" ", 1)[1:] if getattr(err, "ctx", None) else []
        error_line(USAGE.format(message=one_line(err.format_message()),
                                 help=" ".join(["priceparity", *command, "--help"])))
        code = err.exit_code
    except typer.Abort:  # Ctrl-C
        code = 130
    except Exception as err:  # a bug of ours: its traceback (no library text that may quote the data), exit 1
        scrub(err)
        traceback.print_exc()
        code = 1
    _exit_now(code or 0)


def _exit_now(code: int) -> None:
    """Run the exit handlers (Prefect's: its last logs and events to the server), then end the process without
    finalizing the interpreter: freeing an audit's arrays and unloading numba's and DuckDB's modules costs
    about 1.4 s after the command's last line, and is where duckdb's nanobind prints its leak report."""
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()  # what a normal exit runs; os._exit alone would skip them
    os._exit(code)


if __name__ == "__main__":
    main()
