"""LocalExecutor: worker processes that run guests, and are killed when a guest
loops, floods its disk or the attempt is cancelled; the host carries on."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gflite.gwasm.executors.local import LocalExecutor, _fork_is_safe
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult

WatProgram = Callable[[str], Program]
LIMITS = Limits(memory_bytes=64 << 20, subtask_timeout=1.0, output_bytes=1 << 20, stdio_bytes=4096)


def upper_subtask(i: int, text: bytes | None = None) -> Subtask:
    return Subtask(
        index=i,
        name=f"s{i}",
        args=("in.txt", "out.txt"),
        inputs=(("in.txt", text if text is not None else b"text number %d\n" % i),),
        outputs=("out.txt",),
    )


def bare(name: str, args: tuple[str, ...] = ()) -> Subtask:
    return Subtask(index=0, name=name, args=args, inputs=(), outputs=("out.txt",))


@pytest.fixture
def executor() -> Iterator[LocalExecutor]:
    with LocalExecutor(2) as ex:
        yield ex


def test_runs_subtasks(executor: LocalExecutor, wat_program: WatProgram) -> None:
    futures = [executor.submit(wat_program("upper"), upper_subtask(i), LIMITS) for i in range(5)]
    results = [f.result(timeout=60) for f in futures]
    assert [r.outputs for r in results] == [(("out.txt", b"TEXT NUMBER %d\n" % i),) for i in range(5)]
    assert all(r.ok and r.stdout == b"upper: done\n" for r in results)
    assert {r.provider for r in results} <= {"local-0", "local-1"}
    assert executor.providers()[1].id == "local-1"


@pytest.mark.parametrize(
    ("guest", "reason"),
    [
        ("loop", "timeout: subtask time limit of 1 s exceeded"),
        ("flood", "output limit of 1 MiB exceeded"),
        ("membomb", "memory limit of 64 MiB exceeded"),
        ("trap", "trap: unreachable"),
        ("exit3", "exit code 3"),
        ("nooutput", "missing output file out.txt"),
    ],
)
def test_hostile_guest_fails_alone(executor: LocalExecutor, wat_program: WatProgram, guest: str, reason: str) -> None:
    hostile = executor.submit(wat_program(guest), bare(guest), LIMITS)
    fine = executor.submit(wat_program("upper"), upper_subtask(1), LIMITS)
    started = time.monotonic()
    result = hostile.result(timeout=60)
    assert not result.ok
    assert result.reason.startswith(reason), result.reason
    assert time.monotonic() - started < 10
    # The host and the other subtask carry on; the executor still takes work.
    assert fine.result(timeout=60).ok
    assert executor.submit(wat_program("upper"), upper_subtask(2), LIMITS).result(timeout=60).ok


def test_flood_is_stopped_near_the_limit(executor: LocalExecutor, wat_program: WatProgram, tmp_path: Path) -> None:
    # The guest writes 64 KiB blocks forever; RLIMIT_FSIZE caps the file and
    # the dispatcher kills the worker, so the disk never sees much more.
    result = executor.submit(wat_program("flood"), bare("flood"), LIMITS).result(timeout=60)
    assert result.reason == "output limit of 1 MiB exceeded"
    assert result.seconds < 5


def test_one_and_many_workers_give_identical_outputs(wat_program: WatProgram) -> None:
    subtasks = [upper_subtask(i, bytes(range(i, 256)) * 3) for i in range(6)]
    outputs = []
    for workers in (1, 3):
        with LocalExecutor(workers) as ex:
            futures = [ex.submit(wat_program("upper"), st, LIMITS) for st in subtasks]
            outputs.append([(f.result(timeout=60).outputs, f.result().digest) for f in futures])
    assert outputs[0] == outputs[1]


def test_workers_start_lazily(wat_program: WatProgram) -> None:
    with LocalExecutor(4) as ex:
        assert ex.spawned == 0
        assert ex.submit(wat_program("upper"), upper_subtask(0), LIMITS).result(timeout=60).ok
        assert ex.spawned == 1
        assert ex.submit(wat_program("upper"), upper_subtask(1), LIMITS).result(timeout=60).ok
        assert ex.spawned == 1  # the warm worker is reused


def test_pinned_provider(executor: LocalExecutor, wat_program: WatProgram) -> None:
    result = executor.submit(wat_program("upper"), upper_subtask(0), LIMITS, provider="local-1").result(timeout=60)
    assert result.ok and result.provider == "local-1"
    with pytest.raises(ValueError, match="unknown provider"):
        executor.submit(wat_program("upper"), upper_subtask(0), LIMITS, provider="local-9")


def test_cancel_kills_a_running_attempt(executor: LocalExecutor, wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=60.0)
    future = executor.submit(wat_program("loop"), bare("loop"), limits)
    time.sleep(0.3)
    started = time.monotonic()
    future.cancel()
    result = future.result(timeout=10)
    assert result.reason == "cancelled"
    assert time.monotonic() - started < 5


def test_cancel_a_queued_attempt(wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=60.0)
    with LocalExecutor(1) as ex:
        running = ex.submit(wat_program("loop"), bare("loop"), limits)
        queued = ex.submit(wat_program("upper"), upper_subtask(0), LIMITS)
        assert queued.cancel()
        running.cancel()
        assert queued.cancelled()


def test_worker_death_is_a_failed_attempt(executor: LocalExecutor, wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=60.0)
    future = executor.submit(wat_program("loop"), bare("loop"), limits)
    deadline = time.monotonic() + 30
    # Once the guest runs (a death while loading is blamed on the program).
    while not any(s.worker is not None and s.attempt is not None and not s.attempt.loading for s in executor._slots):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (pid,) = [s.worker.pid for s in executor._slots if s.worker is not None and s.attempt is not None]
    os.kill(pid, signal.SIGKILL)
    result = future.result(timeout=10)
    assert result.reason == "worker process died unexpectedly"
    assert result.failure is Failure.LOST
    assert executor.submit(wat_program("upper"), upper_subtask(0), LIMITS).result(timeout=60).ok


def test_close_kills_workers_and_cleans_up(wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=60.0)
    ex = LocalExecutor(2)
    looping = ex.submit(wat_program("loop"), bare("loop"), limits)
    assert ex.submit(wat_program("upper"), upper_subtask(0), LIMITS).result(timeout=60).ok
    pids = [s.worker.pid for s in ex._slots if s.worker is not None]
    workdirs = [s.attempt.workdir for s in ex._slots if s.attempt is not None]
    started = time.monotonic()
    ex.close()
    assert time.monotonic() - started < 5
    assert looping.result(timeout=1).reason.startswith("cancelled")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert len(workdirs) == 1 and workdirs[0] is not None and not workdirs[0].exists()
    with pytest.raises(RuntimeError):
        ex.submit(wat_program("upper"), upper_subtask(0), LIMITS)


def test_attempt_directories_are_removed(wat_program: WatProgram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with LocalExecutor(2) as ex:
        for name in ("upper", "flood", "symlink", "loop"):
            ex.submit(wat_program(name), upper_subtask(0), LIMITS).result(timeout=60)
        assert list(tmp_path.iterdir()) == []


def test_fresh_interpreter_workers(wat_program: WatProgram) -> None:
    with LocalExecutor(1, start_method="exec") as ex:
        result = ex.submit(wat_program("upper"), upper_subtask(0), LIMITS).result(timeout=60)
        assert result.ok and ex.start_methods == ["exec"]
        assert ex.submit(wat_program("loop"), bare("loop"), LIMITS).result(timeout=60).reason.startswith("timeout")


def test_forks_workers_when_the_parent_has_no_other_threads(wat_program: WatProgram, tmp_path: Path) -> None:
    # In a fresh interpreter nothing but our dispatcher runs, so workers are forked
    # (fast); this pytest process may hold wasmtime's I/O threads, so it is checked apart.
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from gflite.gwasm.executors.local import LocalExecutor
        from gflite.gwasm.subtask import Limits, Program, Subtask
        program = Program.from_path({str(wat_program("upper").path)!r})
        st = Subtask(0, "s", ("in.txt", "out.txt"), (("in.txt", b"forked"),), ("out.txt",))
        with LocalExecutor(2) as ex:
            futures = [ex.submit(program, st, Limits(subtask_timeout=30)) for _ in range(2)]
            outs = [f.result(timeout=60).outputs for f in futures]
            print(ex.start_methods, outs)
        """
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['fork', 'fork'] [(('out.txt', b'FORKED'),), (('out.txt', b'FORKED'),)]"


def test_fork_safety_check_sees_native_threads(wat_program: WatProgram) -> None:
    # After an in-process WASI run, wasmtime's runtime threads exist; forking then
    # could deadlock the child, so the check must say no.
    from gflite.gwasm import sandbox

    result: SubtaskResult = sandbox.run_subtask(wat_program("upper"), upper_subtask(0), LIMITS)
    assert result.ok
    assert len(os.listdir("/proc/self/task")) > 1
    assert not _fork_is_safe()
