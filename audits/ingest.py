"""Ingest: load each source's new rows into the warehouse, one all-or-nothing batch per source.

A batch reads what is new (audits/sources.py: new files, or PostgreSQL rows past the watermark),
types and checks every row in DuckDB (audits/staging.py) and then, in ONE DuckDB transaction,
writes the quarantine, upserts the good rows on (source, transaction_id), validates the rows it
loads with Great Expectations (audits/validate.py), records the files read, the batch and its
expectation results (audits/ledger.py), and commits. Nothing is committed before the expectations
are met: a failed expectation rolls the rows back. A crash before COMMIT leaves the warehouse as it
was and the next run reads the same files or rows again; a re-run of the same night writes nothing
twice. A failing batch commits its quarantine and its record, then stops the run.

Row accounting of a loaded batch: read = loaded (new keys) + replaced (corrections of loaded keys)
+ duplicate (already loaded unchanged, or repeated verbatim within the batch) + quarantined.
Everything row-level stays in DuckDB; Python sees column names, counts and the chunks GE validates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, NamedTuple

import duckdb

from audits.columns import COMPUTED_COLUMNS
from audits.config import CANONICAL_TRANSACTION_COLUMNS, TIME_GRAINS, Config, SourceConfig
from audits.derive import Derived, bind_derived, check_derived
from audits.errors import ConfigError, DataQualityError, InputError, data_free_reason, one_line, printable, scrub
from audits.ledger import (
    BatchResult,
    data_quality_summary,
    is_recorded,
    later_watermark,
    record_batch,
    record_expectations,
    record_files,
    stored_watermark,
)
from audits.renames import adopt_renamed_source
from audits.sources import SOURCE_FILE_COLUMN, SourceRead, postgres_origin, read_source, unreadable
from audits.sqlfiles import Fragment, Ident, idents, load_sql
from audits.staging import TRANSACTION_TYPES, stage_customers, stage_transactions
from audits.warehouse import add_attribute_columns

__all__ = ["BatchResult", "data_quality_summary", "ingest_all", "ingest_customers", "ingest_transactions"]

MISSING_COLUMN = (
    "{where}: column {column!r} (canonical '{canonical}') is not in source '{source}'; "
    "its columns are {available}. Fix [sources.columns] in the config"
)
EMPTY = "{where}: source '{source}' has no rows; check the export or table that should fill it"
TOO_MANY_BAD = (
    "{where}: {bad:,} of {read:,} rows ({share:.1%}) of source '{source}' failed validation, more than "
    "validation.max_bad_share = {limit:.1%} (top reasons: {reasons}); nothing was loaded, the rows are in "
    "table quarantine (batch {batch_id}): fix the source and run again"
)
FAILED_EXPECTATIONS = (
    "{where}: source '{source}' failed Great Expectations {names} although its rows passed the row rules "
    "(batch {batch_id}); nothing was loaded: see table expectation_results and report it as a bug"
)
RESERVED_ATTRIBUTE = (
    "source '{source}': attribute {attribute!r} in sources[].attributes is a column the warehouse already has; "
    "remove it from the attributes (canonical columns are loaded anyway)"
)
NO_ID_FOR_WATERMARK = (
    "source '{source}': sources[].watermark is 'transaction_id' but the source has no transaction_id column "
    "(a derived one cannot be a watermark); map one in [sources.columns] or use the 'timestamp' watermark"
)
NO_TIMESTAMP_FOR_CELL = (
    "{where}: source '{source}' has no timestamp column (canonical 'timestamp'), but audit.cell has {grain!r}, a "
    "time grain of the timestamp; map the timestamp in [sources.columns], or make audit.cell the columns that "
    "make two rows comparable (e.g. a year column)"
)
# what a canonical column the source lacks means (a progress note, so that an unmapped column is noticed)
ABSENT_MEANS = {"timestamp": "one snapshot, audited as a whole", "unit_price": "none (the outcome is another column)",
                "quantity": "1 per row", "customer_id": "each row is its own customer",
                "product_id": "one product", "transaction_id": "ids derived from each row's content"}
_CUSTOMER_RESERVED = ("customer_id", "customer_since", "batch_id")
_TEMP_TABLES = ("src_rows", "staged", "bad_rows", "matched")

Progress = Callable[[str], None]
Kind = Literal["transactions", "customers"]


def ingest_all(
    con: duckdb.DuckDBPyConnection, config: Config, *, progress: Progress | None = None
) -> list[BatchResult]:
    """Load every configured source, then the customers; stop at the first failing batch."""
    results = [ingest_transactions(con, source, config, progress=progress) for source in config.sources]
    if config.customers is not None:
        results.append(ingest_customers(con, config.customers, config, progress=progress))
    return results


def ingest_transactions(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, config: Config, *, progress: Progress | None = None
) -> BatchResult:
    """Load one transaction source's new rows, upserting on (source, transaction_id); a renamed source takes
    over its rows first (audits/renames.py)."""
    adopt_renamed_source(con, source, [s.name for s in config.sources], progress=progress)
    return _Batch(con, source, config, kind="transactions", progress=progress).run()


def ingest_customers(
    con: duckdb.DuckDBPyConnection, source: SourceConfig, config: Config, *, progress: Progress | None = None
) -> BatchResult:
    """Load the customer table, upserting on customer_id; every other column becomes a VARCHAR attribute."""
    return _Batch(con, source, config, kind="customers", progress=progress).run()


class _Counts(NamedTuple):
    """A staged batch's rows: read, bad (quarantined), repeats within the batch, each reason's count, whether
    few enough are bad for the batch to load (audit.max_bad_share; transactions must also meet every
    expectation), and the largest watermark of its good rows (transactions that may load)."""

    read: int
    bad: int
    repeat: int
    reasons: dict[str, int]
    loadable: bool
    batch_max: Any

    @property
    def share(self) -> float:
        return self.bad / self.read


class _Batch:
    """One source's batch: read and stage, then write, validate and record it in one transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection, source: SourceConfig, config: Config, *, kind: Kind,
                 progress: Progress | None) -> None:
        self.con, self.source, self.config, self.kind, self.progress = con, source, config, kind, progress
        self.mapped: dict[str, str | None] = {}
        self.attributes: dict[str, str] = {}  # warehouse column -> source column
        self.derived: dict[str, Derived] = {}  # derived column name -> its checked expression
        self.great_expectations: Future[Any] | None = None  # GE's import, started once rows are known to come
        self.started = time.monotonic()
        self.started_at = dt.datetime.now()
        self.batch_id = con.execute("select nextval('batch_ids')").fetchall()[0][0]
        self.previous_watermark = stored_watermark(con, source.name) if kind == "transactions" else None

    def run(self) -> BatchResult:
        try:
            return self._run()
        except Exception as err:  # record the failed attempt, then let the caller see the error
            self._record_failure(err)
            raise
        finally:
            for table in _TEMP_TABLES:
                self.con.execute(f"drop table if exists {table}")

    def _run(self) -> BatchResult:
        source = self.source
        read = read_source(self.con, source, watermark=self.previous_watermark, require=self._require,
                           fingerprint=_fingerprint(source, self.config), progress=self.progress)
        if read.rows is None or (read.rows == 0 and self.previous_watermark is not None):
            return self._nothing_new(read)
        if read.rows == 0:
            raise InputError(EMPTY.format(where=_where(source), source=source.name))
        self._stage(read)
        counts = self._count(read)
        result, failed = self._commit(read, counts)
        self._say_done(result)
        if failed and counts.loadable:
            names = ", ".join(f"{e['expectation']}({e['column']})" for e in failed)
            raise DataQualityError(FAILED_EXPECTATIONS.format(where=_where(source), source=source.name, names=names,
                                                              batch_id=self.batch_id))
        if result.status != "loaded":
            top = ", ".join(f"{reason} ({n:,})" for reason, n in list(counts.reasons.items())[:3])
            raise DataQualityError(TOO_MANY_BAD.format(
                where=_where(source), bad=counts.bad, read=counts.read, share=counts.share, source=source.name,
                limit=self.config.max_bad_share, reasons=top, batch_id=self.batch_id))
        return result

    def _stage(self, read: SourceRead) -> None:
        """Temp table `staged`: the rows read, typed, each with its reasons (audits/staging.py)."""
        source = self.source
        source_types = dict(read.columns)
        if self.derived:
            types = bind_derived(self.con, self.derived, read.relation, read.params,
                                 file=str(self.config.path or "<config>"))
            source_types |= {item.column: types[name] for name, item in self.derived.items()}
        self._say_meaning(source_types)
        if self.kind == "transactions":  # GE's import (seconds) runs while DuckDB stages and writes the rows
            from audits.validate import import_in_background

            self.great_expectations = import_in_background()
        try:
            if self.kind == "transactions":
                stage_transactions(self.con, source, self.config, read, mapped=self.mapped,
                                   attributes=list(self.attributes), source_types=source_types, derived=self.derived)
            else:
                stage_customers(self.con, source, read, id_column=self.mapped["customer_id"],
                                since_column=self.mapped["customer_since"], attributes=self.attributes,
                                source_types=source_types, derived=self.derived)
        except (duckdb.IOException, duckdb.InvalidInputException) as err:
            if read.relation == "src_rows":  # staged from the copy in DuckDB: not a reading error
                raise
            raise unreadable(source, read.files, err) from err

    def _count(self, read: SourceRead) -> _Counts:
        """The staged rows counted (and the bad ones kept for the quarantine, the raw rows let go)."""
        rows_read, rows_bad, rows_repeat = self.con.execute(
            "select count(*), count(*) filter (len(reasons) > 0), count(*) filter (is_repeat) from staged"
        ).fetchall()[0]
        self._keep_bad_rows(read, rows_bad)  # and let go of the raw rows: the rest works on `staged`
        reasons = dict(self.con.execute(
            "select reason, count(*) from (select unnest(reasons) as reason from staged) "
            "group by all order by 2 desc, 1").fetchall())
        loadable = rows_bad / rows_read <= self.config.max_bad_share
        batch_max = None
        if self.kind == "transactions" and loadable:
            batch_max = self.con.execute(
                "select max(watermark_value) from staged where len(reasons) = 0").fetchall()[0][0]
        return _Counts(rows_read, rows_bad, rows_repeat, reasons, loadable, batch_max)

    def _commit(self, read: SourceRead, counts: _Counts) -> tuple[BatchResult, list[dict[str, Any]]]:
        """In one transaction: the quarantine, the rows (when loadable), their validation, the batch's record;
        a failed expectation rolls the rows back and keeps the rest. Returns the result and the failed
        expectations."""
        source, loadable = self.source, counts.loadable
        self.con.execute("begin transaction")
        try:
            # The rows are written first and validated before COMMIT: a failed expectation rolls them back
            loaded, replaced, duplicate = self._write(loadable)
            expectations = self._validate() if self.kind == "transactions" and counts.read > counts.bad else []
            failed = [e for e in expectations if not e["success"]]
            status = "loaded" if loadable and not failed else "failed_quality"
            if loadable and failed:  # undo the rows; the quarantine and the record of the batch stay
                self.con.execute("rollback")
                self.con.execute("begin transaction")
                loaded, replaced, duplicate = self._write(False)
            watermark_to = self.previous_watermark  # a failed batch moves nothing, the watermark neither
            if status == "loaded":
                duplicate += counts.repeat
                record_files(self.con, source.name, self.batch_id, [
                    (f.path, f.size_bytes, f.modified_ns, read.rows_per_file.get(f.path, 0)) for f in read.files],
                    fingerprint=_fingerprint(source, self.config))
                if self.kind == "transactions":
                    watermark_to = later_watermark(self.previous_watermark, counts.batch_max)
            result = BatchResult(self.batch_id, source.name, counts.read, loaded, replaced, duplicate, counts.bad,
                                 time.monotonic() - self.started, status, expectations, counts.reasons,
                                 len(read.files), read.files_skipped, read.watermark_from, watermark_to)
            self._record(result, message=None if status == "loaded" else "stopped: see quarantine")
            record_expectations(self.con, self.batch_id, source.name, expectations)
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            raise
        return result, failed

    def _write(self, load: bool) -> tuple[int, int, int]:
        """In the open transaction: the quarantined rows and, when `load`, the upsert of the accepted ones;
        returns (new, replaced, identical) as `_upsert`."""
        add_attribute_columns(self.con, self.kind, list(self.attributes))
        self.con.execute("insert into quarantine by name select * from bad_rows")
        return self._upsert() if load else (0, 0, 0)

    def _require(self, available: list[str]) -> None:
        """Check the column mapping and the derived expressions against the source's columns before any
        row is read; decide which columns are kept."""
        source = self.source
        self.derived = check_derived(source.derive, available, file=str(self.config.path or "<config>"),
                                     key_prefix=_source_key(self.config, source), source=source.name)
        derived = {name: item.column for name, item in self.derived.items()}
        if self.kind == "customers":
            self.mapped["customer_id"] = derived.get("customer_id") or _require_column(source, "customer_id", available)
            since = source.source_column("customer_since")
            if "customer_since" in source.columns:
                _require_column(source, "customer_since", available)
            self.mapped["customer_since"] = derived.get("customer_since") or (since if since in available else None)
            used = {self.mapped["customer_id"], self.mapped["customer_since"]}
            for column in available:
                name = re.sub(r"[^a-z0-9_]", "_", column.lower()).strip("_")
                if column not in used and name and name[0].isalpha() and name not in _CUSTOMER_RESERVED:
                    self.attributes.setdefault(name, column)
            for name, column in derived.items():
                if name not in _CUSTOMER_RESERVED:
                    self.attributes[name] = column
            return
        for canonical in CANONICAL_TRANSACTION_COLUMNS:
            column = source.source_column(canonical)
            if canonical in derived:
                self.mapped[canonical] = derived[canonical]
            elif canonical in source.columns or (canonical == "unit_price" and self.config.outcome_column == canonical):
                self.mapped[canonical] = _require_column(source, canonical, available)
            else:  # optional and not mapped: read it when the source happens to have it
                self.mapped[canonical] = column if column in available else None
        if source.watermark == "transaction_id" and (self.mapped["transaction_id"] is None
                                                     or "transaction_id" in derived):
            raise ConfigError(NO_ID_FOR_WATERMARK.format(source=source.name))
        if self.mapped["timestamp"] is None and (grains := [g for g in self.config.cell if g in TIME_GRAINS]):
            raise ConfigError(NO_TIMESTAMP_FOR_CELL.format(where=_where(source), source=source.name, grain=grains[0]))
        for attribute in source.attributes:
            if attribute in (*CANONICAL_TRANSACTION_COLUMNS, "source", "batch_id"):
                raise ConfigError(RESERVED_ATTRIBUTE.format(source=source.name, attribute=attribute))
            self.attributes[attribute] = derived.get(attribute) or _require_column(source, attribute, available)
        # kept without being listed: derived columns, and the columns the audit names that the source has
        for name in (*derived, *source.audited):
            if name in (*CANONICAL_TRANSACTION_COLUMNS, *COMPUTED_COLUMNS, "source", "batch_id"):
                continue
            if name in derived:
                self.attributes[name] = derived[name]
            elif source.source_column(name) in available:
                self.attributes.setdefault(name, source.source_column(name))
        self.mapped |= self.attributes

    def _keep_bad_rows(self, read: SourceRead, rows_bad: int) -> None:
        """Temp table `bad_rows`: each bad row as the quarantine keeps it (reasons, values as read, file and
        row within it); then drop the raw rows' copy, so that validation and loading run with less memory.
        The raw rows are read again only when some are bad (from the files themselves for Parquet)."""
        sql, params = load_sql("ingest/bad_rows").prepare(
            {"batch_id": self.batch_id, "source": self.source.name, "any_bad": rows_bad > 0},
            rows=Fragment(read.relation), row_id=Fragment(read.row_id), file_column=Ident(SOURCE_FILE_COLUMN),
            columns=idents(read.columns))
        self.con.execute(sql, {**read.params, **params})  # the raw rows' relation may use read.params
        self.con.execute("drop table if exists src_rows")

    def _validate(self) -> list[dict[str, Any]]:
        from audits.validate import validate_transactions

        if self.great_expectations is not None:
            self.great_expectations.result()  # imported beside the staging; its error, if any, is raised here

        optional = [c for c in ("timestamp", "unit_price", "list_price", "currency") if self.mapped.get(c)]
        if self.source.currency and "currency" not in optional:
            optional.append("currency")
        return validate_transactions(self.con, "staged", config=self.config, optional_columns=optional,
                                     label=self.source.name, progress=self.progress)

    def _upsert(self) -> tuple[int, int, int]:
        """Merge the accepted rows into the table (sql/ingest/merge_*.sql): insert new keys, replace changed
        rows, leave identical ones; returns (new, replaced, identical). Only the keys already in the warehouse
        are set apart (`matched`); new rows go straight from `staged` to the table, so a first load of many
        rows copies them once."""
        if self.kind == "transactions":
            columns, keys = [*TRANSACTION_TYPES, *self.attributes], ("source", "transaction_id")
        else:
            columns, keys = ["customer_id", "customer_since", *self.attributes], ("customer_id",)
        shape = {"table": Ident(self.kind), "keys": idents(keys), "columns": idents(columns),
                 "with_source": self.kind == "transactions"}
        values = {"source": self.source.name, "batch_id": self.batch_id}

        def run(name: str, *identifiers: str) -> duckdb.DuckDBPyConnection:
            sql, params = load_sql(f"ingest/{name}").prepare(values, **{k: shape[k] for k in identifiers})
            return self.con.execute(sql, params)

        run("merge_matched", "table", "keys", "columns", "with_source")
        total, changed, same_count = run("merge_counts").fetchall()[0]
        if changed:
            run("merge_delete", "table", "keys")
        if total > same_count:
            run("merge_insert", "table", "keys", "columns", "with_source")
        return total - changed - same_count, changed, same_count

    def _nothing_new(self, read: SourceRead) -> BatchResult:
        result = BatchResult(self.batch_id, self.source.name, 0, 0, 0, 0, 0, time.monotonic() - self.started, "loaded",
                             files_skipped=read.files_skipped, watermark_from=read.watermark_from,
                             watermark_to=self.previous_watermark)
        self.con.execute("begin transaction")
        try:
            self._record(result, message="nothing new")
            self.con.execute("commit")
        except BaseException:
            self.con.execute("rollback")
            raise
        return result

    def _record(self, result: BatchResult, *, message: str | None) -> None:
        origin = postgres_origin(self.source) if self.source.kind == "postgres" and result.status == "loaded" else None
        record_batch(self.con, result, started_at=self.started_at, message=message, origin=origin,
                     watermark_column=self.source.watermark if self.kind == "transactions" else None)

    def _record_failure(self, err: BaseException) -> None:
        """Record a batch that failed before committing (its own small transaction); never masks `err`. The
        record holds no data value: a library's text that may quote one is reworded (errors.scrub)."""
        try:
            if not is_recorded(self.con, self.batch_id):
                result = BatchResult(self.batch_id, self.source.name, 0, 0, 0, 0, 0,
                                     time.monotonic() - self.started, "failed")
                scrub(err)
                self._record(result, message=printable(one_line(err, limit=300)))
        except duckdb.Error as record_err:
            err.add_note(f"(the failed batch could not be recorded: {data_free_reason(record_err)})")

    def _say_meaning(self, source_types: dict[str, str]) -> None:
        """Say what the source's absent canonical columns mean, and that a timestamp_format is not used for a
        typed timestamp column (a mapping forgotten shows here, not only in the report)."""
        if not self.progress or self.kind != "transactions":
            return
        notes = [f"no {c}: {ABSENT_MEANS[c]}" for c in ABSENT_MEANS if self.mapped.get(c) is None]
        column = self.mapped.get("timestamp")
        if self.source.timestamp_format and column and source_types.get(column, "VARCHAR").upper() != "VARCHAR":
            notes.append(f"timestamp_format not used: column {column!r} is already a typed "
                         f"{source_types[column].lower()}")
        if notes:
            self.progress(f"{self.source.name}: " + "; ".join(notes))

    def _say_done(self, result: BatchResult) -> None:
        if self.progress:
            self.progress(
                f"{result.source}: {result.rows_loaded:,} new, {result.rows_replaced:,} replaced, "
                f"{result.rows_duplicate:,} unchanged, {result.rows_quarantined:,} quarantined "
                f"in {result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s)")


