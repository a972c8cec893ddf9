"""execution.run on a real LocalExecutor: ordered streaming, retries, failures that
report every subtask, the task timeout, resuming from the result cache, and
cancelling on close.

Two thin executor wrappers stand for what a network of providers does to us:
counting submissions, and a provider that loses the first attempt.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from gflite.errors import ExecutionError
from gflite.gwasm import execution
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.executors.local import LocalExecutor
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult

WatProgram = Callable[[str], Program]
LIMITS = Limits(memory_bytes=64 << 20, subtask_timeout=20.0, output_bytes=1 << 20)


class Counting(Executor):
    """Passes attempts to a real executor and remembers them."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.submitted: list[tuple[str, Future[SubtaskResult]]] = []

    def providers(self) -> tuple[Provider, ...]:
        return self.inner.providers()

    def submit(self, program: Program, subtask: Subtask, limits: Limits, provider: str | None = None):  # type: ignore[no-untyped-def]
        future = self.inner.submit(program, subtask, limits, provider)
        self.submitted.append((subtask.name, future))
        return future

    def names(self) -> list[str]:
        return [name for name, _ in self.submitted]


class LosesFirstAttempt(Counting):
    """A provider that drops the first attempt of each subtask: once as a failed
    result, once (``raises=True``) as an exception from the executor."""

    def __init__(self, inner: Executor, raises: bool = False) -> None:
        super().__init__(inner)
        self.raises = raises
        self.seen: set[str] = set()

    def submit(self, program: Program, subtask: Subtask, limits: Limits, provider: str | None = None):  # type: ignore[no-untyped-def]
        if subtask.name in self.seen:
            return super().submit(program, subtask, limits, provider)
        self.seen.add(subtask.name)
        future: Future[SubtaskResult] = Future()
        if self.raises:
            future.set_exception(ConnectionError("provider went away"))
        else:
            future.set_result(SubtaskResult(subtask.index, subtask.name, ok=False, reason="provider left"))
        self.submitted.append((subtask.name, future))
        return future


@pytest.fixture(scope="module")
def local() -> Iterator[LocalExecutor]:
    with LocalExecutor(3) as ex:
        yield ex


def upper(i: int, name: str | None = None) -> Subtask:
    return Subtask(i, name or f"s{i}", ("in.txt", "out.txt"), (("in.txt", b"number %d" % i),), ("out.txt",))


def sleeper(i: int, ms: int) -> Subtask:
    return Subtask(i, f"s{i}", (str(ms), f"slept {ms}"), (), ("out.txt",))


def test_results_come_in_index_order(local: LocalExecutor, wat_program: WatProgram) -> None:
    finished: list[int] = []
    subtasks = [sleeper(0, 1500), sleeper(1, 0), sleeper(2, 700)]
    results = list(
        execution.run(local, wat_program("sleep"), subtasks, LIMITS, on_result=lambda r, _: finished.append(r.index))
    )
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.outputs[0][1] for r in results] == [b"slept 1500", b"slept 0", b"slept 700"]
    assert finished[0] == 1 and finished[-1] == 0  # on_result follows completion order


def test_results_stream_while_work_continues(local: LocalExecutor, wat_program: WatProgram) -> None:
    finished: list[int] = []
    run = execution.run(
        local, wat_program("sleep"), [sleeper(0, 0), sleeper(1, 1500)], LIMITS,
        on_result=lambda r, _: finished.append(r.index),
    )
    first = next(run)
    assert first.index == 0 and finished == [0]  # subtask 1 is still running
    assert [r.index for r in run] == [1]


def test_order_by_index_not_by_position(local: LocalExecutor, wat_program: WatProgram) -> None:
    results = list(execution.run(local, wat_program("upper"), [upper(5), upper(2), upper(9)], LIMITS))
    assert [r.index for r in results] == [2, 5, 9]
    assert list(execution.run(local, wat_program("upper"), [], LIMITS)) == []


