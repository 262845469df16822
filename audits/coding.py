"""Dense integer codes for the audited lines, so that the disparity engine groups by small integers.

`code_lines` turns `audit_lines` into `coded_lines` (by default temp tables): one narrow row per line with
the customer, the within-cell cell and the fixed effect (product x day x currency) as dense indexes,
one code per audited grouping (attribute, intersection, tenure), per segment column and per control,
and the columns the disparity checks measure. Codes are positions in sorted lists of the values found
(so the same data always gets the same codes); a missing value is -1. An intersection's code is
computed from its components' codes (mixed radix), so it needs no join of its own.

Segments. A segment column is *nested* when every within-cell cell (and every fixed effect) holds one
value of it, as category is: a product belongs to one category. Then every cell statistic is the same
overall and within the segment, and the engine serves both from one pass. A segment column that is
not nested (a customer attribute, say) gets its own cell and fixed-effect indexes: within a segment,
cells are cell x segment value.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from audits.warehouse import quote_identifier

# Columns the disparity checks' SQL files read from `coded_lines` besides the codes.
MEASURED_COLUMNS = ("unit_price", "list_price", "discount_amount", "is_discounted", "discount_pct")
MISSING_LEVEL = "(missing)"
INTERSECTION = " & "  # joins an intersection group's values: "F & 65+"


@dataclass(frozen=True)
class GroupSet:
    """One audited grouping of lines: an attribute, an intersection of attributes, or tenure."""

    key: str  # the code column in `coded_lines`
    columns: tuple[str, ...]
    labels: dict[int, tuple[str, ...]]  # code -> the value of each column (codes found in the data)
    radix: tuple[int, ...]  # levels of each column: code = mixed-radix number of the columns' level indexes

    def value(self, code: int) -> str:
        return INTERSECTION.join(self.labels[code])

    def code(self, value: str) -> int | None:
        return next((c for c in self.labels if self.value(c) == value), None)

    @property
    def n_codes(self) -> int:
        return int(np.prod(self.radix, dtype=np.int64))


@dataclass(frozen=True)
class SegmentCoding:
    """A segment column's codes, and the cell and fixed-effect indexes comparisons within it use."""

    column: str
    key: str  # its code column
    values: tuple[str, ...]  # code -> value
    cell_key: str  # "xi" when nested, else its own index column
    fe_key: str
    n_cells: int
    n_fe: int


@dataclass(frozen=True)
class Coding:
    """What `code_lines` wrote: the codes' meanings and the index sizes."""

    sets: dict[tuple[str, ...], GroupSet]
    segments: dict[str, SegmentCoding]
    controls: tuple[tuple[str, str, int], ...]  # (column, code column, number of levels)
    n_customers: int
    n_cells: int
    n_fe: int


