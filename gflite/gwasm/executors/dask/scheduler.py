"""Dask preload that hardens the requestor's scheduler::

    dask scheduler --preload gflite.gwasm.executors.dask.scheduler ...

Importing it makes every unpickling in this process go through the scheduler
policy (the requestor's task graphs and nothing callable beyond them), blocks
the handlers a gflite cluster does not use (``run_function``, plugins,
``restart``, ``feed``, ...), and keeps Dask's HTTP servers on loopback. Its
hook then checks roles under TLS (a client must hold a requestor
certificate, a worker a provider one) and records each worker's certificate
identity as that provider's operator.
"""
from __future__ import annotations

from typing import Any

import dask

from gflite.gwasm.executors.dask import guard, policies, unpickle

unpickle.install(policies.SCHEDULER)
dask.config.set(guard.blocked_config())
guard.loopback_http()


def dask_setup(scheduler: Any) -> None:
    guard.harden(scheduler, "scheduler")
    guard.register_identity(scheduler)
