"""Load SQL files from `sql/`: one named query per file, checked when loaded, rendered with identifiers only.

A file starts with `-- name: <name>` and comment lines saying what it does and the grain of its
output. Values are DuckDB named parameters (`$reference`), declared in `-- params:`. Some queries
depend on the config's columns (which attributes, controls, cell columns): those are Jinja2 templates
whose variables are declared in `-- identifiers:` and can only ever print an `Ident` (a column or
table name, quoted), a `Fragment` (SQL this package built from Idents and constants) or an int:
anything else, a plain string above all, fails at render time. So no value a user types can reach
SQL except as a bound parameter or a quoted identifier.

Loading fails, naming file and line, for an empty query, a missing or mismatched name, a parameter or
identifier declared but unused (and vice versa).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")
_PARAMS = re.compile(r"^--\s*params:\s*(.*)$")
_IDENTIFIERS = re.compile(r"^--\s*identifiers:\s*(.*)$")
_USED_PARAM = re.compile(r"\$([a-z_][a-z0-9_]*)")


class SqlFileError(Exception):
    """A SQL file in the source tree is malformed, or rendered with something other than identifiers:
    a bug of ours, raised at load or render time."""


class Ident(str):
    """A SQL identifier, printed quoted (embedded quotes doubled): safe whatever the name holds."""

    __slots__ = ()

    def sql(self) -> str:
        return '"' + self.replace('"', '""') + '"'


class Fragment(str):
    """SQL built by our own code from Idents and constants (never from a value a user typed)."""

    __slots__ = ()


def idents(names: Iterable[str]) -> list[Ident]:
    return [Ident(n) for n in names]


@dataclass(frozen=True)
class SqlQuery:
    name: str
    path: Path
    sql: str
    params: tuple[str, ...]
    doc: str
    identifiers: tuple[str, ...] = ()

    def render(self, **identifiers: Any) -> str:
        """The SQL with its declared identifiers filled in (see the module docstring)."""
        if set(identifiers) != set(self.identifiers):
            raise SqlFileError(f"{self.path}: rendered with {sorted(identifiers)}, declares {list(self.identifiers)}")
        if not self.identifiers:
            return self.sql
        return _template(self.sql).render(**identifiers)

    def bind(self, available: Mapping[str, Any]) -> dict[str, Any]:
        """The query's parameters taken from `available` (every declared one must be there)."""
        return _bind(self, self.params, available)

    def prepare(self, available: Mapping[str, Any], **identifiers: Any) -> tuple[str, dict[str, Any]]:
        """The rendered SQL and its parameters from `available`: those the rendered text uses (a template's
        branch not taken uses fewer, and DuckDB refuses a parameter it does not use)."""
        sql = self.render(**identifiers)
        used = set(_USED_PARAM.findall(_strip_strings(_strip_comments(sql))))
        return sql, _bind(self, tuple(p for p in self.params if p in used), available)


def parse_sql(text: str, *, path: Path) -> SqlQuery:
    """Parse one SQL file's text; raise SqlFileError naming file and line on any defect."""
    lines = text.splitlines()
    if not lines or not (match := _NAME.match(lines[0].strip())):
        raise SqlFileError(f"{path}:1: the first line must be '-- name: <name>'")
    name = match.group(1)
    if name != path.stem:
        raise SqlFileError(f"{path}:1: name {name!r} does not match the file name {path.stem!r}")
    declared: tuple[str, ...] = ()
    declared_idents: tuple[str, ...] = ()
    declared_line = idents_line = 0
    doc: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if not stripped.startswith("--"):
            break
        if params := _PARAMS.match(stripped):
            declared = tuple(p.strip().lstrip("$") for p in params.group(1).split(",") if p.strip())
            declared_line = number
        elif names := _IDENTIFIERS.match(stripped):
            declared_idents = tuple(p.strip() for p in names.group(1).split(",") if p.strip())
            idents_line = number
        else:
            doc.append(stripped.removeprefix("--").strip())
    body = "\n".join(line for line in lines if not line.strip().startswith("--")).strip()
    if not body:
        raise SqlFileError(f"{path}:{len(lines)}: the query is empty")
    used = tuple(dict.fromkeys(_USED_PARAM.findall(_strip_strings(_strip_comments(text)))))
    for param in declared:
        if param not in used:
            raise SqlFileError(f"{path}:{declared_line}: parameter ${param} is declared but never used")
    for param in used:
        if param not in declared:
            line_no = next(i for i, line in enumerate(lines, 1) if f"${param}" in line)
            raise SqlFileError(f"{path}:{line_no}: parameter ${param} is used but not declared in '-- params:'")
    if declared_idents or "{{" in body or "{%" in body:
        from jinja2 import meta

        template_vars = meta.find_undeclared_variables(_environment().parse(body))
        for variable in declared_idents:
            if variable not in template_vars:
                raise SqlFileError(f"{path}:{idents_line}: identifier {variable} is declared but never used")
        for variable in sorted(template_vars - set(declared_idents)):
            line_no = next((i for i, line in enumerate(lines, 1) if variable in line), 1)
            raise SqlFileError(f"{path}:{line_no}: {variable} is used but not declared in '-- identifiers:'")
    return SqlQuery(name=name, path=path, sql=body, params=declared, doc=" ".join(doc), identifiers=declared_idents)


@cache
def load_sql(relative: str) -> SqlQuery:
    """Load `sql/<relative>.sql` (e.g. `checks/price_gap`)."""
    path = SQL_DIR / f"{relative}.sql"
    return parse_sql(path.read_text(encoding="utf-8"), path=path)


def _bind(query: SqlQuery, names: tuple[str, ...], available: Mapping[str, Any]) -> dict[str, Any]:
    missing = [p for p in names if p not in available]
    if missing:
        raise SqlFileError(f"{query.path}: no value for parameter(s) {', '.join('$' + p for p in missing)}")
    return {p: available[p] for p in names}


def _strip_comments(code: str) -> str:
    return "\n".join(re.sub(r"--.*$", "", line) for line in code.splitlines())


def _strip_strings(code: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", code)


def _printable(value: Any) -> str:
    """What `{{ ... }}` may print: an Ident (quoted), a Fragment, an int; anything else is a bug."""
    if isinstance(value, Ident):
        return value.sql()
    if isinstance(value, Fragment):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise SqlFileError(f"only identifiers, fragments and integers may be formatted into SQL, got {type(value).__name__}")


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined, finalize=_printable,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters["sql"] = lambda value: Fragment(_printable(value))
    env.filters["csv"] = lambda values, prefix="": Fragment(", ".join(prefix + _printable(v) for v in values))
    return env


@cache
def _template(body: str) -> Any:
    return _environment().from_string(body)
