"""Test-only Dask worker preload: a gflite provider WITHOUT the hardening.

It publishes the price like ``gflite.gwasm.executors.dask.provider`` but
leaves pickle, handlers and HTTP as Dask has them: the cluster as it was
before the hardening, for the attack tests' "before" and the benchmark's
baseline. Production code has no such switch.
"""
from __future__ import annotations

from typing import Any

from gflite import __version__
from gflite.gwasm.executors.dask import messages, tasks


def dask_setup(worker: Any) -> None:
    info = {"price": messages.declared_price(), "version": __version__,
            "caps": messages.caps_info(tasks.declare_caps())}
    worker.startup_information[messages.INFO_KEY] = lambda _w: dict(info)


def dask_teardown(worker: Any) -> None:
    tasks.close()
