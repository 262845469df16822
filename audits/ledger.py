"""The ingest ledger: what every batch did, recorded in the warehouse, and read back.

Tables `ingest_batches` (one row per batch, whatever its outcome), `ingest_files` (the files a loaded
batch read: how file sources know what is new) and `expectation_results` (Great Expectations per
batch). The ingest writes them inside the batch's transaction, so the ledger never claims a load
that was rolled back. Watermarks and loaded files are read from loaded batches only: a failed batch
moves nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb


@dataclass(frozen=True)
class BatchResult:
    """What one ingest batch did; for a loaded batch read = loaded + replaced + duplicate + quarantined."""

    batch_id: int
    source: str
    rows_read: int
    rows_loaded: int
    rows_replaced: int
    rows_duplicate: int
    rows_quarantined: int
    seconds: float
    status: str  # loaded | failed_quality | failed
    expectations: list[dict[str, Any]] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    files_read: int = 0
    files_skipped: int = 0
    watermark_from: str | None = None
    watermark_to: str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds else 0.0


def record_batch(con: duckdb.DuckDBPyConnection, result: BatchResult, *, started_at: dt.datetime,
                 watermark_column: str | None, message: str | None, origin: str | None = None) -> None:
    """Add the batch's row to `ingest_batches` (`origin`: where a PostgreSQL source reads, sources.postgres_origin)."""
    con.execute(
        """insert into ingest_batches (batch_id, source, started_at, finished_at, status, watermark_column,
               watermark_from, watermark_to, rows_read, rows_loaded, rows_replaced, rows_duplicate,
               rows_quarantined, files_read, files_skipped, seconds, message, origin)
           values ($id, $source, $started, now()::timestamp, $status, $column, $from, $to, $read, $loaded,
               $replaced, $duplicate, $quarantined, $files_read, $files_skipped, $seconds, $message, $origin)""",
        {"id": result.batch_id, "source": result.source, "started": started_at, "status": result.status,
         "column": watermark_column, "from": result.watermark_from, "to": result.watermark_to,
         "read": result.rows_read, "loaded": result.rows_loaded, "replaced": result.rows_replaced,
         "duplicate": result.rows_duplicate, "quarantined": result.rows_quarantined,
         "files_read": result.files_read, "files_skipped": result.files_skipped, "seconds": result.seconds,
         "message": message, "origin": origin})


def is_recorded(con: duckdb.DuckDBPyConnection, batch_id: int) -> bool:
    rows = con.execute("select count(*) from ingest_batches where batch_id = $id", {"id": batch_id}).fetchall()
    return bool(rows[0][0])


def record_files(con: duckdb.DuckDBPyConnection, source: str, batch_id: int,
                 files: list[tuple[str, int, int, int]], *, fingerprint: str) -> None:
    """Add (path, size, mtime in ns, rows) of each file the batch read to `ingest_files`."""
    if files:
        paths, sizes, modified, rows = (list(column) for column in zip(*files, strict=True))
        con.execute(
            """insert into ingest_files (source, path, size_bytes, modified_ns, batch_id, rows_read, fingerprint)
               select $source, unnest($paths), unnest($sizes), unnest($modified), $batch_id, unnest($rows),
                      $fingerprint""",
            {"source": source, "paths": paths, "sizes": sizes, "modified": modified, "batch_id": batch_id,
             "rows": rows, "fingerprint": fingerprint})


def loaded_files(con: duckdb.DuckDBPyConnection, source: str, *, fingerprint: str) -> set[tuple[str, int, int]]:
    """(path, size, mtime in ns) of every file a loaded batch of the source read with this fingerprint."""
    rows = con.execute(
        """select f.path, f.size_bytes, f.modified_ns from ingest_files f
           join ingest_batches b using (batch_id)
           where f.source = $source and f.fingerprint = $fingerprint and b.status = 'loaded'""",
        {"source": source, "fingerprint": fingerprint}).fetchall()
    return {(path, size, modified) for path, size, modified in rows}


def stored_watermark(con: duckdb.DuckDBPyConnection, source: str) -> str | None:
    """The watermark of the source's latest loaded batch (as text), or None before the first load."""
    rows = con.execute(
        """select watermark_to from ingest_batches where source = $source and status = 'loaded'
           and watermark_to is not null order by batch_id desc limit 1""", {"source": source}).fetchall()
    return rows[0][0] if rows else None


def later_watermark(previous: str | None, value: Any) -> str | None:
    """The higher of the stored watermark and a batch's highest value, as text.

    Timestamps arrive as naive UTC datetimes, whose ISO texts sort in time order; integer ids compare
    as numbers. Should the column's type have changed, the new value wins.
    """
    if value is None:
        return previous
    text = value.isoformat() if isinstance(value, dt.date) else str(value)
    if previous is None:
        return text
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(max(int(previous), value))
        except ValueError:
            return text
    return max(previous, text)


def record_expectations(con: duckdb.DuckDBPyConnection, batch_id: int, source: str,
                        expectations: list[dict[str, Any]]) -> None:
    if expectations:
        con.executemany(
            "insert into expectation_results values ($b, $s, $e, $c, $ok, $n, $total)",
            [{"b": batch_id, "s": source, "e": e["expectation"], "c": e["column"], "ok": e["success"],
              "n": e["unexpected_count"], "total": e["element_count"]} for e in expectations])


def data_quality_summary(con: duckdb.DuckDBPyConnection, *, batch_ids: list[int] | None = None):
    """The data-quality section of a result: the given batches, or each source's latest batch that
    read rows or failed (a night with nothing new says nothing about the data already loaded)."""
    from audits.findings import DataQuality

    if batch_ids is None:
        batch_ids = [r[0] for r in con.execute(
            """select max(batch_id) from ingest_batches where rows_read > 0 or status <> 'loaded'
               group by source""").fetchall()]
    if not batch_ids:
        return DataQuality(passed=True)
    keys = ("batch_id", "source", "status", "rows_read", "rows_loaded", "rows_replaced", "rows_duplicate",
            "rows_quarantined", "files_read", "files_skipped", "watermark_to", "seconds")
    batches = con.execute(
        """select batch_id, source, status, rows_read, rows_loaded, rows_replaced, rows_duplicate, rows_quarantined,
                  files_read, files_skipped, watermark_to, round(seconds, 2)
           from ingest_batches where list_contains($ids, batch_id) order by batch_id""", {"ids": batch_ids}).fetchall()
    batch_dicts = [dict(zip(keys, b, strict=True)) for b in batches]
    expectations = [
        {"batch": b, "source": s, "expectation": e, "column": c, "success": ok, "unexpected_count": n,
         "element_count": total}
        for b, s, e, c, ok, n, total in con.execute(
            """select batch_id, source, expectation, column_name, success, unexpected_count, element_count
               from expectation_results where list_contains($ids, batch_id)
               order by batch_id, expectation, column_name""",
            {"ids": batch_ids}).fetchall()
    ]
    reasons = [
        {"reason": reason, "rows": n}
        for reason, n in con.execute(
            """select reason, count(*) from (select unnest(string_split(reason, '; ')) as reason
               from quarantine where list_contains($ids, batch_id)) group by reason order by 2 desc, 1""",
            {"ids": batch_ids}).fetchall()
    ]
    return DataQuality(
        passed=all(b["status"] == "loaded" for b in batch_dicts) and all(e["success"] for e in expectations),
        expectations=expectations,
        quarantined_rows=sum(b["rows_quarantined"] or 0 for b in batch_dicts),
        quarantine_reasons=reasons,
        batches=batch_dicts,
    )
