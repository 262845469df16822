"""Trend tests: across an ordered attribute's bands (age, tenure), does the gap rise band by band?

Each band is compared with its reference by the contrasts; an ordered attribute also gets one test of
whether the outcome is monotone in the band (sql/audit/trend.sql): within each cell, the measurement is
regressed on the band's rank, customers as clusters (CR1 with the cell means' leverage, as the contrasts),
the slope referred to t on G - 1 degrees of freedom. The slope is reported per band, as a ratio (ratio
scale: exp(slope), 1.02 = 2% more per band) or in points, and judged with the run's other tests (BH,
the check's threshold and direction): rising prices with age, or with tenure (price walking), are what
a per-band test can miss when each band's gap is small.
"""

from __future__ import annotations

import duckdb

from audits.coding import Coding
from audits.columns import CELL
from audits.disparity import Dimension, RawTest, metric_interval
from audits.sqlfiles import Ident, load_sql
from audits.stats import clustered_estimate

TREND_GROUP = "trend across bands"
TREND_REFERENCE = "band to band"


def trend_tests(con: duckdb.DuckDBPyConnection, check: str, metric: str, coding: Coding,
                dimensions: list[Dimension], ordered: set[str], *, confidence: float) -> list[RawTest]:
    """One trend test per dimension of a single ordered column (whole population), over `measurements`."""
    tests = []
    for d in dimensions:
        if d.segment_column is not None or len(d.columns) != 1 or d.columns[0] not in ordered:
            continue
        group_set = coding.sets[d.columns]
        beta, bread, meat, customers, bands = con.execute(
            load_sql("audit/trend").render(code=Ident(group_set.key), cell=Ident(CELL))).fetchone()
        if beta is None or not bread or customers is None or customers < 2 or bands < 3:
            continue  # fewer than three bands compared: the group tests say all there is
        estimate = clustered_estimate(beta, meat / bread**2, n_clusters=int(customers), df=int(customers) - 1)
        value, low, high, p = metric_interval(f"trend_{metric}", estimate, confidence=confidence)
        tests.append(RawTest(check, f"trend_{metric}", d, "", TREND_GROUP, int(customers), int(customers),
                             value, low, high, p, difference=estimate, reference_label=TREND_REFERENCE))
    return tests
