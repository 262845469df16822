"""Derived columns (`sources[].derive`): NAME = one SQL expression over the source's own columns.

An expression is checked by DuckDB's own parser before any row is staged (`json_serialize_sql` of
`select <expression>`, then a walk of the tree): one SELECT of one item, without FROM, WHERE, GROUP BY,
CTE or modifiers; every node one that computes a value from the row (a column, a constant, a cast, an
operator, a comparison, CASE, a lambda, a function) and none that reads anything else (a subquery, `*`,
a parameter, a positional reference, a window); columns named by one part that the source has; functions
only DuckDB's scalar functions whose value depends on their arguments alone, or its built-in macros
outside the catalog and session ones; types only DuckDB's built-in ones (an extension's type or
function would load the extension, a file). Nothing else reaches the ingest's SQL: what runs is the text
DuckDB prints back from the checked tree (`json_deserialize_sql`), never the config's own text. Binding
it over the source's rows, in a WHERE clause, then refuses aggregates and windows hidden in macros, and
type errors; its type decides how the value is converted (audits/staging.py).

A value the expression fails on (a cast of text that is not a number) is a reason to quarantine the row:
the expression runs under `try`, which tells a failure from a null result (derived_relation).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from audits.errors import ConfigError, one_line
from audits.warehouse import quote_identifier

NOT_PARSED = (
    "{file}: key '{key}' is not an SQL expression ({reason}); write one expression over the source's columns, "
    "such as \"CAST(BonusMalus AS INTEGER)\""
)
NOT_SCALAR = (
    "{file}: key '{key}' must be a single scalar expression over the source's columns, but has {what}; "
    "derive a value from the row's own columns only"
)
UNKNOWN_COLUMN = (
    "{file}: key '{key}' reads column {column!r}, which is not in source '{source}'; its columns are {available}"
)
NOT_BOUND = "{file}: key '{key}' does not work over the source's columns ({reason}); fix the expression"
FAILED = "{name}: derived expression failed"  # a quarantine reason (no value, no expression text)

# expression nodes that compute a value from the row; anything else (SUBQUERY, STAR, PARAMETER,
# POSITIONAL_REFERENCE, WINDOW, DEFAULT, ...) reads something besides the row
ALLOWED_NODES = frozenset({"BETWEEN", "CASE", "CAST", "COLLATE", "COLUMN_REF", "COMPARISON", "CONJUNCTION",
                           "CONSTANT", "FUNCTION", "LAMBDA", "OPERATOR", "TYPE"})
# what each refused node is called in the error
NODE_WORDS = {"SUBQUERY": "a subquery", "STAR": "a * (every column)", "PARAMETER": "a parameter",
              "POSITIONAL_REFERENCE": "a positional reference", "WINDOW": "a window function",
              "DEFAULT": "DEFAULT", "LAMBDA_REF": "a lambda reference"}
# built-in macros about the catalog, the session or the clock: never a value of the row
SESSION_MACROS = ("pg_", "has_", "current_", "inet_")
SESSION_MACRO_NAMES = frozenset({"ago", "col_description", "obj_description", "shobj_description", "format_type",
                                 "format_pg_type", "map_to_pg_oid", "session_user", "user", "get_block_size",
                                 "regexp_split_to_table"})
_SELECT_CLAUSES = {"where_clause": "a WHERE clause", "having": "a HAVING clause", "qualify": "a QUALIFY clause",
                   "sample": "a sample clause"}


@dataclass(frozen=True)
class Derived:
    """A checked derived column: its name, the config key it came from, the expression as DuckDB prints it
    back, and the source columns it reads."""

    name: str
    key: str
    sql: str
    columns: tuple[str, ...]

    @property
    def column(self) -> str:
        """The name of its value among the staged rows (audits/staging.py)."""
        return f"__pp_derived_{self.name}"

    @property
    def failed_column(self) -> str:
        """... and of the flag saying the expression failed on the row."""
        return f"__pp_failed_{self.name}"


def check_derived(
    derive: Mapping[str, str], available: Sequence[str], *, file: str, key_prefix: str, source: str
) -> dict[str, Derived]:
    """Each expression of `derive` checked against the source's columns `available` (see the module's
    docstring); `key_prefix` is the source's config key (`sources[0]`), for the messages."""
    con = duckdb.connect()
    try:
        functions = _functions(con)
        types = {row[0].lower() for row in con.execute("select type_name from duckdb_types()").fetchall()}
        return {name: _check(con, name, expression, available, functions=functions, types=types, file=file,
                             key=f"{key_prefix}.derive.{name}", source=source)
                for name, expression in derive.items()}
    finally:
        con.close()


