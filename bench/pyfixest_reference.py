"""The third reference: the audit's disparity statistics the way a careful analyst computes them, with pyfixest.

For each of the four disparity checks, one regression per test: `feols("y ~ D | cell",
vcov={"CRV1": "customer"})`, where D marks the tested group's lines, the reference is all other customers
and the cell is product x day x currency x controls (what the audit's cells are). y is the log unit price
(price_gap; loyalty_penalty, existing against new customers), whether the line was discounted (a linear
probability model: discount_incidence) or the discount as a fraction of the list price on discounted lines
(discount_depth). Each grouping (the attributes and intersections of the config) is tested for the whole
population and within each segment value: one call per model, on the whole sample and on each segment
value's lines, `lean=True, copy_data=False, store_data=False` (coefficients and standard errors kept,
per-line arrays dropped). pyfixest's multiple estimation (`sw()` over the groups, `fsplit=` the segment)
does not help here: it took 15% more CPU and 2.3 times the memory (it holds every model it fits,
each with arrays as long as its sample), so the careful analyst fits one model at a time.

The lines come from the analyst's own query over the warehouse (the audited period, the customers'
attributes joined), not from the audit's code, so agreement checks the audit's lines and statistics both.
beta is the within-cell difference the audit reports (price_gap's estimate is exp(beta)); the standard
errors differ on purpose (see `compare_with_engine`).
"""

from __future__ import annotations

import datetime as dt
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import duckdb
import numpy as np

from audits.config import Config
from audits.warehouse import quote_identifier
from bench.references import INTERSECTION, column_source

# check -> its outcome column: a check's sample is the lines where it is known
CHECKS: dict[str, str] = {
    "price_gap": "log_price",
    "discount_incidence": "is_discounted",
    "discount_depth": "discount_pct",
    "loyalty_penalty": "log_price",
}
LOYALTY = ("tenure", "existing")  # loyalty_penalty's grouping and tested group (against "new")
FIXED_REFERENCE = ("the pyfixest reference compares each group with all other customers; "
                   "the bench config sets no audit.reference")


def analyst_lines_sql(con: duckdb.DuckDBPyConnection, config: Config) -> str:
    """One row per line of the period: customer, cell, segment and grouping values, and the outcomes."""
    source = column_source(con)
    wanted = list(dict.fromkeys([*config.attributes, *config.segment_by]))
    selected = "".join(f", cast({source(c)} as varchar) as {quote_identifier(_name(c))}" for c in wanted)
    selected += "".join(
        f", {' || $intersection || '.join(f'cast({source(c)} as varchar)' for c in combo)}"
        f" as {quote_identifier(_name(INTERSECTION.join(combo)))}" for combo in config.intersections)
    cell = ", ".join(["t.product_id", "t.timestamp::date", "t.currency", *(source(c) for c in config.controls)])
    discounted = "(coalesce(t.unit_price < t.list_price, false) or coalesce(t.discount_amount > 0, false))"
    return f"""
        with first_purchase as (
            select customer_id, min(timestamp)::date as first_day from transactions group by customer_id),
        data_start as (select min(timestamp)::date as first_day from transactions)
        select t.customer_id as customer, hash({cell}) as cell{selected},
               case when t.unit_price > 0 then ln(t.unit_price) end as log_price,
               case when t.list_price is not null or t.discount_amount is not null
                    then {discounted}::double end as is_discounted,
               case when {discounted} and t.list_price > 0
                    then greatest(1 - t.unit_price / t.list_price,
                                  coalesce(t.discount_amount / (t.list_price * t.quantity), 0)) end as discount_pct,
               -- tenure from customer_since, else from the first purchase, which says nothing for lines
               -- within tenure_days of the data's start
               case when c.customer_since is null
                         and date_diff('day', s.first_day, t.timestamp::date) <= $tenure_days then null
                    when date_diff('day', coalesce(c.customer_since, f.first_day), t.timestamp::date) > $tenure_days
                    then 'existing' else 'new' end as tenure
        from transactions as t
        left join customers as c using (customer_id)
        left join first_purchase as f using (customer_id)
        cross join data_start as s
        where t.timestamp >= $start and t.timestamp < $end"""


def load_lines(con: duckdb.DuckDBPyConnection, config: Config, *, start: dt.date, end: dt.date):
    """The analyst's lines of [start, end] as a pandas frame."""
    if config.reference:
        raise ValueError(FIXED_REFERENCE)
    return con.execute(analyst_lines_sql(con, config), {
        "start": dt.datetime.combine(start, dt.time()), "end": dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
        "tenure_days": config.tenure_days, **({"intersection": INTERSECTION} if config.intersections else {})}).df()


def group_columns(frame, config: Config, check: str) -> dict[str, tuple[str, str]]:
    """Add to `frame` one float 0/1 column per group the check tests (D0, D1, ...); column -> (grouping, group)."""
    if check == "loyalty_penalty":
        dimensions = [LOYALTY[0]]
    else:
        dimensions = [*config.attributes, *(INTERSECTION.join(combo) for combo in config.intersections)]
    out: dict[str, tuple[str, str]] = {}
    for dimension in dimensions:
        values = frame[_name(dimension)]
        groups = [LOYALTY[1]] if check == "loyalty_penalty" else sorted(values.dropna().unique())
        for group in groups:
            column = f"D{len(out)}"
            frame[column] = (values == group).to_numpy(np.float64)
            out[column] = (dimension, str(group))
    return out


