"""This process and the processes it starts: a quiet exit, and no child outliving it.

`quiet_process_exit`: duckdb's nanobind bindings report objects still alive when the interpreter finalizes
("nanobind: leaked 27 instances!", dozens of lines), after the command's last line. nanobind documents these
reports as benign at shutdown; they are not the user's to act on. Every process that imports duckdb for
us calls it: the CLI first thing, and each flow run (a process that `serve` starts runs one).
`die_with_this_process`: for a child (the Prefect server of `serve --ui`) that must not outlive us even when
we are SIGKILLed, so that nothing keeps our port, or the terminal's or a supervisor's pipes, open.
`flow_run_process`: what a flow does first in its process; where `serve` started that process (a flow run of
a deployment, started by Prefect's runner), the process also ends when `serve` ends.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
SERVE_PID_ENV = "PRICEPARITY_SERVE_PID"  # set by `serve`; Prefect's runner passes it to the flow-run processes
_quieted = False


def quiet_process_exit() -> None:
    """At exit, after the atexit handlers registered before this call, send stderr to /dev/null (once per process)."""
    global _quieted
    if _quieted:
        return
    _quieted = True

    def redirect() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)

    atexit.register(redirect)


def flow_run_process() -> None:
    """Called first by each flow: a quiet exit, and, in a process `serve` started, SIGKILL when `serve` ends.

    SIGKILL, not SIGTERM: Prefect's engine catches SIGTERM to report the run's end to the server, which died
    with `serve`, and stays (seen: over a minute). Nothing is lost: the warehouse's writes are transactions
    and a report folder is published all or nothing."""
    quiet_process_exit()
    serve = os.environ.pop(SERVE_PID_ENV, None)  # not for this process's own children (Dask workers)
    if serve is None:
        return
    if os.getppid() == int(serve):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if not is_alive(int(serve)):  # `serve` ended while this process was starting
        os._exit(1)


def is_alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with_this_process() -> Callable[[], None]:
    """A `preexec_fn` making the child receive SIGTERM when this process ends, however it ends (Linux's
    PR_SET_PDEATHSIG, tied to the calling thread: start the child from the main thread)."""
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork: no dlopen in the child

    def in_child() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # we died before prctl took effect
            os._exit(1)

    return in_child
