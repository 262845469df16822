"""The columns the audit's SQL and its Python share, named in one place.

The audit builds two tables per period (sql/audit/): `audit_lines`, one row per audited line with the
canonical columns, the configured attributes (as text), `tenure`, `quantity_band` and two hashes, the
fixed effect (`fe_key`: cell columns x currency) and the within-cell comparison's cell (`cell_key`: that
and every control); then `coded_lines`, one narrow row per line with dense integer codes, which the
disparity checks' SQL files read and extend with their measurement `y` (`measurements`). The engine
(audits/contrasts.py) reads `coded_lines` by these names only.
"""

from __future__ import annotations

AUDIT_LINES = "audit_lines"
CODED_LINES = "coded_lines"
MEASUREMENTS = "measurements"

CUSTOMER = "ci"  # the customer's dense index (customers are the clusters)
CELL = "xi"  # the within-cell comparison's cell (fixed effect x controls)
FIXED_EFFECT = "fi"  # cell columns x currency: the regression-adjusted model's fixed effect
MEASURE = "y"  # what a disparity check measures per line
MISSING_LEVEL = "(missing)"  # a control's missing value is a level of its own

# columns of audit_lines that coded_lines carries for the checks' measurements
MEASURED_COLUMNS = ("unit_price", "list_price", "is_discounted", "discount_pct", "outcome_y")
# columns the audit computes rather than reads from the warehouse
COMPUTED_COLUMNS = ("quantity_band", "tenure")


def group_key(k: int) -> str:
    """The code column of the k-th audited grouping (attribute, intersection or tenure)."""
    return f"g{int(k)}"


def segment_key(j: int) -> str:
    """The code column of the j-th segment column."""
    return f"s{int(j)}"


def control_key(j: int) -> str:
    """The code column of the j-th control."""
    return f"q{int(j)}"


def segment_cell_key(j: int) -> str:
    """A segment column that is not nested in the cells: its cell x value index."""
    return f"x{int(j)}"


def segment_fe_key(j: int) -> str:
    """... and its fixed effect x value index."""
    return f"f{int(j)}"
