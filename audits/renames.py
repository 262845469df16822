"""A source renamed in the config (same files or table, a new `name`) is recognised, not loaded a second time.

The warehouse keys a row on (source, transaction_id) and knows a file by the source that loaded it, so a
new name alone would read every file again and add every row once more. Before a source's first batch,
its files (a PostgreSQL source: its origin, the server, database and table its batches record) are looked
up among those loaded under other names:
- loaded under a name the config no longer has: the source was renamed. Its rows, its files and its
  batches are relabelled in one transaction, and the batch then finds nothing new (a PostgreSQL source
  goes on from the old name's watermark);
- loaded under a name the config still has: two sources read the same file or table, which would load its
  rows twice. The run stops (exit 2) naming both sources and the file or table.
A PostgreSQL source loaded before batches recorded their origin is recognised once it has loaded again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb

from audits.config import SourceConfig
from audits.errors import ConfigError, InputError
from audits.sources import list_files, postgres_origin

RENAMED = ("{new}: recognised as source '{old}' renamed (it reads the same {what}): its {rows:,} rows, files and "
           "batches now carry the new name")
SHARED_FILE = ("source '{new}': file {path} was loaded by source '{other}'; two sources must not read the same "
               "file (its rows would count twice): take it out of one source's path")
SHARED_TABLE = ("source '{new}': {path} was loaded by source '{other}'; two sources must not read the same "
                "table (its rows would count twice): remove one of them")
SEVERAL_NAMES = ("source '{new}': its {what} was loaded under several names ({names}) the config no longer has; "
                 "give the source one of them as its name")
# Every table that says which source a row came from
_LABELLED = ("transactions", "quarantine", "ingest_files", "ingest_batches", "expectation_results")


def adopt_renamed_source(con: duckdb.DuckDBPyConnection, source: SourceConfig, configured: Sequence[str], *,
                         progress: Callable[[str], None] | None = None) -> None:
    """Before a source's first batch: take over the rows of the source it was renamed from, or refuse files
    or a table another configured source loaded (see the module's docstring). `configured`: every source's name."""
    if _has_loaded(con, source.name):
        return
    try:
        owners = _postgres_owners(con, source) if source.kind == "postgres" else _file_owners(con, source)
    except InputError:  # no file, one that vanished, no dsn: the batch says so, and records its failure
        return
    for other, path in owners:
        if other in configured:
            shared = SHARED_TABLE if source.kind == "postgres" else SHARED_FILE
            raise ConfigError(shared.format(new=source.name, path=path, other=other))
    if len(owners) > 1:
        raise ConfigError(SEVERAL_NAMES.format(new=source.name, what=_what(source),
                                               names=", ".join(repr(o) for o, _ in owners)))
    if not owners:
        return
    old = owners[0][0]
    con.execute("begin transaction")
    try:
        rows = con.execute("select count(*) from transactions where source = $old", {"old": old}).fetchall()[0][0]
        for table in _LABELLED:
            con.execute(f"update {table} set source = $new where source = $old", {"new": source.name, "old": old})
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    if progress:
        progress(RENAMED.format(new=source.name, old=old, rows=rows, what=_what(source)))


def _what(source: SourceConfig) -> str:
    """What the source reads, in a message: its files, or its PostgreSQL table or query."""
    return "files" if source.kind != "postgres" else ("table" if source.table else "query")


def _file_owners(con: duckdb.DuckDBPyConnection, source: SourceConfig) -> list[tuple[str, str]]:
    """(other source, one of its files) for each source that loaded one of this source's files."""
    paths = [f.path for f in list_files(con, source)]
    return con.execute(
        """select f.source, min(f.path) from ingest_files as f join ingest_batches as b using (batch_id)
           where b.status = 'loaded' and f.source <> $name and list_contains($paths, f.path)
           group by all order by 1""", {"name": source.name, "paths": paths}).fetchall()


def _postgres_owners(con: duckdb.DuckDBPyConnection, source: SourceConfig) -> list[tuple[str, str]]:
    """(other source, the origin) for each source whose loaded batches read where this one reads."""
    return con.execute(
        """select distinct source, origin from ingest_batches
           where status = 'loaded' and origin = $origin and source <> $name order by 1""",
        {"name": source.name, "origin": postgres_origin(source)}).fetchall()


def _has_loaded(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    rows = con.execute("select count(*) from ingest_batches where source = $name and status = 'loaded'",
                       {"name": name}).fetchall()
    return bool(rows[0][0])
