"""The flows' bodies: one code path, run as a Prefect flow run or directly in the CLI's process.

`on_demand` and `nightly` call the stages of flows/stages.py in order through a StageRunner. PREFECT
(flows/tasks.py) runs each stage as a Prefect task inside the flow runs of flows/on_demand.py and
flows/nightly.py, so the Prefect server records the run, its tasks, logs and artifact; that is what
`serve` and the CLI with PREFECT_API_URL set do. DIRECT calls the same stage functions in this process
and records nothing: the CLI without a Prefect server (docs/orchestration.md). Nothing here imports Prefect.
"""

from __future__ import annotations

import datetime as dt
import inspect
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from audits.config import Config, load_config
from audits.errors import ConfigError, DataQualityError, NothingAuditedError, one_line
from audits.findings import AuditResult
from audits.settings import ISO_DATE, SETTINGS_BY_KEY, threshold_settings
from flows import stages
from flows.progress import say
from flows.dask_contrast import ScaleOut

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
ON_DEMAND_SCOPE = "on-demand"
MONTH_TO_DATE = "month-to-date"
SNAPSHOT_SCOPE = "snapshot"  # the nightly's one audit of data without dates (no window to roll)
NIGHTLY_ARTIFACT = "nightly-audit"
ON_DEMAND_ARTIFACT = "on-demand-audit"
PERIOD_REVERSED = "period_start {start} is after period_end {end}; swap them"
BAD_PARAMETER = "parameter '{name}' must be {allowed}, got {value}"
# Why an audit covers the days it does, as the console and the report say. An on-demand audit with no period
# covers every day in the warehouse: asked a question without a period, a user means all the data they
# loaded (a policy book of two years audited as its last 30 days answered a question nobody asked).
PERIOD_ASKED = "the days asked for"
PERIOD_DEFAULTS = {
    (True, True): "all the data in the warehouse, {first} to {last}: no period was given (--from/--to)",
    (True, False): "from the first day of data, {first}: no start was given (--from)",
    (False, True): "up to the newest data, {last}: no end was given (--to)",
}
PERIOD_SNAPSHOT = "every row of the snapshot: its source has no dates (the period shown is the day of the run)"
NIGHTLY_WINDOW = "the last {days} days up to the newest data: audit.window_days (or --window-days)"
NIGHTLY_MONTH = "the month to date"
NOTHING_AUDITED = ("nothing to audit in {scope} {start} to {end}{filters}: {why}; the report says 'not "
                   "assessed': {report}")
# Who asked for a column, named in the error when the warehouse lacks it: the on-demand flow's parameters
# (the UI's form); the CLI names its flags instead.
FLOW_PARAMETERS = {"attributes": "parameter 'attributes'", "segment_by": "parameter 'segment_by'",
                   "filters": "parameter 'filters'"}


class StageRunner(Protocol):
    """Runs one stage of flows/stages.py, retrying it on source I/O when asked; keeps a markdown artifact."""

    def __call__(self, stage: Callable[..., T], /, *args: Any, retries: int = 0, retry_delay_seconds: float = 0.0,
                 **kwargs: Any) -> T: ...

    def artifact(self, *, key: str, description: str, markdown: str) -> None: ...


class DirectRunner:
    """Calls each stage in this process, retrying source I/O as the Prefect task does; records nothing."""

    def __call__(self, stage: Callable[..., T], /, *args: Any, retries: int = 0, retry_delay_seconds: float = 0.0,
                 **kwargs: Any) -> T:
        for delay in [*stages.retry_delays(retries, retry_delay_seconds), None]:
            try:
                return stage(*args, **kwargs)
            except Exception as err:
                if delay is None or not stages.is_source_io_error(err):
                    raise
                say(f"{stage.__name__}: {one_line(err, limit=300)}; retrying in {delay:g} s")
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def artifact(self, *, key: str, description: str, markdown: str) -> None:
        """Without a Prefect server there is nothing to keep it in; the terminal has had the same lines."""


DIRECT = DirectRunner()


