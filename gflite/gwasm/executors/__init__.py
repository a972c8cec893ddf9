"""Execution backends. Dask is imported only when the cluster executor is chosen."""
from __future__ import annotations

from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.workers import default_workers

__all__ = ["Executor", "Provider", "make_executor", "default_workers"]


def make_executor(*, workers: int | None = None, cluster: str | None = None,
                  files: bool = False) -> Executor:
    """The local executor (all cores), or the Dask one when a scheduler address is given.
    ``files``: outputs come back as spool files, not bytes (see gflite.gwasm.spool)."""
    if cluster:
        from gflite.gwasm.executors.dask import DaskExecutor

        return DaskExecutor.from_env(cluster, files=files)
    from gflite.gwasm.executors.local import LocalExecutor

    return LocalExecutor(workers or default_workers(), files=files)
