"""The dispatcher takes subtasks as they are made (an iterator), not only a whole list."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from gflite.gwasm import execution
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.executors.local import LocalExecutor
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult


class Recording(Executor):
    """This machine's workers, writing down when each attempt is submitted."""

    on_this_machine = True

    def __init__(self, log: list[str]) -> None:
        self.inner = LocalExecutor(1)
        self.log = log

    def providers(self) -> tuple[Provider, ...]:
        return self.inner.providers()

    def submit(self, program: Program, subtask: Subtask, limits: Limits,
               provider: str | None = None) -> Future[SubtaskResult]:
        self.log.append(f"submit {subtask.index}")
        return self.inner.submit(program, subtask, limits, provider)

    def close(self) -> None:
        self.inner.close()


def made(log: list[str], n: int) -> Iterator[Subtask]:
    for i in range(n):
        log.append(f"made {i}")
        yield Subtask(index=i, name=f"s{i}", args=("in.txt", "out.txt"),
                      inputs=(("in.txt", b"number %d" % i),), outputs=("out.txt",))


def test_the_first_subtask_starts_before_the_last_is_made(wat_program) -> None:  # type: ignore[no-untyped-def]
    program = wat_program("upper")
    log: list[str] = []
    with Recording(log) as ex:
        results = list(execution.run(ex, program, made(log, 30), execution.RunTerms()))
    assert [r.outputs[0][1] for r in results] == [b"NUMBER %d" % i for i in range(30)]
    assert log.index("submit 0") < log.index("made 29"), log
    # Drawn as work is needed, not all at once: a few ahead of the workers.
    assert log.index("submit 0") < log.index("made 10"), log


def test_a_cached_iterator_is_handed_out_as_it_is_drawn(wat_program, tmp_path) -> None:  # type: ignore[no-untyped-def]
    program = wat_program("upper")
    cache = ResultCache(tmp_path / "cache")
    with LocalExecutor(1) as ex:
        list(execution.run(ex, program, made([], 12), execution.RunTerms(), cache=cache))
    log: list[str] = []
    with Recording(log) as ex:
        runs = execution.run(ex, program, made(log, 12), execution.RunTerms(), cache=cache)
        first = next(runs)
        assert first.outputs[0][1] == b"NUMBER 0" and log == ["made 0"]
        assert len(list(runs)) == 11
    assert not any(e.startswith("submit") for e in log)


def test_an_iterator_out_of_order_is_refused(wat_program) -> None:  # type: ignore[no-untyped-def]
    program = wat_program("upper")

    def backwards() -> Iterator[Subtask]:
        for i in (1, 0):
            yield Subtask(index=i, name=f"s{i}", args=("in.txt", "out.txt"), inputs=(("in.txt", b"x"),),
                          outputs=("out.txt",))

    with LocalExecutor(1) as ex, pytest.raises(ValueError, match="rising"):
        list(execution.run(ex, program, backwards(), execution.RunTerms()))
