"""The Dask backend, split by who runs what (each module small enough to audit):

- :mod:`.executor` -- the requestor's executor, and :mod:`.requestor`, which hardens
  the requestor's process for its Dask client;
- :mod:`.tasks` -- the code a provider runs: install a program, run one attempt;
- :mod:`.messages` -- the plain-data request and answer, decoded with size caps;
- :mod:`.provider` -- the worker and nanny preload (hardens a provider);
- :mod:`.scheduler` -- the scheduler preload (hardens the requestor's scheduler);
- :mod:`.guard`, :mod:`.unpickle`, :mod:`.policies` -- the hardening they share:
  handler allow-lists and TLS roles, the restricted unpickler and what each
  party may unpickle.

Importing this package imports no Dask and hardens nothing; the two preload
modules harden the process that imports them, so a requestor never imports them.
"""
from __future__ import annotations

from gflite.gwasm.executors.dask.executor import (
    CLUSTER_ENV,
    TLS_ENV,
    DaskExecutor,
    security_from_files,
)

__all__ = ["CLUSTER_ENV", "TLS_ENV", "DaskExecutor", "security_from_files"]