def code_lines(
    con: duckdb.DuckDBPyConnection,
    *,
    groupings: list[tuple[str, ...]],
    segment_by: tuple[str, ...],
    controls: tuple[str, ...],
    source: str = "audit_lines",
    target: str = "coded_lines",
    keep: tuple[str, ...] = (),
) -> Coding:
    """Create table `target` (default temp table `coded_lines`) from `source` (default `audit_lines`).

    Names are validated identifiers (a schema-qualified target is a table of that attached database, an
    unqualified one a temp table); `keep`: columns of `source` carried over as they are (a shared span's
    day, which its windows are cut by)."""
    singles = list(dict.fromkeys(c for combo in groupings for c in combo))
    levels: dict[str, list[str]] = {}
    for column in dict.fromkeys([*singles, *segment_by]):
        levels[column] = _levels(con, source, column, missing=None)
    control_levels = {c: _levels(con, source, c, missing=MISSING_LEVEL) for c in controls}

    joins, selects = [], []
    for i, column in enumerate(levels):
        _level_table(con, i, levels[column])
        joins.append(f"left join pp_levels_{i} as lv{i} on lv{i}.v = cast(l.{quote_identifier(column)} as varchar)")
    single_code = {column: f"lv{i}.code" for i, column in enumerate(levels)}

    sets: dict[tuple[str, ...], GroupSet] = {}
    for k, combo in enumerate(dict.fromkeys(groupings)):
        expression = single_code[combo[0]]
        for column in combo[1:]:
            expression = f"({expression}) * {len(levels[column])} + {single_code[column]}"
        selects.append(f"coalesce({expression}, -1)::integer as g{k}")
        sets[combo] = GroupSet(f"g{k}", combo, {}, tuple(len(levels[c]) for c in combo))

    for j, column in enumerate(controls):
        i = len(levels) + j
        _level_table(con, i, control_levels[column])
        joins.append(f"left join pp_levels_{i} as lv{i} on lv{i}.v = "
                     f"coalesce(cast(l.{quote_identifier(column)} as varchar), '{MISSING_LEVEL}')")
        selects.append(f"lv{i}.code as q{j}")

    segment_select = []
    for j, column in enumerate(segment_by):
        segment_select.append(f"coalesce({single_code[column]}, -1)::integer as s{j}")
    con.execute("create or replace temp table pp_customers as select customer_id, "
                "(row_number() over (order by customer_id) - 1)::integer as ci "
                f"from (select distinct customer_id from {source})")
    con.execute("create or replace temp table pp_cells as select cell_key, "
                "(row_number() over (order by cell_key) - 1)::integer as xi "
                f"from (select distinct cell_key from {source})")
    con.execute("create or replace temp table pp_fe as select fe_key, "
                "(row_number() over (order by fe_key) - 1)::integer as fi "
                f"from (select distinct fe_key from {source})")
    measured = ", ".join(f"l.{c}" for c in (*MEASURED_COLUMNS, *keep))
    con.execute(f"""
        {_create(target)} as
        select c.ci, x.xi, f.fi, {", ".join([*segment_select, *selects]) or "0 as unused"}, {measured}
        from {source} as l
        join pp_customers as c using (customer_id)
        join pp_cells as x using (cell_key)
        join pp_fe as f using (fe_key)
        {" ".join(joins)}
        order by {_line_order(segment_by)}""")

    for combo, group_set in list(sets.items()):
        found = [row[0] for row in con.execute(
            f"select distinct {group_set.key} from {target} where {group_set.key} >= 0 order by 1").fetchall()]
        labels = {}
        for code in found:
            parts, rest = [], code
            for column in reversed(combo):
                rest, index = divmod(rest, len(levels[column]))
                parts.append(levels[column][index])
            labels[code] = tuple(reversed(parts))
        sets[combo] = GroupSet(group_set.key, combo, labels, group_set.radix)

    n_customers, n_cells, n_fe = con.execute(
        "select (select count(*) from pp_customers), (select count(*) from pp_cells), "
        "(select count(*) from pp_fe)").fetchone()
    segments = {}
    for j, column in enumerate(segment_by):
        segments[column] = _segment(con, target, j, column, levels[column], n_cells=n_cells, n_fe=n_fe,
                                   order=_line_order(segment_by))
    return Coding(sets=sets, segments=segments,
                  controls=tuple((c, f"q{j}", len(control_levels[c])) for j, c in enumerate(controls)),
                  n_customers=int(n_customers), n_cells=int(n_cells), n_fe=int(n_fe))


def _create(target: str) -> str:
    """The statement that (re)creates `target`: a table of an attached database when schema-qualified."""
    return f"create or replace table {target}" if "." in target else f"create or replace temp table {target}"


def _line_order(segment_by: tuple[str, ...]) -> str:
    """How `coded_lines` is sorted: by customer (the engine reads ranges of customers, and zone maps skip
    the rest), then by segment codes, the order pass 2 sums rows in (so it needs no sort of its own)."""
    return ", ".join(["ci", *(f"s{j}" for j in range(len(segment_by)))])


def _level_table(con: duckdb.DuckDBPyConnection, i: int, values: list[str]) -> None:
    """Temp table pp_levels_<i>: each value (bound, never formatted into SQL) with its code, its position."""
    con.execute(f"create or replace temp table pp_levels_{int(i)} as "
                "select unnest($v) as v, (generate_subscripts($v, 1) - 1)::integer as code", {"v": values})


def _levels(con: duckdb.DuckDBPyConnection, source: str, column: str, *, missing: str | None) -> list[str]:
    name = quote_identifier(column)
    value = f"cast({name} as varchar)" if missing is None else f"coalesce(cast({name} as varchar), '{missing}')"
    return [row[0] for row in con.execute(
        f"select distinct {value} as v from {source} where v is not null order by v").fetchall()]


def _segment(con: duckdb.DuckDBPyConnection, target: str, j: int, column: str, values: list[str], *,
             n_cells: int, n_fe: int, order: str) -> SegmentCoding:
    """Nested segments reuse the overall indexes; others get cell x value and fixed effect x value indexes."""
    cells, fes = con.execute(f"select count(distinct (xi, s{j})), count(distinct (fi, s{j})) from {target}").fetchone()
    if cells == n_cells and fes == n_fe:
        return SegmentCoding(column, f"s{j}", tuple(values), "xi", "fi", n_cells, n_fe)
    for key, base in ((f"x{j}", "xi"), (f"f{j}", "fi")):
        con.execute(f"create or replace temp table pp_{key} as select {base}, s{j}, "
                    f"(row_number() over (order by {base}, s{j}) - 1)::integer as {key} "
                    f"from (select distinct {base}, s{j} from {target})")
        con.execute(f"{_create(target)} as select l.*, i.{key} from {target} as l "
                    f"join pp_{key} as i using ({base}, s{j}) order by {order}")
    return SegmentCoding(column, f"s{j}", tuple(values), f"x{j}", f"f{j}", int(cells), int(fes))
