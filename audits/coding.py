"""Dense integer codes for the audited lines, so that the disparity engine groups by small integers.

`code_lines` turns temp table `audit_lines` into temp table `coded_lines` (sql/audit/): one narrow row per line with
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
from typing import Any

import duckdb
import numpy as np

from audits.columns import (
    AUDIT_LINES,
    CELL,
    CODED_LINES,
    CUSTOMER,
    FIXED_EFFECT,
    MEASURED_COLUMNS,
    MISSING_LEVEL,
    control_key,
    group_key,
    segment_cell_key,
    segment_fe_key,
    segment_key,
)
from audits.sqlfiles import Ident, idents, load_sql

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
    orders: dict[str, list[str]] | None = None,
) -> Coding:
    """Create temp table `coded_lines` from temp table `audit_lines` (sql/audit/coded_lines.sql).

    Column names are validated identifiers (audits/lines.py resolved them against the warehouse). `orders`:
    columns whose levels are ordered (bands, tenure) and their labels in order; others sort by value."""
    singles = list(dict.fromkeys(c for combo in groupings for c in combo))
    levels: dict[str, list[str]] = {column: _ordered(_levels(con, column, missing=False), (orders or {}).get(column))
                                    for column in dict.fromkeys([*singles, *segment_by])}
    control_levels = {c: _levels(con, c, missing=True) for c in controls}

    # one level table and join per column, and one more per control (a missing control value is a level)
    joins, alias, control_alias = [], {}, {}
    for i, (column, values, aliases) in enumerate([*((c, v, alias) for c, v in levels.items()),
                                                    *((c, v, control_alias) for c, v in control_levels.items())]):
        table, aliases[column] = Ident(f"pp_levels_{i}"), Ident(f"lv{i}")
        _run(con, "level_table", {"levels": values}, table=table)
        joins.append((aliases[column], table, Ident(column), aliases is control_alias))

    sets: dict[tuple[str, ...], GroupSet] = {}
    grouping_codes = []
    for k, combo in enumerate(dict.fromkeys(groupings)):
        radix = tuple(len(levels[c]) for c in combo)
        strides = [int(np.prod(radix[j + 1:], dtype=np.int64)) for j in range(len(combo))]
        grouping_codes.append((Ident(group_key(k)), [(alias[c], stride) for c, stride in zip(combo, strides, strict=True)]))
        sets[combo] = GroupSet(group_key(k), combo, {}, radix)
    for table, key, index in (("pp_customers", "customer_id", CUSTOMER), ("pp_cells", "cell_key", CELL),
                              ("pp_fe", "fe_key", FIXED_EFFECT)):
        _run(con, "dense_index", {}, table=Ident(table), source=Ident(AUDIT_LINES), key=Ident(key), index=Ident(index))
    order = idents([CUSTOMER, *(segment_key(j) for j in range(len(segment_by)))])
    _run(con, "coded_lines", {"missing": MISSING_LEVEL}, target=Ident(CODED_LINES), source=Ident(AUDIT_LINES),
         joins=joins, segments=[(Ident(segment_key(j)), alias[c]) for j, c in enumerate(segment_by)],
         groupings=grouping_codes, controls=[(Ident(control_key(j)), control_alias[c]) for j, c in enumerate(controls)],
         measured=idents(MEASURED_COLUMNS), order=order)

    for combo, group_set in list(sets.items()):
        sets[combo] = GroupSet(group_set.key, combo, _labels(con, group_set.key, [levels[c] for c in combo]),
                               group_set.radix)

    n_customers, n_cells, n_fe = con.execute(
        "select (select count(*) from pp_customers), (select count(*) from pp_cells), "
        "(select count(*) from pp_fe)").fetchone()
    segments = {column: _segment(con, j, column, levels[column], n_cells=n_cells, n_fe=n_fe, order=order)
                for j, column in enumerate(segment_by)}
    return Coding(sets=sets, segments=segments,
                  controls=tuple((c, control_key(j), len(control_levels[c])) for j, c in enumerate(controls)),
                  n_customers=int(n_customers), n_cells=int(n_cells), n_fe=int(n_fe))


def _labels(con: duckdb.DuckDBPyConnection, key: str, levels: list[list[str]]) -> dict[int, tuple[str, ...]]:
    """Each code of grouping column `key` found in `coded_lines` -> its columns' values (`levels`: each
    column's, in code order): the mixed-radix number read back digit by digit."""
    labels = {}
    sql = load_sql("audit/group_codes").render(source=Ident(CODED_LINES), key=Ident(key))
    for (code,) in con.execute(sql).fetchall():
        parts, rest = [], code
        for values in reversed(levels):
            rest, index = divmod(rest, len(values))
            parts.append(values[index])
        labels[code] = tuple(reversed(parts))
    return labels


def _run(con: duckdb.DuckDBPyConnection, name: str, values: dict[str, Any], **identifiers: Any) -> None:
    sql, params = load_sql(f"audit/{name}").prepare(values, **identifiers)
    con.execute(sql, params)


def _ordered(found: list[str], order: list[str] | None) -> list[str]:
    """The levels in their order (bands, tenure), any level the order does not know after them by value."""
    if not order:
        return found
    rank = {label: i for i, label in enumerate(order)}
    return sorted(found, key=lambda v: (rank.get(v, len(rank)), v))


def _levels(con: duckdb.DuckDBPyConnection, column: str, *, missing: bool) -> list[str]:
    sql, params = load_sql("audit/levels").prepare({"missing": MISSING_LEVEL}, source=Ident(AUDIT_LINES),
                                                   column=Ident(column), with_missing=missing)
    return [row[0] for row in con.execute(sql, params).fetchall()]


def _segment(con: duckdb.DuckDBPyConnection, j: int, column: str, values: list[str], *, n_cells: int, n_fe: int,
             order: list[Ident]) -> SegmentCoding:
    """Nested segments reuse the overall indexes; others get cell x value and fixed effect x value indexes."""
    key = segment_key(j)
    cells, fes = con.execute(load_sql("audit/segment_counts").render(
        source=Ident(CODED_LINES), cell=Ident(CELL), fixed_effect=Ident(FIXED_EFFECT), segment=Ident(key))).fetchone()
    if cells == n_cells and fes == n_fe:
        return SegmentCoding(column, key, tuple(values), CELL, FIXED_EFFECT, n_cells, n_fe)
    for index, base in ((segment_cell_key(j), CELL), (segment_fe_key(j), FIXED_EFFECT)):
        _run(con, "segment_index", {}, target=Ident(CODED_LINES), base=Ident(base), segment=Ident(key),
             key=Ident(index), order=order)
    return SegmentCoding(column, key, tuple(values), segment_cell_key(j), segment_fe_key(j), int(cells), int(fes))