class _Thresholds(BaseModel):
    """Thresholds for this run only; an empty field keeps the config's value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _in_range(self) -> _Thresholds:
        for name, value in self.model_dump(exclude_none=True).items():
            if (allowed := SETTINGS_BY_KEY[KEYS[name]].check(value)) is not None:
                raise ValueError(f"{name} must be {allowed}, got {value!r}")
        return self

    def overrides(self) -> dict[str, Any]:
        """Config keys (dotted) for the fields that are set."""
        return {KEYS[name]: value for name, value in self.model_dump(exclude_none=True).items()}


def _thresholds_model() -> type[_Thresholds]:
    """One optional field per threshold setting of audits/settings.py (the Prefect UI renders a form field for
    each), checked against the same allowed ranges: nothing states a threshold twice."""
    fields: dict[str, Any] = {}
    for setting in threshold_settings():
        kind = int if setting.type == "int" else float
        fields[setting.name] = (kind | None, Field(None, description=f"{setting.help} Allowed: {setting.allowed}."))
    return create_model("Thresholds", __base__=_Thresholds, **fields)


KEYS = {s.name: s.key for s in threshold_settings()}
Thresholds = _thresholds_model()


def on_demand_config(config_path: str | Path, *, attributes: list[str] | None, segment_by: list[str] | None,
                     thresholds: Thresholds) -> Config:
    """The config as an on-demand run sees it: the file, with this run's attributes, segments and thresholds."""
    overrides: dict[str, Any] = thresholds.overrides()
    if attributes is not None:
        overrides["audit.attributes"] = attributes
    if segment_by is not None:
        overrides["audit.segment_by"] = segment_by
    return load_config(Path(config_path), overrides=overrides)


def asked_columns(config: Config, *, attributes: list[str] | None, segment_by: list[str] | None,
                  filters: Mapping[str, str] | None, askers: Mapping[str, str] = FLOW_PARAMETERS) -> list[stages.Asked]:
    """Every column the audit will read, with who asked for it: this run's parameters, named by `askers`
    ({column} in an asker is replaced by the column), or the config's keys."""
    asked = []
    for name, given, key, used in (("attributes", attributes, "audit.attributes", config.attributes),
                                   ("segment_by", segment_by, "audit.segment_by", config.segment_by)):
        asked += [stages.Asked(c, by=askers[name].format(column=c)) if given is not None else stages.Asked(c, key=key)
                  for c in used]
    asked += [stages.Asked(c, key="audit.intersections") for combo in config.intersections for c in combo]
    asked += [stages.Asked(c, key="audit.controls") for c in config.controls]
    asked += [stages.Asked(c, by=askers["filters"].format(column=c), groups=False) for c in filters or {}]
    return asked


