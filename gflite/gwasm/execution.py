"""Run a task's subtasks on an executor: cache lookups, retries, the task
timeout, and results handed back in subtask order however they finish.

Each subtask's attempts are tracked by a small state object
(:class:`SubtaskState`): it decides what to submit next and when the subtask
has a final outcome. Verification by redundancy passes its own (``make_state``:
submit to k providers, compare digests) without touching the loop.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from dataclasses import dataclass, field, replace

from gflite.errors import ExecutionError
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.executors.base import Executor
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult

OnResult = Callable[[SubtaskResult, bool], None]


@dataclass
class SubtaskState:
    """The attempts of one subtask, redundancy 1: one attempt at a time, up to
    ``max_attempts`` of them; the first success is final.

    The protocol :func:`run` relies on (a replacement implements the same):
    ``subtask``; ``in_flight`` (maintained by run); ``final`` (None until
    decided); ``from_cache``; ``next_submissions()``, the providers to start
    attempts on now (None: any); ``record(result)``; ``give_up(reason)``.
    """

    subtask: Subtask
    max_attempts: int
    attempts: list[SubtaskResult] = field(default_factory=list)
    in_flight: int = 0
    final: SubtaskResult | None = None
    from_cache: bool = False

    def next_submissions(self) -> list[str | None]:
        """Providers to submit a new attempt to now (None: any provider)."""
        if self.final is None and self.in_flight == 0:
            return [None]
        return []

    def record(self, result: SubtaskResult) -> None:
        """Take an attempt's result; sets ``final`` once the subtask is decided."""
        self.attempts.append(result)
        if result.ok:
            self.final = result
        elif len(self.attempts) >= self.max_attempts:
            n = len(self.attempts)
            self.final = replace(result, reason=f"{result.reason} (after {n} attempts)") if n > 1 else result

    def give_up(self, reason: str) -> None:
        last = self.attempts[-1].reason if self.attempts else ""
        self.final = SubtaskResult(
            index=self.subtask.index,
            name=self.subtask.name,
            ok=False,
            reason=f"{reason} (last attempt: {last})" if last else reason,
        )


def _outcome(future: Future[SubtaskResult], subtask: Subtask) -> SubtaskResult:
    """The attempt's result; an executor failure counts as a failed attempt."""
    try:
        return future.result()
    except CancelledError:
        reason = "cancelled"
    except Exception as exc:  # e.g. a lost cluster worker: retry like any failure
        reason = f"executor error: {type(exc).__name__}: {exc}"
    return SubtaskResult(index=subtask.index, name=subtask.name, ok=False, reason=reason)


def _seconds(s: float) -> str:
    return f"{s:g} s"


def failure_message(outcomes: Iterable[SubtaskResult], shown: int = 3) -> str:
    """One line naming the failed subtasks and why, e.g. ``2 of 5 subtasks failed: s2 (exit code 3), ...``."""
    outcomes = list(outcomes)
    failed = [r for r in outcomes if not r.ok]
    parts = [f"{r.name} ({r.reason[:120]})" for r in failed[:shown]]
    if len(failed) > shown:
        parts.append(f"and {len(failed) - shown} more")
    return f"{len(failed)} of {len(outcomes)} subtasks failed: {', '.join(parts)}"


def run(
    executor: Executor,
    program: Program,
    subtasks: Iterable[Subtask],
    limits: Limits,
    *,
    retries: int = 2,
    task_timeout: float | None = None,
    cache: ResultCache | None = None,
    on_result: OnResult | None = None,
    make_state: Callable[[Subtask], SubtaskState] | None = None,
) -> Iterator[SubtaskResult]:
    """Yield each subtask's successful result in index order, as soon as it and
    all before it are done.

    Cached results are used without executing. A failed attempt is retried up
    to ``retries`` times. If a subtask still fails, the others run to the end
    (and are cached) and then ExecutionError is raised with every subtask's
    final outcome; after ``task_timeout`` seconds the unfinished ones are
    cancelled and reported as timed out. Closing the generator early cancels
    everything still pending. ``make_state`` replaces the per-subtask
    bookkeeping (default: ``SubtaskState(subtask, retries + 1)``).
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    if make_state is None:

        def make_state(subtask: Subtask) -> SubtaskState:
            return SubtaskState(subtask, retries + 1)

    states = [make_state(s) for s in sorted(subtasks, key=lambda s: s.index)]
    if len({st.subtask.index for st in states}) != len(states):
        raise ValueError("subtask indices must be unique")
    deadline = None if task_timeout is None else time.monotonic() + task_timeout
    in_flight: dict[Future[SubtaskResult], SubtaskState] = {}
    next_out = 0

    def finished(st: SubtaskState) -> None:
        assert st.final is not None
        if st.final.ok and cache is not None and not st.from_cache:
            cache.put(program, st.subtask, st.final)
        if on_result is not None:
            on_result(st.final, st.from_cache)

    def submit(st: SubtaskState) -> None:
        # A refused submission counts as a failed attempt, so this loop is bounded.
        while st.final is None and (providers := st.next_submissions()):
            for provider in providers:
                try:
                    future = executor.submit(program, st.subtask, limits, provider=provider)
                except Exception as exc:
                    st.record(
                        SubtaskResult(
                            index=st.subtask.index,
                            name=st.subtask.name,
                            ok=False,
                            reason=f"cannot submit: {type(exc).__name__}: {exc}",
                        )
                    )
                    if st.final is not None:
                        finished(st)
                        return
                    continue
                st.in_flight += 1
                in_flight[future] = st

    try:
        if cache is not None:
            for st in states:
                hit = cache.get(program, st.subtask)
                if hit is not None:
                    st.final, st.from_cache = hit, True
                    finished(st)
        for st in states:
            if st.final is None:
                submit(st)

        while True:
            while next_out < len(states) and states[next_out].final is not None and states[next_out].final.ok:
                yield states[next_out].final  # type: ignore[misc]
                next_out += 1
            if not in_flight:
                break
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
            if not done:  # the task timeout passed
                for future, st in list(in_flight.items()):
                    future.cancel()
                    del in_flight[future]
                    if st.final is None:
                        st.give_up(f"task timeout of {_seconds(task_timeout or 0)} exceeded")
                        finished(st)
                break
            for future in done:
                st = in_flight.pop(future)
                st.in_flight -= 1
                if st.final is not None:  # decided already (redundant attempt)
                    continue
                st.record(_outcome(future, st.subtask))
                if st.final is not None:
                    finished(st)
                    # Replicas still running for a decided subtask are not needed.
                    for other, owner in list(in_flight.items()):
                        if owner is st:
                            other.cancel()
                            del in_flight[other]
                            st.in_flight -= 1
                else:
                    submit(st)

        for st in states:
            if st.final is None:  # nothing left to run it on
                st.give_up("no provider could take it")
                finished(st)
        outcomes = tuple(st.final for st in states if st.final is not None)
        if not all(r.ok for r in outcomes):
            timed_out = any("task timeout" in r.reason for r in outcomes if not r.ok)
            message = failure_message(outcomes)
            if timed_out:
                message = f"task timeout of {_seconds(task_timeout or 0)} exceeded; {message}"
            raise ExecutionError(message, outcomes)
    finally:
        for future in in_flight:
            future.cancel()
