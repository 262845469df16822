"""What a run tells the person at the terminal and, inside a Prefect run, the run's log in the UI.

A line goes to stdout when a person started the command (the CLI calls `to_terminal`) or outside a Prefect
run; inside a flow run that Prefect's runner started (under `serve`) it goes to the run's log only, which
the runner echoes to `serve`'s output: once, not twice. Light on purpose (the CLI's error path imports it):
Prefect is looked at only when it is already imported.
"""

from __future__ import annotations

import sys

from audits.errors import printable

_terminal = False


def to_terminal() -> None:
    """This process is a command a person (or a script) started: progress goes to stdout, run or not."""
    global _terminal
    _terminal = True


def in_prefect_run() -> bool:
    """Whether this code runs inside a Prefect flow or task run (never imports Prefect to find out)."""
    if "prefect" not in sys.modules:
        return False
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def say(message: str) -> None:
    """One line of progress: on stdout (see the module's docstring) and, inside a Prefect run, in its log."""
    message = printable(message)
    in_run = in_prefect_run()
    if _terminal or not in_run:
        print(message, flush=True)
    if in_run:
        from prefect import get_run_logger

        get_run_logger().info(message)
