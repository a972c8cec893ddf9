"""Run a task: the one entry point both CLIs use (:func:`run_task`), and
:func:`run` for a caller that already has an executor.

The parts live in their own modules: the run's terms and report
(:mod:`gflite.gwasm.terms`), one subtask's attempts (:mod:`gflite.gwasm.attempts`),
the dispatcher (:mod:`gflite.gwasm.dispatch`), what an accepted result carries
(:mod:`gflite.gwasm.outcomes`).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

from gflite.gwasm.attempts import State, SubtaskState, VerifiedState
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.dispatch import Dispatcher, MakeState, OnResult, failure_message
from gflite.gwasm.executors.base import Executor
from gflite.gwasm.outcomes import Accepted, Provenance, Trust
from gflite.gwasm.subtask import Program, Subtask, SubtaskResult
from gflite.gwasm.terms import RunTerms, TaskReport

__all__ = [
    "Accepted", "Dispatcher", "Provenance", "RunTerms", "State", "SubtaskState", "TaskReport",
    "Trust", "VerifiedState", "failure_message", "run", "run_task",
]


def run(executor: Executor, program: Program, subtasks: Iterable[Subtask],
        terms: RunTerms = RunTerms(), *, cache: ResultCache | None = None,
        auditor: Executor | None = None, on_result: OnResult | None = None,
        report: TaskReport | None = None, make_state: MakeState | None = None,
        files: bool = False) -> Iterator[SubtaskResult]:
    """Run ``subtasks`` on ``executor`` under ``terms``; yields accepted results in
    index order (see :meth:`Dispatcher.results`); ``files``: see :class:`Dispatcher`."""
    return Dispatcher(executor, program, subtasks, terms, cache=cache, auditor=auditor,
                      on_result=on_result, report=report, make_state=make_state,
                      files=files).results()


def run_task(program: Program, subtasks: Iterable[Subtask], terms: RunTerms, *,
             workers: int | None = None, cluster: str | None = None,
             cache: ResultCache | None = None, on_result: OnResult | None = None,
             report: TaskReport | None = None,
             on_start: Callable[[Executor], None] | None = None,
             files: bool = False) -> Iterator[SubtaskResult]:
    """What ``gwasm run`` and ``gflite`` run: open the executor (this machine's
    workers, or the cluster at ``cluster``), and an auditor on this machine if
    ``terms.audit`` asks for one; the user's result cache unless
    ``terms.use_cache`` is off (``cache`` overrides which); ``on_start(executor)``
    before any work. Yields as :func:`run`; closing it closes the executors.
    ``files``: results are OutputFiles (this machine's spool or the cache's
    entries), valid until the next result is asked for (see
    :mod:`gflite.gwasm.spool`); a remote executor may still answer in bytes."""
    from gflite.gwasm.executors import make_executor

    with contextlib.ExitStack() as stack:
        auditor = None
        if terms.audit > 0 and cluster:
            from gflite.gwasm.executors.local import LocalExecutor

            # Started before the cluster client, whose threads would make forking unsafe.
            auditor = stack.enter_context(LocalExecutor(1))
        executor = stack.enter_context(make_executor(workers=workers, cluster=cluster, files=files))
        if on_start is not None:
            on_start(executor)
        if terms.use_cache and cache is None:
            cache = ResultCache()
        results = run(executor, program, subtasks, terms, cache=cache if terms.use_cache else None,
                      auditor=auditor, on_result=on_result, report=report, files=files)
        try:
            yield from results
        finally:
            results.close()  # type: ignore[attr-defined]