def bind_derived(
    con: duckdb.DuckDBPyConnection, derived: Mapping[str, Derived], relation: str, params: Mapping[str, Any],
    *, file: str,
) -> dict[str, str]:
    """Each derived column's DuckDB type, bound over the source's rows as read (`relation`); in a WHERE
    clause, where DuckDB refuses aggregates and windows (a macro may hide one)."""
    types = {}
    for item in derived.values():
        sql = f"describe select ({item.sql}) as value from {relation} where ({item.sql}) is null"
        try:
            described = con.execute(sql, dict(params)).fetchall()
        except duckdb.Error as err:
            raise ConfigError(NOT_BOUND.format(file=file, key=item.key, reason=one_line(err, limit=200))) from err
        types[item.name] = described[0][1]
    return types


def derived_relation(
    rows: str, row_id: str, derived: Mapping[str, Derived], *, text_columns: Sequence[str]
) -> tuple[str, str]:
    """(SQL of the rows with every derived value and failure flag, its row-id column). The columns the
    expressions read that are text see the source's na_values as null (bound as $na_values).

    Each expression is evaluated once, as `try(struct_pack(v := expression))`: null when it failed, a
    struct holding its value (null or not) otherwise. Each gets its own projection: DuckDB's common
    subexpression elimination would lift a part two expressions share (a cast) out of `try`, where a
    failure stops the statement."""
    q = quote_identifier
    read = sorted({c for item in derived.values() for c in item.columns if c in text_columns})
    cleaned = ", ".join(f"case when list_contains($na_values, trim({q(c)})) then null else {q(c)} end as {q(c)}"
                        for c in read)
    relation = f"select {row_id} as __pp_derived_row, * {f'replace ({cleaned})' if cleaned else ''} from {rows}"
    for item in derived.values():
        relation = f"select *, try(struct_pack(v := {item.sql})) as {q(item.column + '_try')} from ({relation})"
    tried = ", ".join(q(item.column + "_try") for item in derived.values())
    values = ", ".join(f"{q(item.column + '_try')}.v as {q(item.column)}, "
                       f"{q(item.column + '_try')} is null as {q(item.failed_column)}" for item in derived.values())
    return f"(select * exclude ({tried}), {values} from ({relation}))", "__pp_derived_row"


