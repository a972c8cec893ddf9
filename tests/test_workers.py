"""gflite.gwasm.workers: worker processes forked ahead of need (the spare),
told to load a program before any job, and the fork-safety check."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult
from gflite.gwasm.workers import fork_is_safe

WatProgram = Callable[[str], Program]
LIMITS = Limits(memory_bytes=64 << 20, subtask_timeout=1.0, output_bytes=1 << 20, stdio_bytes=4096)
ROOT = str(Path(__file__).resolve().parent.parent)


def upper_subtask(i: int) -> Subtask:
    return Subtask(index=i, name=f"s{i}", args=("in.txt", "out.txt"), inputs=(("in.txt", b"text\n"),),
                   outputs=("out.txt",))


def test_a_prestarted_worker_is_adopted_once_and_otherwise_killed(wat_program: WatProgram) -> None:
    # In a fresh interpreter (forking is safe there): the first executor runs its
    # first attempt in the prestarted worker; a spare forked before the
    # environment changed is not used; discard_spare reaps an unused one; a
    # spare that died is replaced by a new worker.
    script = textwrap.dedent(
        f"""
        import os, time
        from gflite.gwasm import workers
        from gflite.gwasm.executors import local
        from gflite.gwasm.subtask import Limits, Program, Subtask
        program = Program.from_path({str(wat_program("upper").path)!r})
        st = Subtask(0, "s", ("in.txt", "out.txt"), (("in.txt", b"warm"),), ("out.txt",))

        def run():
            with local.LocalExecutor(1) as ex:
                result = ex.submit(program, st, Limits(subtask_timeout=30)).result(timeout=60)
                return result.outputs, ex._slots[0].worker.pid, ex.spawned, ex.start_methods

        def settle():
            # A joined thread may linger in /proc a moment, and prestart forks only without one.
            deadline = time.monotonic() + 10
            while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
                time.sleep(0.01)

        def gone(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        workers.prestart()
        spare = workers._spare[0].pid
        outputs, pid, spawned, methods = run()
        print(outputs, pid == spare, spawned, methods, workers._spare)
        settle()
        workers.prestart()
        spare = workers._spare[0].pid
        os.environ["GFLITE_TEST_CHANGED"] = "1"
        outputs, pid, spawned, methods = run()
        print(outputs, pid == spare, gone(spare), spawned, methods)
        settle()
        workers.prestart()
        spare = workers._spare[0].pid
        workers.discard_spare()
        print(gone(spare), workers._spare)
        settle()
        workers.prestart()
        spare = workers._spare[0].pid
        os.kill(spare, 9)  # a spare that died before it was needed
        time.sleep(0.2)
        outputs, pid, spawned, methods = run()
        print(outputs, pid == spare, gone(spare), spawned, methods)
        """
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "(('out.txt', b'WARM'),) True 1 ['fork'] None",
        "(('out.txt', b'WARM'),) False True 1 ['fork']",
        "True None",
        "(('out.txt', b'WARM'),) False True 1 ['fork']",
    ]


def test_fork_safety_check_sees_native_threads(wat_program: WatProgram) -> None:
    # After an in-process WASI run, wasmtime's runtime threads exist; forking then
    # could deadlock the child, so the check must say no.
    from gflite.gwasm import sandbox

    result: SubtaskResult = sandbox.run_subtask(wat_program("upper"), upper_subtask(0), LIMITS)
    assert result.ok
    assert len(os.listdir("/proc/self/task")) > 1
    assert not fork_is_safe()


def test_a_preloaded_spare_has_the_module_mapped_before_its_first_job(wat_program: WatProgram) -> None:
    # The spare maps the compiled module (deserialize_file mmaps the .cwasm) on the
    # "load" message alone; then the first attempt runs in that same process.
    from gflite.gwasm import sandbox

    program = wat_program("upper")
    sandbox.load_module(program)  # compiled and stored: what a worker maps is the stored file
    script = textwrap.dedent(
        f"""
        import time
        from gflite.gwasm import workers
        from gflite.gwasm.executors.local import LocalExecutor
        from gflite.gwasm.subtask import Limits, Program, Subtask
        program = Program.from_path({str(program.path)!r})
        workers.prestart()
        pid = workers._spare[0].pid
        workers.preload(program)
        deadline = time.monotonic() + 60
        def mapped():
            with open(f"/proc/{{pid}}/maps") as f:
                return [line.split()[-1] for line in f if line.rstrip().endswith(".cwasm")]
        while not mapped() and time.monotonic() < deadline:
            time.sleep(0.01)
        print(len(mapped()) > 0)
        st = Subtask(0, "s", ("in.txt", "out.txt"), (("in.txt", b"early"),), ("out.txt",))
        with LocalExecutor(1) as ex:
            result = ex.submit(program, st, Limits(subtask_timeout=30)).result(timeout=60)
            print(result.outputs, ex._slots[0].worker.pid == pid, ex.spawned)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "(('out.txt', b'EARLY'),) True 1"]


def test_preload_without_a_spare_does_nothing(wat_program: WatProgram) -> None:
    from gflite.gwasm import workers

    assert workers._spare is None
    workers.preload(wat_program("upper"))
    assert workers._spare is None
