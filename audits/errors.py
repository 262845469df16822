"""Errors a user can cause, each mapped to the CLI's exit code.

The message is the whole user-facing text: one line naming the file, column or key and what to do.
"""


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