def test_failure_reports_every_subtask_after_the_others_finish(
    local: LocalExecutor, wat_program: WatProgram, tmp_path: Path
) -> None:
    cache = ResultCache(tmp_path)
    program = wat_program("sleep")
    bad = Subtask(1, "s1", ("0",), (), ("out.txt",))  # no TEXT argument: the guest exits 100
    subtasks = [sleeper(0, 0), bad, sleeper(2, 500)]
    counting = Counting(local)
    yielded = []
    with pytest.raises(ExecutionError) as info:
        for result in execution.run(counting, program, subtasks, LIMITS, retries=1, cache=cache):
            yielded.append(result.index)
    error = info.value
    assert error.exit_code == 5
    assert yielded == [0]
    assert [(r.name, r.ok) for r in error.outcomes] == [("s0", True), ("s1", False), ("s2", True)]
    assert error.outcomes[1].reason == "exit code 100 (after 2 attempts)"
    assert str(error) == "1 of 3 subtasks failed: s1 (exit code 100 (after 2 attempts))"
    assert counting.names().count("s1") == 2
    # Finished subtasks are cached, so a rerun resumes.
    assert cache.get(program, subtasks[0]) is not None and cache.get(program, subtasks[2]) is not None
    assert cache.get(program, bad) is None


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_are_bounded(local: LocalExecutor, wat_program: WatProgram, retries: int) -> None:
    counting = Counting(local)
    with pytest.raises(ExecutionError):
        list(execution.run(counting, wat_program("exit3"), [Subtask(0, "s0", (), (), ("out.txt",))], LIMITS, retries=retries))
    assert len(counting.submitted) == retries + 1


@pytest.mark.parametrize("raises", [False, True])
def test_a_lost_attempt_is_retried(local: LocalExecutor, wat_program: WatProgram, raises: bool) -> None:
    flaky = LosesFirstAttempt(local, raises=raises)
    results = list(execution.run(flaky, wat_program("upper"), [upper(0), upper(1)], LIMITS, retries=1))
    assert [r.outputs for r in results] == [(("out.txt", b"NUMBER 0"),), (("out.txt", b"NUMBER 1"),)]
    assert sorted(flaky.names()) == ["s0", "s0", "s1", "s1"]
    with pytest.raises(ExecutionError, match="provider (left|went away)"):
        list(execution.run(LosesFirstAttempt(local, raises=raises), wat_program("upper"), [upper(0)], LIMITS, retries=0))


def test_task_timeout(local: LocalExecutor, wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=60.0)
    looping = Subtask(1, "s1", (), (), ("out.txt",))
    started = time.monotonic()
    with pytest.raises(ExecutionError) as info:
        list(execution.run(local, wat_program("loop"), [looping], limits, task_timeout=1.0))
    assert time.monotonic() - started < 5
    assert str(info.value).startswith("task timeout of 1 s exceeded; 1 of 1 subtasks failed")
    assert info.value.outcomes[0].reason.startswith("task timeout of 1 s exceeded")


def test_second_run_executes_nothing(local: LocalExecutor, wat_program: WatProgram, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    program = wat_program("upper")
    subtasks = [upper(i) for i in range(4)]
    first = list(execution.run(local, program, subtasks, LIMITS, cache=cache))
    counting = Counting(local)
    sources: list[bool] = []
    second = list(execution.run(counting, program, subtasks, LIMITS, cache=cache, on_result=lambda r, c: sources.append(c)))
    assert counting.submitted == []
    assert sources == [True] * 4
    assert [r.outputs for r in second] == [r.outputs for r in first]


def test_closing_early_cancels_pending_work(local: LocalExecutor, wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=120.0)
    counting = Counting(local)
    run = execution.run(counting, wat_program("sleep"), [sleeper(0, 0), sleeper(1, 60000), sleeper(2, 60000)], limits)
    assert next(run).index == 0
    started = time.monotonic()
    run.close()
    pending = [future for name, future in counting.submitted if name != "s0"]
    assert len(pending) == 2
    for future in pending:
        # Cancelled while running: the worker is killed and the attempt reports it.
        assert future.result(timeout=10).reason == "cancelled"
    assert time.monotonic() - started < 5


class TwoReplicas(execution.SubtaskState):
    """Redundancy 2 through the ``make_state`` hook: one replica on each of two
    pinned providers; final once both agree on the output digest."""

    started = False

    def next_submissions(self) -> list[str | None]:
        if self.started:
            return []
        self.started = True
        return ["local-0", "local-1"]

    def record(self, result: SubtaskResult) -> None:
        self.attempts.append(result)
        if len(self.attempts) == 2:
            a, b = self.attempts
            agree = a.ok and b.ok and a.digest == b.digest
            self.final = a if agree else SubtaskResult(a.index, a.name, ok=False, reason="replicas disagree")


def test_per_subtask_state_is_replaceable(local: LocalExecutor, wat_program: WatProgram) -> None:
    counting = Counting(local)
    results = list(
        execution.run(counting, wat_program("upper"), [upper(0), upper(1)], LIMITS,
                      make_state=lambda st: TwoReplicas(st, max_attempts=2))
    )
    assert [r.outputs for r in results] == [(("out.txt", b"NUMBER 0"),), (("out.txt", b"NUMBER 1"),)]
    providers = sorted(f.result().provider for _, f in counting.submitted)
    assert providers == ["local-0", "local-0", "local-1", "local-1"]