def on_demand(
    config_path: str,
    period_start: dt.date | None = None,
    period_end: dt.date | None = None,
    attributes: list[str] | None = None,
    segment_by: list[str] | None = None,
    filters: dict[str, str] | None = None,
    thresholds: Thresholds = Thresholds(),
    ingest_first: bool = False,
    out_dir: str | None = None,
    source_retries: int = 3,
    source_retry_delay_seconds: float = 10.0,
    scale_out: ScaleOut = ScaleOut(),
    *,
    run: StageRunner,
    askers: Mapping[str, str] = FLOW_PARAMETERS,
) -> str:
    """The on-demand flow (flows/on_demand.py takes its parameters from here): returns the report's path. `run`
    runs each stage; `askers` names who asked for a column in the error when the warehouse lacks it.

    Args:
        config_path: The TOML config file, as seen by the process that runs the flow.
        period_start: First day audited; empty: the first day of data (an on-demand question covers all the data loaded).
        period_end: Last day audited; empty: the day of the newest transaction.
        attributes: Customer attributes audited; empty: audit.attributes from the config.
        segment_by: Columns whose every value gets its own findings; empty: audit.segment_by.
        filters: Only lines with these column values, e.g. {"category": "grocery"} or {"channel": "web"}.
        thresholds: Thresholds for this run; empty fields keep the config's values.
        ingest_first: Load the sources' new rows before auditing.
        out_dir: Folder for report.html and findings.json; empty: output.dir/on-demand/RUN_ID.
        source_retries: Retries of the ingest when a source cannot be read (I/O only).
        source_retry_delay_seconds: Wait before the first retry; each further retry waits twice as long.
        scale_out: Where pass 2 of the disparity checks runs (this process or a Dask cluster).
    """
    check_parameters(period_start=period_start, period_end=period_end)
    config = on_demand_config(config_path, attributes=attributes, segment_by=segment_by, thresholds=thresholds)
    if period_start and period_end and period_start > period_end:
        raise ConfigError(PERIOD_REVERSED.format(start=period_start, end=period_end))
    quality = run(stages.ingest, config, retries=source_retries,
                  retry_delay_seconds=source_retry_delay_seconds) if ingest_first else None
    error = stages.unknown_column(config, asked_columns(config, attributes=attributes, segment_by=segment_by,
                                                        filters=filters, askers=askers))
    if error is not None:
        raise error
    start, end, reason = period_start, period_end, PERIOD_ASKED
    if start is None or end is None:
        first, last = run(stages.data_days, config)
        if first is None or last is None:  # a snapshot: its rows are in every period, so any day will do
            first = last = dt.date.today()
            reason = PERIOD_SNAPSHOT
        else:
            reason = PERIOD_DEFAULTS[(period_start is None, period_end is None)].format(first=first, last=last)
        start, end = start or first, end or last
    if start > end:
        raise ConfigError(PERIOD_REVERSED.format(start=start, end=end))
    result = run(stages.audit, config, start, end, scope=ON_DEMAND_SCOPE, data_quality=quality, filters=filters,
                 scale_out=scale_out, period_reason=reason)
    target = Path(out_dir) if out_dir else config.output_dir / ON_DEMAND_SCOPE / result.run.run_id
    report = run(stages.publish, config, result, target)
    run.artifact(key=ON_DEMAND_ARTIFACT, description="Headline counts of the on-demand audit",
                 markdown=headline_markdown("On-demand audit", {ON_DEMAND_SCOPE: result}, {ON_DEMAND_SCOPE: report}))
    stop_if_nothing_audited({ON_DEMAND_SCOPE: result}, {ON_DEMAND_SCOPE: report})
    return str(report)


def flow_parameters(body: Callable[..., Any]) -> Callable[[F], F]:
    """Give a flow function that takes `**parameters` the parameters of its body (declared once, there): the
    body's signature and docstring `Args:` without its keyword-only parameters (`run`, `askers`: the flow
    supplies them). Prefect reads both: its UI's form, a run's validation, the deployment's schema."""
    signature = inspect.signature(body, eval_str=True)
    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()
                  if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    body_doc = inspect.cleandoc(body.__doc__ or "")
    args = body_doc[body_doc.index("Args:"):]

    def declare(flow_fn: F) -> F:
        flow_fn.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        flow_fn.__doc__ = f"{inspect.cleandoc(flow_fn.__doc__ or '')}\n\n{args}"
        return flow_fn

    return declare


def check_parameters(**given: Any) -> None:
    """A day between 1900 and 2100 (as validation.earliest) and a window in audit.window_days's range: what the
    CLI's options are checked against, for a flow run's parameters too (a huge value overflowed the dates)."""
    for name, value in given.items():
        if isinstance(value, dt.date) and not ISO_DATE.test(value.isoformat()):
            raise ConfigError(BAD_PARAMETER.format(name=name, allowed=ISO_DATE.what, value=value))
        if name == "window_days" and value is not None:
            if (allowed := SETTINGS_BY_KEY["audit.window_days"].check(value)) is not None:
                raise ConfigError(BAD_PARAMETER.format(name=name, allowed=allowed, value=value))


def audit_windows(end: dt.date, *, window_days: int, month_to_date: bool) -> dict[str, tuple[dt.date, dt.date]]:
    """Scope name -> (first day, last day): the rolling window ending `end`, and the month to date."""
    windows = {f"rolling-{window_days}d": (end - dt.timedelta(days=window_days - 1), end)}
    if month_to_date:
        windows[MONTH_TO_DATE] = (end.replace(day=1), end)
    return windows


