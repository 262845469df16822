"""Great Expectations validation of each ingest batch: the independent gate before the warehouse.

The row rules in SQL (audits/staging.py) quarantine bad rows with their reasons; GE then validates
the rows the batch is about to load against the canonical contract, so a hole in the rules stops
the batch instead of slipping through. Results are summed over chunks, one entry per expectation.

GE 1.x has no working DuckDB data source, so rows go to GE as pandas chunks of about
`validation.chunk_rows`, taken from DuckDB through Arrow (bounded memory). Choices that make this
fast without weakening it (about 0.7 s of CPU per million rows instead of 5 to 9 s; 0.6 s with
chunks of a million rows, where the per-chunk overhead of GE weighs less):
- Chunks are hash partitions of transaction_id, not row ranges: equal ids always share a chunk, so
  uniqueness checked per chunk is uniqueness over the batch. A batch of several chunks is first sorted
  by chunk into a temp table, one pass, so that fetching a chunk reads only its own rows.
- Only the columns an expectation reads, fetched as Arrow (no Decimal objects, no row-wise conversion);
  money as float64 (comparisons with 0 and between two prices are exact enough; sums are never taken
  here) and timestamps as datetime64[ns], which GE compares vectorised (datetime64[us] sends it down
  a per-value Python path, about 10 s per million rows).
- GE fingerprints every in-memory batch by hashing the whole DataFrame (about 1 s per million rows,
  twice per chunk) only to label it; the fingerprint is switched off (`disable_batch_fingerprint`).

Importing great_expectations takes seconds, so this module is imported lazily by the ingest.
"""

from __future__ import annotations

import datetime as dt
import gc
import importlib.util
import logging
import math
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import duckdb

from audits.config import Config

# every staged row has these (a source without customer ids, products or quantities gets their documented
# values, audits/staging.py); the optional ones are expected only of a batch whose source has them: a
# snapshot has no timestamp, a book whose outcome is another column no unit price
REQUIRED_COLUMNS = ("transaction_id", "customer_id", "product_id", "quantity")
OPTIONAL_COLUMNS = ("timestamp", "unit_price", "list_price", "currency")
_FLOAT_COLUMNS = ("quantity", "unit_price", "list_price")
ACCEPTED = "len(reasons) = 0 and not is_repeat"
CHUNKED = "validation_chunks"  # temp table of a batch of several chunks, sorted by chunk
# datetime64[ns] spans 1678-2261: values beyond are clamped to its ends, which stay out of any plausible
# range, so the timestamp expectation still fails for them instead of the cast failing
_NS_RANGE = "least(greatest(timestamp, timestamp '1678-01-01'), timestamp '2261-12-31')"


# Modules Great Expectations imports at load time only for expectations and renderers this suite never
# runs (KL divergence, KS tests, charts): scipy.stats with the scipy parts it pulls in, and altair.
# Importing them costs about 1 s of GE's 2.5 s here, the largest fixed cost of a nightly run.
DEFERRED_FOR_GE = ("scipy.stats", "altair")


class _Deferred(types.ModuleType):
    """Stands in sys.modules for a module until something reads an attribute it lacks; that first read
    imports the real module, which replaces the stand-in in sys.modules and answers the read. Later
    reads through the stand-in (a module that imported it early keeps a reference) are forwarded.
    A module with a `__getattr__` hook rather than importlib's LazyLoader: on Python 3.11 the import
    statement itself reads `__spec__` from what sys.modules holds, which makes LazyLoader load the
    module at its first `import`. The stand-in has the package's `__path__`, so that importing one of
    its submodules imports that submodule once, not the whole package and then the submodule again."""

    def __init__(self, name: str, path: list[str] | None) -> None:
        super().__init__(name)
        self.__spec__ = None  # what the import system reads: not being initialised
        if path is not None:
            self.__path__ = path
        self.__deferred_lock = threading.RLock()  # re-entrant: a submodule may read the stand-in while it loads

    def __getattr__(self, attribute: str) -> Any:
        name = self.__name__
        with self.__deferred_lock:
            if sys.modules.get(name) is self:
                del sys.modules[name]
                try:
                    real = importlib.import_module(name)
                except BaseException:
                    sys.modules[name] = self
                    raise
                # submodules imported through the stand-in were bound to it as attributes, not to the real one
                for key, value in list(vars(self).items()):
                    if isinstance(value, types.ModuleType) and value.__name__ == f"{name}.{key}":
                        vars(real).setdefault(key, value)
        return getattr(sys.modules[name], attribute)


