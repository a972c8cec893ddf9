"""A local worker forked before anything else, so it loads wasmtime (most of a
worker's start) while this process imports the rest of gflite and parses the
flags; the run's executor adopts it (:func:`gflite.gwasm.workers.prestart`)."""
from __future__ import annotations

import os
import sys


def start() -> None:
    """Fork the spare worker now, if a core is free to start it: on a machine
    already busy it would compete with this process for a core, and its own
    start costs about 20 ms of CPU more than a worker forked when needed
    (measured: no faster then)."""
    from gflite.gwasm import workers

    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    if busy < workers.default_workers():
        workers.prestart()


def preload() -> None:
    """Have the spare worker load flite.wasm's compiled module now (about 10 ms
    more it need not spend once the first chunk is sent to it)."""
    workers = sys.modules.get("gflite.gwasm.workers")
    if workers is None:
        return
    from gflite import flitewasm
    from gflite.errors import GfliteError

    try:
        workers.preload(flitewasm.program())
    except GfliteError:  # no flite.wasm: the run itself says so
        pass


def discard() -> None:
    """End the worker :func:`start` forked, if no run adopted it."""
    workers = sys.modules.get("gflite.gwasm.workers")
    if workers is not None:
        workers.discard_spare()
