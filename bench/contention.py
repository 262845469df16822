"""A competing tenant for `bench/run.py --competing-load SHARE`: one process keeping one core busy SHARE of
the time (busy SHARE x 100 ms of every 100 ms) until it is stopped, so that a run shows how the figures and
their ratios hold up when other work takes part of this 2-core machine.

    python bench/contention.py SHARE
"""

from __future__ import annotations

import sys
import time

PERIOD_S = 0.1


def main(argv: list[str]) -> int:
    share = float(argv[0])
    while True:
        busy_until = time.monotonic() + PERIOD_S * share
        while time.monotonic() < busy_until:
            pass
        if share < 1:
            time.sleep(PERIOD_S * (1 - share))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