def nightly(
    config_path: str,
    as_of: dt.date | None = None,
    window_days: int | None = None,
    month_to_date: bool = True,
    source_retries: int = 3,
    source_retry_delay_seconds: float = 10.0,
    scale_out: ScaleOut = ScaleOut(),
    *,
    run: StageRunner,
) -> dict[str, str]:
    """The nightly flow (flows/nightly.py takes its parameters from here): returns each window's report path.
    `run` runs each stage.

    Args:
        config_path: The TOML config file, as seen by the process that runs the flow.
        as_of: Last day audited; empty: the day of the newest transaction.
        window_days: Length of the rolling window in days; empty: audit.window_days from the config.
        month_to_date: Also audit from the first of as_of's month to as_of.
        source_retries: Retries of the ingest when a source cannot be read (I/O only, never bad data).
        source_retry_delay_seconds: Wait before the first retry; each further retry waits twice as long.
        scale_out: Where pass 2 of the disparity checks runs (this process or a Dask cluster).
    """
    check_parameters(as_of=as_of, window_days=window_days)
    config = load_config(Path(config_path))
    try:
        quality = run(stages.ingest, config, retries=source_retries, retry_delay_seconds=source_retry_delay_seconds)
    except DataQualityError as err:
        run.artifact(key=NIGHTLY_ARTIFACT, description="The nightly audit stopped on data quality",
                     markdown=f"# Nightly audit stopped: data quality\n\n{err}\n\nNothing was audited.\n")
        raise
    newest = run(stages.data_days, config)[1]
    if newest is None:  # a snapshot without dates: its rows are in every window; audited once, as of the run
        day = as_of or dt.date.today()
        windows, reasons = {SNAPSHOT_SCOPE: (day, day)}, {SNAPSHOT_SCOPE: PERIOD_SNAPSHOT}
    else:
        days = window_days or config.window_days
        windows = audit_windows(as_of or newest, window_days=days, month_to_date=month_to_date)
        reasons = {scope: (NIGHTLY_WINDOW.format(days=days) if scope != MONTH_TO_DATE else NIGHTLY_MONTH)
                   for scope in windows}
    # The windows' audits in one stage (one warehouse connection), one after another; reports are published
    # once both are done.
    results = run(stages.audit_each_window, config, windows, data_quality=quality, scale_out=scale_out,
                  period_reasons=reasons)
    reports = {scope: run(stages.publish, config, result, config.output_dir / scope / result.run.run_id)
               for scope, result in results.items()}
    run.artifact(key=NIGHTLY_ARTIFACT, description="Headline counts of the nightly audit",
                 markdown=headline_markdown("Nightly audit", results, reports))
    stop_if_nothing_audited(results, reports)
    return {scope: str(path) for scope, path in reports.items()}


def stop_if_nothing_audited(results: Mapping[str, AuditResult], reports: Mapping[str, Path]) -> None:
    """A run that could not look (no lines in the period after filters, or no check assessed) is a stop, not a
    pass: its report says 'not assessed'; the command exits 3 with one line naming the period and filters."""
    for scope, result in results.items():
        if result.verdict != "not_assessed":
            continue
        filters = ", ".join(f"{k}={v}" for k, v in result.run.filters.items())
        why = ("no lines" if result.run.transactions == 0 else "no check could be assessed "
               f"({'; '.join(dict.fromkeys(c.reason for c in result.checks if c.reason))})")
        raise NothingAuditedError(NOTHING_AUDITED.format(
            scope=scope, start=result.run.period_start, end=result.run.period_end,
            filters=f" with {filters}" if filters else "", why=why, report=reports[scope]))


def headline_markdown(title: str, results: Mapping[str, AuditResult], reports: Mapping[str, Path]) -> str:
    """An artifact's text: per scope, its period, flagged counts by severity and status, and its report."""
    lines = [f"# {title}", "",
             "| scope | period | lines | high | medium | low | new | persisting | resolved | quarantined rows | report |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for scope, result in results.items():
        counts = result.severity_counts()
        status = {s: sum(f.status == s for f in result.flagged) for s in ("new", "persisting")}
        resolved = sum(f.status == "resolved" for f in result.findings)
        lines.append(
            f"| {scope} | {result.run.period_start} to {result.run.period_end} | {result.run.transactions:,} "
            f"| {counts['high']} | {counts['medium']} | {counts['low']} | {status['new']} | {status['persisting']} "
            f"| {resolved} | {result.data_quality.quarantined_rows} | `{reports[scope]}` |")
    return "\n".join(lines) + "\n"