def _defer(names: Sequence[str]) -> None:
    """Put a stand-in (see _Deferred) for each installed module that is not imported yet."""
    for name in names:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)  # imports the parent package (scipy's own is light)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            path = spec.submodule_search_locations
            sys.modules[name] = _Deferred(name, None if path is None else list(path))


def import_great_expectations() -> Any:
    """great_expectations, imported with the cyclic garbage collector paused, then `gc.freeze()`: the
    import builds a great many long-lived objects (pydantic models, expectation classes) that every later
    collection, and the interpreter's exit, would scan again. Measured here: import 2.0 -> 1.6 s,
    interpreter exit 0.66 -> 0.05 s. Freezing moves every object alive at that moment out of the
    collector's reach: cycles among them that become garbage later are not freed (once per process, a
    little memory at most; garbage of before is collected first). At exit, duckdb's bindings may then
    report such objects as leaked (the CLI silences what the interpreter prints at exit). Safe from any
    thread: while another thread imports GE, the import statement waits for it to finish. The modules in
    DEFERRED_FOR_GE get stand-ins first (about 0.75 s of the import; see _Deferred)."""
    first = "great_expectations" not in sys.modules
    enabled = gc.isenabled()
    if first:
        gc.collect()  # so that no garbage of before is frozen with GE
        gc.disable()
    try:
        if first:
            _defer(DEFERRED_FOR_GE)
        import great_expectations
    finally:
        if first:
            gc.freeze()
            if enabled:
                gc.enable()
    return great_expectations


def import_in_background() -> Future[Any]:
    """Start `import_great_expectations` on a thread and return its Future. The ingest stages and writes a
    batch in DuckDB, which releases the GIL, while the import runs; the batch's validation waits on the
    Future, so an error of the import is raised there. A daemon thread: a batch that stops before it
    validates does not keep the process alive for an import nobody needs."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(import_great_expectations())
        except BaseException as err:  # handed to whoever waits on the Future
            future.set_exception(err)

    threading.Thread(target=run, name="great-expectations-import", daemon=True).start()
    return future


def build_suite(config: Config, *, optional_columns: Sequence[str] = OPTIONAL_COLUMNS) -> list[Any]:
    """The transaction expectations, derived from the config's validation settings.

    `optional_columns`: which of OPTIONAL_COLUMNS the batch has (their checks apply only then).
    """
    gx = import_great_expectations()
    e = gx.expectations
    latest = dt.datetime.now() + dt.timedelta(days=config.max_future_days)
    numeric = [c for c in _FLOAT_COLUMNS if c in REQUIRED_COLUMNS or c in optional_columns]
    has_time, has_price = "timestamp" in optional_columns, "unit_price" in optional_columns
    not_null = [c for c in ("transaction_id", "timestamp", "customer_id", "product_id", "quantity", "unit_price")
                if c in REQUIRED_COLUMNS or c in optional_columns]
    suite: list[Any] = [
        *(e.ExpectColumnValuesToNotBeNull(column=c) for c in not_null),
        e.ExpectColumnValuesToBeUnique(column="transaction_id"),
        *(e.ExpectColumnValuesToBeInTypeList(column=c, type_list=["float64"]) for c in numeric),
        *([e.ExpectColumnValuesToBeInTypeList(column="timestamp", type_list=["datetime64[ns]"])] if has_time else []),
        *([e.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0, strict_min=True)] if has_price else []),
        e.ExpectColumnValuesToBeBetween(column="quantity", min_value=0, strict_min=True),
        *([e.ExpectColumnValuesToBeBetween(column="timestamp", min_value=dt.datetime.fromisoformat(config.earliest),
                                           max_value=latest)] if has_time else []),
    ]
    if "list_price" in optional_columns:
        suite.append(e.ExpectColumnValuesToBeBetween(column="list_price", min_value=0))
        if not config.allow_above_list and has_price:
            suite.append(e.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="list_price", column_B="unit_price", or_equal=True,
                ignore_row_if="either_value_is_missing"))
    if "currency" in optional_columns:
        suite.append(e.ExpectColumnValuesToBeInSet(column="currency", value_set=[c.upper() for c in config.currencies]))
    return suite


def validate_transactions(
    con: duckdb.DuckDBPyConnection,
    staged: str,
    *,
    config: Config,
    optional_columns: Sequence[str] = OPTIONAL_COLUMNS,
    label: str = "batch",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Validate the accepted rows of a staged batch (no reasons, not a verbatim repeat); one dict per expectation.

    `staged` needs the canonical columns plus `reasons`, `is_repeat` and `id_hash` (hash of transaction_id).
    """
    gx = import_great_expectations()
    disable_batch_fingerprint()
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.monotonic()
    optional = [c for c in OPTIONAL_COLUMNS if c in optional_columns]
    expectations = build_suite(config, optional_columns=optional)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("priceparity")
        .add_dataframe_asset("transactions")
        .add_batch_definition_whole_dataframe("batch")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="transactions", expectations=expectations))

    columns = ", ".join(
        f"cast({c} as double) as {c}" if c in _FLOAT_COLUMNS
        else f"cast({_NS_RANGE} as timestamp_ns) as timestamp" if c == "timestamp" else c
        for c in (*REQUIRED_COLUMNS, *optional))
    # fetchall completes the result, which con.sql below needs (DuckDB refuses a pending execute())
    accepted = con.execute(f"select count(*) from {staged} where {ACCEPTED}").fetchall()[0][0]
    n_chunks = max(1, math.ceil(accepted / config.chunk_rows))
    totals: dict[str, dict[str, Any]] = {}
    validated = 0
    if n_chunks > 1:
        _sort_into_chunks(con, staged, columns, n_chunks)
    try:
        for chunk in range(n_chunks):
            frame = _fetch_chunk(con, staged, columns, n_chunks, chunk)
            if not frame.empty:
                validated += len(frame)
                _add_results(totals, batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite),
                             len(frame))
            if progress and n_chunks > 1:
                seconds = time.monotonic() - started
                progress(f"{label}: validated chunk {chunk + 1}/{n_chunks}, {validated:,} rows "
                         f"({validated / max(seconds, 1e-9):,.0f} rows/s)")
    finally:
        con.execute(f"drop table if exists {CHUNKED}")
    if progress:
        seconds = time.monotonic() - started
        failed = sum(not e["success"] for e in totals.values())
        progress(f"{label}: Great Expectations checked {len(expectations)} expectations on {validated:,} rows "
                 f"in {seconds:.1f} s ({validated / max(seconds, 1e-9):,.0f} rows/s): "
                 + ("all passed" if not failed else f"{failed} failed"))
    return list(totals.values())


