"""Load SQL files from `sql/`: one named query per file, checked when loaded.

A file starts with `-- name: <name>` and comment lines saying what it does. Parameters are DuckDB
named parameters (`$reference`). Loading fails, naming file and line, for an empty query, a missing
or mismatched name, or a parameter declared in `-- params:` but never used (and vice versa).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")
_PARAMS = re.compile(r"^--\s*params:\s*(.*)$")
_USED_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")


class SqlFileError(Exception):
    """A SQL file in the source tree is malformed: a bug of ours, raised at load time."""


@dataclass(frozen=True)
class SqlQuery:
    name: str
    path: Path
    sql: str
    params: tuple[str, ...]
    doc: str


def parse_sql(text: str, *, path: Path) -> SqlQuery:
    """Parse one SQL file's text; raise SqlFileError naming file and line on any defect."""
    lines = text.splitlines()
    if not lines or not (match := _NAME.match(lines[0].strip())):
        raise SqlFileError(f"{path}:1: the first line must be '-- name: <name>'")
    name = match.group(1)
    if name != path.stem:
        raise SqlFileError(f"{path}:1: name {name!r} does not match the file name {path.stem!r}")
    declared: tuple[str, ...] = ()
    declared_line = 0
    doc: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if not stripped.startswith("--"):
            break
        if params := _PARAMS.match(stripped):
            declared = tuple(p.strip().lstrip("$") for p in params.group(1).split(",") if p.strip())
            declared_line = number
        else:
            doc.append(stripped.removeprefix("--").strip())
    body = "\n".join(line for line in lines if not line.strip().startswith("--")).strip()
    if not body:
        raise SqlFileError(f"{path}:{len(lines)}: the query is empty")
    code = "\n".join(re.sub(r"--.*$", "", line) for line in lines)
    used = tuple(dict.fromkeys(_USED_PARAM.findall(_strip_strings(code))))
    for param in declared:
        if param not in used:
            raise SqlFileError(f"{path}:{declared_line}: parameter ${param} is declared but never used")
    for param in used:
        if param not in declared:
            line_no = next(i for i, line in enumerate(lines, 1) if f"${param}" in line)
            raise SqlFileError(f"{path}:{line_no}: parameter ${param} is used but not declared in '-- params:'")
    return SqlQuery(name=name, path=path, sql=body, params=declared, doc=" ".join(doc))


@cache
def load_sql(relative: str) -> SqlQuery:
    """Load `sql/<relative>.sql` (e.g. `checks/price_gap`)."""
    path = SQL_DIR / f"{relative}.sql"
    return parse_sql(path.read_text(encoding="utf-8"), path=path)



def _strip_strings(code: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", code)
