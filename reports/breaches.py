"""breaches.csv: the consistency rules' breaching lines, written next to report.html for review.

The audit hands them over as an Arrow table (`AuditResult.breaches`: transaction ids, product, day,
amounts; never a customer id). The report links the file from each rule's details. Written atomically
like the report; a run without breaching lines leaves no file (and removes a stale one, so a folder
reused for another run never offers the previous run's lines).

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula, so a text value from the
data (a product id, a discount code) that starts that way is written with a leading apostrophe, which
the spreadsheet shows as text (OWASP's advice for CSV injection); numbers and dates are written as
they are.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from audits.findings import AuditResult

BREACHES_NAME = "breaches.csv"
PRIVATE_COLUMNS = ("customer_id",)  # never written, whatever the table holds
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_breaches(result: AuditResult, out_dir: Path) -> Path | None:
    """Write `result.breaches` as `out_dir/breaches.csv` (a header row, then the rows as given); None
    and no file when the run has no breaching lines."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(out_dir) / BREACHES_NAME
    table = result.breaches
    if table is None:
        path.unlink(missing_ok=True)
        return None
    table = table.drop_columns([c for c in table.column_names if c in PRIVATE_COLUMNS])
    table = pa.table({name: _as_text(column) for name, column in zip(table.column_names, table.columns, strict=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            pacsv.write_csv(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _as_text(column: Any) -> Any:
    """A text column with formula-like values quoted for spreadsheets; other columns unchanged."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    risky = pc.starts_with(column, FORMULA_STARTS[0])
    for start in FORMULA_STARTS[1:]:
        risky = pc.or_(risky, pc.starts_with(column, start))
    return pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