def _require_column(source: SourceConfig, canonical: str, available: list[str]) -> str:
    column = source.source_column(canonical)
    if column not in available:
        shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
        raise InputError(MISSING_COLUMN.format(where=_where(source), column=column, canonical=canonical,
                                               source=source.name, available=shown))
    return column


def _fingerprint(source: SourceConfig, config: Config) -> str:
    """What decides how a file's rows are read and judged: its mapping and the validation rules.
    A file loaded under another fingerprint is read again (see audits/sources.py)."""
    decisive = (source.kind, sorted(source.columns.items()), source.attributes, source.currency, source.delimiter,
                source.encoding, source.timestamp_format, config.currencies, config.earliest,
                config.max_future_days, config.allow_above_list, sorted(source.derive.items()), source.na_values,
                sorted(source.audited))
    return hashlib.sha256(repr(decisive).encode()).hexdigest()[:16]


def _source_key(config: Config, source: SourceConfig) -> str:
    """The source's key in the config: `sources[N]` or `customers`."""
    if source is config.customers:
        return "customers"
    names = [s.name for s in config.sources]
    return f"sources[{names.index(source.name)}]" if source.name in names else "sources[]"


def _where(source: SourceConfig) -> str:
    return str(source.path) if source.path else f"postgres:{source.table or 'query'}"