def run_pyfixest(frame, config: Config, *, phase: Callable[[str], AbstractContextManager[Any]]
                 ) -> dict[str, Any]:
    """Fit every test of the config's disparity checks; per check its seconds, models and per test beta and
    CRV1 standard error with pyfixest's small-sample factor, cluster count and observations. `phase(name)`
    times a block (the stage's sampler)."""
    import pyfixest

    segment = _name(config.segment_by[0]) if config.segment_by else None
    checks: dict[str, Any] = {}
    for check in (c for c in config.checks if c in CHECKS):
        outcome = CHECKS[check]
        sample = frame[frame[outcome].notna()]
        if check == "loyalty_penalty":
            sample = sample[sample["tenure"].notna()]
        sample = sample.copy()
        d_columns = group_columns(sample, config, check)
        sample = sample[[outcome, "cell", "customer", *([segment] if segment else []), *d_columns]]
        tests = []
        clock = time.monotonic()
        with phase(f"pyfixest_{check}"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pyfixest reports the singleton cells it drops, for every model
            for label, part in _parts(sample, segment):
                for column, (grouping, group) in d_columns.items():
                    model = pyfixest.feols(f"{outcome} ~ {column} | cell", part, vcov={"CRV1": "customer"},
                                           lean=True, copy_data=False, store_data=False)
                    tests.append({"check": check, "grouping": grouping, "group": group, "segment": label,
                                  **_estimate(model)})
        seconds = time.monotonic() - clock
        checks[check] = {"seconds": seconds, "lines": len(sample), "models": len(tests),
                         "seconds_per_model": seconds / len(tests) if tests else None, "tests": tests}
    return checks


def _parts(sample, segment: str | None) -> Iterator[tuple[str, Any]]:
    """The whole sample, then each segment value's lines, with the label findings give them."""
    yield "", sample
    if segment:
        for value in sorted(sample[segment].dropna().unique()):
            yield f"{segment}={value}", sample[sample[segment] == value]


def _estimate(model) -> dict[str, Any]:
    """beta and its CRV1 standard error, with what pyfixest's small-sample factor was computed from."""
    return {"beta": float(model.coef().iloc[0]), "se": float(model.se().iloc[0]),
            "ssc": float(np.ravel(model._ssc)[0]), "n_clusters": int(np.ravel(model._G)[0]), "n_lines": int(model._N)}


def test_key(check: str, grouping: str, segment: str, group: str) -> tuple[str, str, str, str]:
    return check, grouping, segment, group


def compare_with_findings(checks: dict[str, Any], findings: list[dict[str, Any]]) -> dict[str, Any]:
    """pyfixest's price_gap betas against the audit's findings (estimate = exp(beta)) where both exist."""
    ours = {test_key(f["check"], f["attribute"], _segment(f["segment"]), f["group"]): math.log(f["estimate"])
            for f in findings if f["check"] == "price_gap" and f.get("estimate")}
    theirs = {test_key("price_gap", t["grouping"], t["segment"], t["group"]): t["beta"]
              for t in checks.get("price_gap", {}).get("tests", [])}
    both = ours.keys() & theirs.keys()
    return {"tests_audit": len(ours), "tests_pyfixest": len(theirs), "tests_in_both": len(both),
            "max_abs_beta_difference": max((abs(ours[k] - theirs[k]) for k in both), default=math.nan)}


def compare_with_engine(checks: dict[str, Any], engine: list[dict[str, Any]]) -> dict[str, Any]:
    """pyfixest against the audit's engine with plain CR1 errors (`leverage_adjusted=False`), per check.

    beta must be equal. The engine's CR1 variance is G/(G-1) times the sandwich, G its customers in
    comparisons; pyfixest's CRV1 is its small-sample factor (`ssc`: G/(G-1) x (N-1)/(N-k) over its own
    sample, k counting the cells' fixed effects) times the same sandwich. So the standard errors are
    compared with each side's factor divided out (`max_rel_sandwich_se_difference`), and
    `median_se_ratio` gives pyfixest's as reported over the engine's."""
    ours = {test_key(t["check"], t["grouping"], t["segment"], t["group"]): t for t in engine}
    out: dict[str, Any] = {}
    for check, fitted in checks.items():
        theirs = {test_key(check, t["grouping"], t["segment"], t["group"]): t for t in fitted["tests"]}
        both = [k for k in theirs if k in ours and ours[k]["beta"] is not None]
        beta = [abs(theirs[k]["beta"] - ours[k]["beta"]) for k in both]
        sandwich, ratio = [], []
        for k in both:
            g = ours[k]["n_clusters"]
            ours_raw = ours[k]["se"] / math.sqrt(g / (g - 1))
            theirs_raw = theirs[k]["se"] / math.sqrt(theirs[k]["ssc"])
            sandwich.append(abs(theirs_raw / ours_raw - 1))
            ratio.append(theirs[k]["se"] / ours[k]["se"])
        out[check] = {
            "tests_engine": sum(k[0] == check for k in ours), "tests_pyfixest": len(theirs), "tests_in_both": len(both),
            "max_abs_beta_difference": max(beta, default=math.nan),
            "max_rel_sandwich_se_difference": max(sandwich, default=math.nan),
            "median_se_ratio": float(np.median(ratio)) if ratio else math.nan,
            "median_ssc": float(np.median([theirs[k]["ssc"] for k in both])) if both else math.nan,
        }
    return out


def _segment(segment: dict[str, str] | None) -> str:
    return "" if not segment else ",".join(f"{k}={v}" for k, v in segment.items())


def _name(column: str) -> str:
    """A frame column for a config column or grouping (an intersection's name has spaces and '&')."""
    return column.replace(INTERSECTION, "__x__")
