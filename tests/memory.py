"""Peak Python allocations of a block, safe beside other threads.

``tracemalloc.stop()`` while another thread allocates can crash CPython before
3.12.9/3.13.2 (gh-128679: the traces table is freed under the other thread's
hook): a full run once died with SIGSEGV there, Dask's loop thread allocating
while a test stopped tracing. So tracing is started once and only reset per
block; :func:`stop_when_alone` (run by conftest after each test) stops it once
no other Python thread is left.
"""
from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager


class Peak:
    bytes: int = 0


@contextmanager
def traced_peak() -> Iterator[Peak]:
    """``with traced_peak() as p: ...`` then ``p.bytes`` is the block's peak."""
    if not tracemalloc.is_tracing():
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    peak = Peak()
    try:
        yield peak
    finally:
        peak.bytes = max(0, tracemalloc.get_traced_memory()[1] - base)


def stop_when_alone() -> None:
    if tracemalloc.is_tracing() and threading.active_count() == 1:
        tracemalloc.stop()