def _sort_into_chunks(con: duckdb.DuckDBPyConnection, staged: str, columns: str, n_chunks: int) -> None:
    """Temp table CHUNKED: the accepted rows' validated columns, sorted by chunk, so that each chunk is then
    read from its own stretch of row groups (DuckDB skips the others by their min/max) instead of by a
    scan of the whole batch. n scans of the batch grow with the square of its size, and once the batch
    no longer fits in memory each scan reads it back from disk: measured here, the ten scans of 10M rows
    took 2.8 s and the sort 3.9 s, but 20M rows took 32.6 s against 14.5 s and 30M 74 s against 22.7 s."""
    # typed parameter: an untyped $n makes DuckDB compute the modulo in HUGEINT, 10 times slower
    con.execute(f"""
        create or replace temp table {CHUNKED} as
        select {columns}, (id_hash % $n::ubigint)::uinteger as chunk
        from {staged} where {ACCEPTED} order by chunk""", {"n": n_chunks})


def _fetch_chunk(con: duckdb.DuckDBPyConnection, staged: str, columns: str, n_chunks: int, chunk: int) -> Any:
    """Chunk `chunk` of n_chunks as a pandas DataFrame (through Arrow): from CHUNKED when the batch was
    sorted into chunks, else (one chunk) the accepted rows of `staged` themselves."""
    if n_chunks == 1:
        relation = con.sql(f"select {columns} from {staged} where {ACCEPTED}")
    else:
        relation = con.sql(f"select * exclude (chunk) from {CHUNKED} where chunk = $chunk::uinteger",
                           params={"chunk": chunk})
    return relation.to_arrow_table().to_pandas()


def _add_results(totals: dict[str, dict[str, Any]], result: Any, rows: int) -> None:
    """Add one chunk's validation result to the totals, one entry per expectation and column."""
    for item in result.results:
        kwargs = item.expectation_config.kwargs
        column = kwargs.get("column") or f"{kwargs.get('column_A')} >= {kwargs.get('column_B')}"
        name = item.expectation_config.type
        entry = totals.setdefault(f"{name}:{column}", {
            "expectation": name, "column": column, "success": True, "unexpected_count": 0, "element_count": 0})
        entry["success"] = entry["success"] and bool(item.success)
        entry["unexpected_count"] += int(item.result.get("unexpected_count") or 0)
        entry["element_count"] += int(item.result.get("element_count") or rows)


def disable_batch_fingerprint() -> None:
    """Stop GE from hashing each in-memory DataFrame: the hash only labels the batch and costs about
    1 s per million rows. GE hashes frames smaller than HASH_THRESHOLD bytes; 0 means never. Only
    speed depends on it (tests/audits/test_validate.py notices if a GE upgrade drops the constant)."""
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0
