"""Plumbing the two command-line front ends share (``gflite`` and ``gwasm``).

Only CLI modules import this: it decides how things look on a terminal, which
library code never does.
"""
from __future__ import annotations

import os
import re
import sys
from typing import NoReturn

# C0 and C1 control characters (ESC, CR, LF, BEL, CSI ...) and DEL: a string
# from another party (a provider's name or reason, a book's title) that held
# them could move the cursor, rewrite a bill line or set the window title.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def for_terminal(text: object, limit: int = 200) -> str:
    """``text`` made safe to print on one terminal line: control characters shown
    as ``\\xNN`` escapes, and cut to ``limit`` characters with an ellipsis."""
    s = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
    return s if len(s) <= limit else s[: max(0, limit - 1)] + "\u2026"


def exit_now(code: int) -> NoReturn:
    """End a console script with ``code`` once its work is done and cleaned up.

    Python's own teardown frees every module and object one by one: about 35 ms
    for gflite's, longer than saying "Hello." takes. The kernel frees it all at
    once. What the teardown would still do that matters, flushing stdout and
    stderr, is done here; a reader of stdout that has gone is not an error
    then (the output it wanted is written or it left early)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe, or a stream already closed
            pass
    os._exit(code)


def quiet_cluster_logs() -> None:
    """Silence Dask's own logging (reconnect attempts, lost workers) on stderr: the
    engine copes with those and the CLIs report what matters in one line.

    Importing distributed sets its loggers' levels, so this imports it first;
    call it only when a cluster is used."""
    import logging

    try:
        import distributed  # noqa: F401
    except ImportError:
        return  # the cluster executor reports the missing install
    for name in ("distributed", "distributed.client", "distributed.gc", "tornado",
                 "tornado.application"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def market_in_play(cluster: str | None, redundancy: int, bid: float | None,
                   budget: float | None) -> bool:
    """Whether the run's summary includes the bill: local runs with default terms are free."""
    return bool(cluster) or redundancy > 1 or bid is not None or budget is not None
