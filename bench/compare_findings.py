"""Compare two findings.json files field by field: are two code versions' findings the same?

    python bench/compare_findings.py BEFORE.json AFTER.json [--rtol 1e-9] [--ignore FIELD ...]

Findings are matched by comparison (check, metric, attribute, group, reference, segment); every field of
every finding must be equal, numbers within --rtol relative (absolute 1e-12 near zero). Prints each
difference, then the counts and the largest relative difference of any number; exits 1 when there is any
difference, 0 when the findings are the same.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def finding_key(finding: dict) -> tuple:
    segment = ",".join(f"{k}={v}" for k, v in sorted((finding.get("segment") or {}).items()))
    return (finding["check"], finding["metric"], finding.get("attribute"), finding.get("group"),
            finding.get("reference"), segment)


def differences(before: list[dict], after: list[dict], *, rtol: float, ignore: set[str]) -> list[str]:
    out = []
    a = {finding_key(f): f for f in before}
    b = {finding_key(f): f for f in after}
    out += [f"only before: {k}" for k in a.keys() - b.keys()]
    out += [f"only after: {k}" for k in b.keys() - a.keys()]
    for key in a.keys() & b.keys():
        for field in sorted((a[key].keys() | b[key].keys()) - ignore):
            if not same(a[key].get(field), b[key].get(field), rtol):
                out.append(f"{key} {field}: {a[key].get(field)!r} != {b[key].get(field)!r}")
    return out


def same(x: object, y: object, rtol: float) -> bool:
    """Equal, numbers within rtol relative (absolute 1e-12 near zero), containers element by element."""
    if isinstance(x, float) and isinstance(y, float):
        return math.isclose(x, y, rel_tol=rtol, abs_tol=1e-12) or (math.isnan(x) and math.isnan(y))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(same(x[k], y[k], rtol) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(same(i, j, rtol) for i, j in zip(x, y))
    return x == y


def largest_deviation(before: list[dict], after: list[dict]) -> float:
    """The largest relative difference between two numbers of the same field of matched findings."""
    b = {finding_key(f): f for f in after}
    return max((deviation(f[field], b[key][field]) for f in before if (key := finding_key(f)) in b
                for field in f.keys() & b[key].keys()), default=0.0)


def deviation(x: object, y: object) -> float:
    """Relative difference of two numbers (0 for equal values and non-numbers), the largest within containers."""
    if isinstance(x, dict) and isinstance(y, dict):
        return max((deviation(x[k], y[k]) for k in x.keys() & y.keys()), default=0.0)
    if isinstance(x, list) and isinstance(y, list):
        return max((deviation(i, j) for i, j in zip(x, y)), default=0.0)
    if isinstance(x, float) and isinstance(y, float) and math.isfinite(x) and math.isfinite(y) and x != y:
        return abs(x - y) / max(abs(x), abs(y))
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-9)
    parser.add_argument("--ignore", nargs="*", default=[], help="finding fields not compared")
    args = parser.parse_args(argv)
    before = json.loads(args.before.read_text(encoding="utf-8"))["findings"]
    after = json.loads(args.after.read_text(encoding="utf-8"))["findings"]
    found = differences(before, after, rtol=args.rtol, ignore=set(args.ignore))
    for line in found[:200]:
        print(line)
    print(f"{len(before)} findings before, {len(after)} after: "
          + ("the same" if not found else f"{len(found)} differences")
          + f"; largest relative difference of a number {largest_deviation(before, after):.1e}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
