"""What the insurance and lending sample books share: the export's messiness, the naive gap a
confounder produces, and writing the export with its planted.json and PLANTED.md.

A book is one flat export (one row per policy-year or per loan) with its attributes on the row, so it
needs no customers file. planted.json is the truth in machine-readable form: each effect's group,
size and unit (`ratio`: the group's outcome is 1 + size times the reference's in the same cell;
`points`: size above it), the cell within which that holds, and the confounders, which should not
be flagged: each with the naive gap it produces (`naive_gap`, realised) and the gap planted for its
group within cells (`planted_gap`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

NULL_TEXT = "null"  # how the exporting system writes a missing value
NULL_GENDER_PCT = 0.02  # share of a book's customers whose gender is written as NULL_TEXT
AGE_BANDS: tuple[int, ...] = (18, 25, 35, 50, 65)  # the books' age bands (their example configs' audit.bands)
BAD_SPEC = "{spec}: {field} must be {rule}, got {value!r}"


def text_with_nulls(levels: tuple[str, ...], codes: np.ndarray, missing: np.ndarray) -> pa.Array:
    """`levels[codes]` as text, with the literal string "null" where `missing`."""
    return pa.array(levels + (NULL_TEXT,)).take(pa.array(np.where(missing, len(levels), codes)))


def numbers_as_text(values: np.ndarray, *, decimals: int) -> pa.Array:
    """Numbers written as text ("12.50"), the way a CSV-minded export stores them."""
    return pa.array(np.char.mod(f"%.{decimals}f", values), pa.string())


def naive_gap(outcome: np.ndarray, in_group: np.ndarray, *, scale: str) -> float:
    """The group against everyone else with no cell at all: what a naive comparison says.

    ratio: the ratio of geometric means minus 1 (the log scale the audit uses); points: the
    difference of means.
    """
    if scale == "ratio":
        logs = np.log(outcome)
        return float(np.exp(logs[in_group].mean() - logs[~in_group].mean()) - 1)
    return float(outcome[in_group].mean() - outcome[~in_group].mean())


def refuse_bad_fields(spec: object, rules: tuple[tuple[str, bool, str], ...]) -> None:
    """Raise ValueError naming the first field of a book's spec that breaks its rule: (field, holds, rule)."""
    for name, holds, rule in rules:
        if not holds:
            raise ValueError(BAD_SPEC.format(spec=type(spec).__name__, field=name, rule=rule, value=getattr(spec, name)))


def planted_record(kind: str, *, spec: dict[str, Any], rows: int, customers: int, summary: str,
                   outcome: dict[str, Any], cell_columns: tuple[str, ...], cell_description: str,
                   effects: list[dict[str, Any]], confounders: list[dict[str, Any]],
                   messiness: list[dict[str, str]]) -> dict[str, Any]:
    """A book's planted.json (without `files`, which the writer adds)."""
    return {"schema_version": 1, "generator": f"audits.sample.{kind}", "kind": kind, "spec": spec,
            "totals": {"rows": rows, "customers": customers}, "summary": summary, "outcome": outcome,
            "cell": {"columns": list(cell_columns), "description": cell_description},
            "effects": effects, "confounders": confounders, "messiness": messiness,
            "example_config": f"examples/{kind}.toml"}


def messy_column_notes(*, rows: str, gender: str, age: str, number_as_text: tuple[str, str, str], purpose: str,
                       **others: str) -> list[dict[str, str]]:
    """The planted record's notes on a book's messy columns, as the books write them: `gender` holds the text
    "null" for NULL_GENDER_PCT of its `rows`; `age` is in years, banded with AGE_BANDS; `number_as_text` is
    (column, derived column, expression), a number stored as text that the derived column casts `purpose`;
    `others`: column -> note."""
    column, derived, expression = number_as_text
    return [
        {"column": gender, "what": f"the text '{NULL_TEXT}' for about {NULL_GENDER_PCT:.0%} of {rows} (missing, "
                                   "via sources.na_values)"},
        {"column": column, "what": f"a number stored as text: derive `{derived} = \"{expression}\"` {purpose}"},
        {"column": age, "what": f"age in years: band it with audit.bands (e.g. age = {list(AGE_BANDS)})"},
        *({"column": name, "what": note} for name, note in others.items()),
    ]


def write_book(out_dir: Path, table: pa.Table, planted: dict[str, Any], *, file_name: str) -> Path:
    """Write the export as `file_name`, planted.json and PLANTED.md into `out_dir`; return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out_dir / file_name)
    planted = planted | {"files": {"rows": file_name}}
    (out_dir / "planted.json").write_text(json.dumps(planted, indent=2) + "\n", encoding="utf-8")
    (out_dir / "PLANTED.md").write_text(book_markdown(planted), encoding="utf-8")
    return out_dir


def book_markdown(planted: dict[str, Any]) -> str:
    """PLANTED.md: the truth in plain words, for a person checking an audit against it."""
    outcome, cell = planted["outcome"], planted["cell"]
    per = f" over `{outcome['per']}`" if outcome.get("per") else ""
    out = [f"# What this sample {planted['kind']} book contains", "",
           f"{planted['summary']} Seed {planted['spec']['seed']}; the rows are in `{planted['files']['rows']}`.",
           "",
           f"Compared: `{outcome['column']}`{per} ({outcome['noun']}, on the {outcome['scale']} scale), "
           f"within cells of {' x '.join(f'`{c}`' for c in cell['columns'])}. {cell['description']}", "",
           "## Unfair treatment planted on purpose (should be flagged)", ""]
    for effect in planted["effects"]:
        unit = f"{effect['size']:+.0%}" if effect["unit"] == "ratio" else f"{effect['size']:+.2f} points"
        out.append(f"- **{effect['check']}**, {effect['attribute']} = {effect['group']} against "
                   f"{effect['reference']} ({unit}, rows where {effect['where']}): {effect['description']}")
    out += ["", "## Legitimate patterns a naive tool would wrongly flag (should not be flagged)", ""]
    out += [f"- **{c['name']}** ({c['attribute']}: {', '.join(c['groups'])}): {c['description']} "
            f"{c['naive_misreading']}" for c in planted["confounders"]] or ["None (confounders switched off)."]
    out += ["", "## Messiness a config must cope with", ""]
    out += [f"- `{m['column']}`: {m['what']}" for m in planted["messiness"]]
    out += ["", f"An example config that audits this book: `{planted['example_config']}`."]
    return "\n".join(out) + "\n"