def _check(con: duckdb.DuckDBPyConnection, name: str, expression: str, available: Sequence[str], *,
           functions: dict[str, bool], types: set[str], file: str, key: str, source: str) -> Derived:
    def refuse(what: str) -> ConfigError:
        return ConfigError(NOT_SCALAR.format(file=file, key=key, what=what))

    try:
        statements = duckdb.extract_statements(f"select {expression}")
        parsed = json.loads(con.execute("select json_serialize_sql($sql)", {"sql": f"select {expression}"}
                                        ).fetchall()[0][0])
    except duckdb.Error as err:
        raise ConfigError(NOT_PARSED.format(file=file, key=key, reason=one_line(err, limit=200))) from err
    if parsed.get("error"):
        raise ConfigError(NOT_PARSED.format(file=file, key=key, reason=one_line(parsed.get("error_message"),
                                                                                   limit=200)))
    if len(statements) != 1 or len(parsed["statements"]) != 1:
        raise refuse("several statements")
    node = parsed["statements"][0]["node"]
    if node.get("type") != "SELECT_NODE":
        raise refuse("a set operation (UNION, EXCEPT, INTERSECT)")
    if len(node["select_list"]) != 1:
        raise refuse(f"{len(node['select_list'])} expressions")
    if node["from_table"].get("type") != "EMPTY":
        raise refuse("a FROM clause (another table)")
    for clause, words in _SELECT_CLAUSES.items():
        if node.get(clause):
            raise refuse(words)
    if node["group_expressions"] or node["group_sets"] or node["modifiers"] or node["cte_map"]["map"]:
        raise refuse("a GROUP BY, ORDER BY, LIMIT, DISTINCT or WITH clause")
    if parsed["statements"][0].get("named_param_map"):
        raise refuse("a parameter")

    by_lower = {column.lower(): column for column in available}
    lambda_parameters = {ref.lower() for lam in _nodes(node["select_list"][0]) if lam["class"] == "LAMBDA"
                         for ref in _column_names(lam["lhs"])}
    read: dict[str, None] = {}
    for item in _nodes(node["select_list"][0]):
        kind = item["class"]
        if kind not in ALLOWED_NODES:
            raise refuse(NODE_WORDS.get(kind, kind.lower().replace("_", " ")))
        if kind == "FUNCTION":
            _check_function(item, functions, refuse)
        if kind == "TYPE" and item["type_name"].lower() not in types:  # an extension's type would load it
            raise refuse(f"type {item['type_name']!r}, which is not one of DuckDB's built-in types")
        if kind == "COLUMN_REF":
            names = item["column_names"]
            if len(names) != 1:
                raise refuse(f"column {'.'.join(names)!r} of another table")
            if names[0].lower() in lambda_parameters:
                continue
            if names[0].lower() not in by_lower:
                shown = ", ".join(available[:20]) + (", ..." if len(available) > 20 else "")
                raise ConfigError(UNKNOWN_COLUMN.format(file=file, key=key, column=names[0], source=source,
                                                        available=shown))
            read[by_lower[names[0].lower()]] = None
    select_item = node["select_list"][0]
    select_item["alias"] = ""
    tree = json.dumps({"error": False, "statements": [{"node": {**node, "select_list": [select_item]},
                                                       "named_param_map": []}]})
    printed = con.execute("select json_deserialize_sql($tree)", {"tree": tree}).fetchall()[0][0]
    return Derived(name=name, key=key, sql=printed.strip().removeprefix("SELECT ").rstrip(";").strip(),
                   columns=tuple(read))


def _check_function(item: dict[str, Any], functions: dict[str, bool], refuse: Any) -> None:
    name = item["function_name"].lower()
    if item.get("schema") or item.get("catalog"):
        raise refuse(f"function {item['function_name']!r} of a schema")
    if item.get("filter") or item["order_bys"]["orders"] or item.get("distinct") or item.get("export_state"):
        raise refuse(f"an aggregate's clause in {item['function_name']!r}")
    if not functions.get(name, False):
        known = name in functions
        raise refuse(f"function {item['function_name']!r}, which is "
                     + ("not a value of the row alone (it reads the session, the clock or a sequence)" if known
                        else "not one of DuckDB's scalar functions (a table or aggregate function, or unknown)"))


def _functions(con: duckdb.DuckDBPyConnection) -> dict[str, bool]:
    """Every scalar function and macro DuckDB has -> whether a derived column may call it."""
    allowed: dict[str, bool] = {}
    for name, kind, stability in con.execute(
            "select distinct function_name, function_type, stability from duckdb_functions() "
            "where function_type in ('scalar', 'macro')").fetchall():
        ok = (stability == "CONSISTENT" and name not in ("json_serialize_sql", "json_deserialize_sql")
              if kind == "scalar" else not name.startswith(SESSION_MACROS) and name not in SESSION_MACRO_NAMES)
        allowed[name.lower()] = allowed.get(name.lower(), True) and ok
    return allowed


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every expression node of a serialised expression (dicts with a 'class'), depth first."""
    if isinstance(tree, dict):
        if "class" in tree:
            yield tree
        for value in tree.values():
            yield from _nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _nodes(value)


def _column_names(tree: Any) -> list[str]:
    return [n["column_names"][-1] for n in _nodes(tree) if n["class"] == "COLUMN_REF"]
