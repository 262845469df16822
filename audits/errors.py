"""Errors a user can cause, each mapped to the CLI's exit code.

The message is the whole user-facing text: one line naming the file, column or key and what to do, and
no data value beyond a column name and a row number.
"""

import re
import unicodedata


def one_line(message: object, *, limit: int | None = None) -> str:
    """Fold a message (often a library's multi-line error) into one line, cut at `limit` characters.

    Every error a user sees is one line on stderr; this is the one place that makes it so.
    """
    text = " ".join(str(message).split())
    return text[:limit] if limit is not None else text


class PriceParityError(Exception):
    """Base of every error whose message is meant for the user, not for a traceback."""

    exit_code = 2


class ConfigError(PriceParityError):
    """The configuration file or a parameter is wrong."""


class InputError(PriceParityError):
    """A source cannot be read as configured (missing file or column, unreachable database)."""


class WarehouseBusyError(PriceParityError):
    """Another run holds the warehouse's writer lock for longer than we may wait."""


class DataQualityError(PriceParityError):
    """A batch failed validation beyond the configured tolerance; the run stops."""

    exit_code = 3


class NothingAuditedError(PriceParityError):
    """The audit could not look: no lines in the period after filters, or no check could be assessed. Its
    report (amber, not assessed) is written; the run stops as a data-quality stop does, never as a pass."""

    exit_code = 3


class ResourceError(PriceParityError):
    """The machine ran out of memory or disk space; what the run was writing was rolled back."""

    exit_code = 3


# Library errors (DuckDB, Arrow, the PostgreSQL driver) quote what they choked on: a CSV line, a value that
# would not convert, a key. Their text never reaches a message, a log or a report; `data_free_reason` names
# the condition in these words instead, with the line number when the library gives one.
_CONDITIONS: tuple[tuple[str, str], ...] = (
    (r"maximum line size", "a line longer than the CSV reader's limit: is it a CSV file, with this delimiter?"),
    (r"invalid unicode|not utf-8 encoded|byte sequence", "text that is not in the configured encoding: set the "
                                                         "source's encoding"),
    (r"sniffing file|expected number of columns|too many columns|not enough columns|dialect",
     "rows whose number of fields differs from the header's: check the delimiter and the quoting"),
    (r"unterminated quote", "an unterminated quote"),
    (r"could not convert|conversion error|invalid input syntax|out of range", "a value that does not convert to "
                                                                              "its column's type"),
    (r"no space left", "no space left on the device"),
    (r"out of memory|failed to allocate|memory limit", "out of memory"),
    (r"magic bytes|footer|parquet|thrift", "not a readable Parquet file: damaged, truncated or another format"),
    (r"gzip|zlib|zstd|decompress|compress", "a damaged compressed file"),
    (r"permission denied", "permission denied"),
    (r"no such file|does not exist|not found", "a file, table or column that does not exist"),
)
# DuckDB counts the line of an over-long line within its read buffer, not the file: that number would mislead
_LINE_UNKNOWN = ("maximum line size",)
_LINE = re.compile(r"\bon line:?\s*(\d+)", re.IGNORECASE)
_LIBRARIES = {"_duckdb": "DuckDB", "duckdb": "DuckDB", "pyarrow": "Arrow", "adbc_driver_manager": "PostgreSQL"}
# PostgreSQL's data exceptions and integrity violations (SQLSTATE classes 22 and 23) quote values and rows
_DATA_SQLSTATES = ("22", "23")


def data_free_reason(err: BaseException) -> str:
    """Why a library failed, in our words: the condition and line number, never the library's own text,
    which may quote the data. Also makes this the error's text (its `args`), so that a traceback printing the
    library's error as the cause of ours (a Prefect task's log) shows these words instead. An error of ours
    is returned as it reads."""
    if isinstance(err, PriceParityError) or getattr(err, "is_data_free", False):
        return one_line(err)
    text = str(err)
    library = _LIBRARIES.get(type(err).__module__.split(".")[0], type(err).__module__.split(".")[0])
    sqlstate = str(getattr(err, "sqlstate", "") or "")
    condition = next((words for pattern, words in _CONDITIONS if re.search(pattern, text, re.IGNORECASE)), None)
    if sqlstate.startswith(_DATA_SQLSTATES):
        condition = f"a value or row the database refused (SQLSTATE {sqlstate})"
    line = _LINE.search(text)
    if line and not any(re.search(p, text, re.IGNORECASE) for p in _LINE_UNKNOWN):
        condition = f"line {line.group(1)}: {condition or 'an error'}"
    kind = f"{library} {type(err).__name__}"
    reason = f"{condition} [{kind}]" if condition else f"{kind}, whose text is not shown: it may quote the data"
    err.args = (reason,)
    err.is_data_free = True  # type: ignore[attr-defined]
    return reason


# Library errors whose text may quote a value (a conversion, a CSV line, a key, a row); errors about SQL
# (binder, catalog, parser) name identifiers, which tell a developer what went wrong, and keep their text
_QUOTING = ("DataError", "InvalidInputException", "IntegrityError", "ArrowInvalid", "ArrowTypeError")


def scrub(err: BaseException) -> None:
    """Reword (data_free_reason) every library error in `err`'s chain whose text may quote a value: before a
    traceback of it is printed or logged (a bug's traceback on stderr, a Prefect task's log)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if any(base.__name__ in _QUOTING for base in type(err).__mro__):
            data_free_reason(err)
        err = err.__cause__ or err.__context__


def printable(text: str) -> str:
    """`text` with control and format characters (ANSI escapes, bidi overrides) written as escapes, so that a
    column name read from a file cannot colour, move or hide what a terminal or a log shows."""
    return "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf") else ch.encode("unicode_escape").decode("ascii")
        for ch in text)
