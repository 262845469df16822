"""Turning an audit's findings into HTML: one self-contained report per run, an index of runs, and the
consistency rules' breaching lines as breaches.csv next to the report."""

from reports.breaches import write_breaches
from reports.render import index_entry, render_index, render_report

__all__ = ["index_entry", "render_index", "render_report", "write_breaches"]
