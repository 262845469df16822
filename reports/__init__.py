"""Turning an audit's findings into HTML: one self-contained report per run, and an index of runs."""

from reports.render import render_index, render_report

__all__ = ["render_index", "render_report"]
