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

from gflite.gwasm.executors.local import LocalExecutor
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask

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


# --- hostile guests against the whole worker process --------------------------


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def huge_module(functions: int) -> bytes:
    """A valid module of ``functions`` tiny functions (12 bytes each): cheap to
    send, gigabytes for wasmtime to compile."""

    def section(ident: int, payload: bytes) -> bytes:
        return bytes([ident]) + _leb(len(payload)) + payload

    body = b"\x00" + b"\x41\x00\x1a" * 3 + b"\x0b"  # no locals; (drop (i32.const 0)) x3
    return (
        b"\0asm\x01\0\0\0"
        + section(1, b"\x01\x60\x00\x00")
        + section(3, _leb(functions) + b"\x00" * functions)
        + section(7, b"\x01" + _leb(6) + b"_start" + b"\x00\x00")
        + section(10, _leb(functions) + (_leb(len(body)) + body) * functions)
    )


def run_isolated(wasm: Path, limits: Limits, text: bytes = b"honest\n", prestart: bool = False) -> dict:
    """Run ``wasm`` in a LocalExecutor of a fresh interpreter, then an honest
    guest in the same executor; report both results and the largest resident
    size any worker process reached (ru_maxrss of the reaped children).
    ``prestart``: in a worker :func:`workers.prestart` forked before the executor."""
    script = textwrap.dedent(
        f"""
        import json, resource, tempfile
        from pathlib import Path
        import wasmtime
        from gflite.gwasm import workers
        from gflite.gwasm.executors.local import LocalExecutor
        from gflite.gwasm.subtask import Limits, Program, Subtask
        if {prestart!r}:
            workers.prestart()
            assert workers._spare is not None
        upper = Path(tempfile.mkdtemp()) / "upper.wasm"
        upper.write_bytes(wasmtime.wat2wasm({(Path(__file__).parent / "wat" / "upper.wat").read_text()!r}))
        limits = Limits(**{limits.__dict__!r})
        with LocalExecutor(1) as ex:
            hostile = ex.submit(Program.from_path({str(wasm)!r}), Subtask(0, "h", (), (), ()), limits).result(300)
            assert workers._spare is None  # adopted (or never made)
            honest = ex.submit(Program.from_path(upper), Subtask(1, "u", ("in.txt", "out.txt"),
                               (("in.txt", {text!r}),), ("out.txt",)), limits).result(300)
        print(json.dumps({{"ok": hostile.ok, "reason": hostile.reason,
                          "failure": hostile.failure and hostile.failure.name,
                          "honest": [honest.ok, honest.outputs[0][1].decode() if honest.ok else honest.reason],
                          "peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}}))
        """
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    import json

    return json.loads(proc.stdout)


# A worker holding wasmtime and a compiled guest, before the guest's own memory.
RSS_MARGIN = 256 << 20


@pytest.mark.parametrize("guest, prestart", [("multimem", False), ("tables", False), ("multimem", True)])
def test_guest_memory_is_bounded_as_a_whole(wat_program: WatProgram, guest: str, prestart: bool) -> None:
    # Four 256 MiB memories, or 100 tables of 8 MB, against a 256 MiB limit
    # meant for the whole guest: refused, and the worker stays near the limit
    # (a prestarted worker, which imported wasmtime before its first attempt, too).
    limits = Limits(memory_bytes=256 << 20, subtask_timeout=60.0)
    report = run_isolated(wat_program(guest).path, limits, prestart=prestart)
    assert not report["ok"], report
    assert report["failure"] in ("GUEST", "LIMIT")
    assert report["peak_rss"] < limits.memory_bytes + RSS_MARGIN, report
    assert report["honest"] == [True, "HONEST\n"]


@pytest.mark.slow
def test_compiling_a_huge_module_is_capped(tmp_path: Path) -> None:
    # 400,000 functions, 5 MB: about 2 GB and a minute to compile with no cap.
    wasm = tmp_path / "huge.wasm"
    wasm.write_bytes(huge_module(400_000))
    report = run_isolated(wasm, Limits(memory_bytes=64 << 20, subtask_timeout=60.0))
    assert not report["ok"] and report["failure"] == "LIMIT", report
    from gflite.gwasm import sandbox

    assert report["peak_rss"] < sandbox.COMPILE_HEADROOM + RSS_MARGIN, report
    assert report["honest"] == [True, "HONEST\n"]


def test_a_deep_tree_cannot_kill_the_dispatcher(
    wat_program: WatProgram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3,000 levels: shutil.rmtree raised RecursionError in the dispatcher thread,
    # which died; no later attempt finished and no timeout fired.
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=5.0, output_depth=10_000)
    with LocalExecutor(2) as ex:
        deep = ex.submit(wat_program("deeptree"), Subtask(0, "deep", (), (), ()), limits)
        honest = [ex.submit(wat_program("upper"), upper_subtask(i), limits) for i in range(4)]
        looping = ex.submit(wat_program("loop"), bare("loop"), limits)
        result = deep.result(timeout=60)
        assert [f.result(timeout=60).ok for f in honest] == [True] * 4
        assert looping.result(timeout=60).failure is Failure.TIMEOUT
    # Finished, ran out of time or was stopped by a limit: but ended, and removed.
    assert result.ok or result.failure in (Failure.TIMEOUT, Failure.LIMIT), result
    assert list(tmp_path.iterdir()) == []


def test_deep_tree_is_over_the_depth_limit(executor: LocalExecutor, wat_program: WatProgram) -> None:
    result = executor.submit(wat_program("deeptree"), bare("deep"), LIMITS).result(timeout=60)
    assert not result.ok and result.failure is Failure.LIMIT
    assert result.reason == "output limit of 64 directory levels exceeded"


@pytest.mark.parametrize(
    ("guest", "reason"),
    [
        # 20,000 directories: no file bytes, 80 MB of disk.
        ("manydirs", "output limit of 1 MiB exceeded"),
        # 1.5 MiB in two files below a 10 KB path, where a count by path cannot reach.
        ("deepbytes", "output limit of 1 MiB exceeded"),
    ],
)
def test_output_cap_counts_what_the_disk_pays(
    executor: LocalExecutor, wat_program: WatProgram, guest: str, reason: str
) -> None:
    result = executor.submit(wat_program(guest), Subtask(0, guest, (), (), ()), LIMITS).result(timeout=60)
    assert not result.ok and result.failure is Failure.LIMIT
    assert result.reason == reason


def test_output_cap_counts_entries(executor: LocalExecutor, wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=30.0, output_bytes=1 << 30, output_entries=500)
    result = executor.submit(wat_program("manydirs"), Subtask(0, "m", (), (), ()), limits).result(timeout=60)
    assert result.reason == "output limit of 500 files and directories exceeded"


def test_bookkeeping_error_fails_only_its_attempt(
    executor: LocalExecutor, wat_program: WatProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gflite.gwasm import sandbox

    real = sandbox.materialise

    def materialise(subtask: Subtask, workdir: Path) -> None:
        if subtask.name == "boom":
            raise RuntimeError("a bug in the bookkeeping")
        real(subtask, workdir)

    monkeypatch.setattr(sandbox, "materialise", materialise)
    boom = executor.submit(wat_program("upper"), Subtask(9, "boom", (), (), ("out.txt",)), LIMITS)
    fine = [executor.submit(wat_program("upper"), upper_subtask(i), LIMITS) for i in range(3)]
    result = boom.result(timeout=60)
    assert not result.ok and result.failure is Failure.LOST
    assert result.reason == "executor error: RuntimeError: a bug in the bookkeeping"
    assert all(f.result(timeout=60).ok for f in fine)
    assert executor.submit(wat_program("loop"), bare("loop"), LIMITS).result(timeout=60).failure is Failure.TIMEOUT


def test_a_slot_that_cannot_clean_up_retires(wat_program: WatProgram, monkeypatch: pytest.MonkeyPatch) -> None:
    from gflite.gwasm import guestfs

    real = guestfs.remove_tree
    failed: list[Path] = []

    def remove_tree(path: Path) -> None:
        if not failed:
            failed.append(Path(path))
            raise PermissionError(13, "Permission denied", str(path))
        real(path)

    monkeypatch.setattr(guestfs, "remove_tree", remove_tree)
    with LocalExecutor(2) as ex:
        first = ex.submit(wat_program("upper"), upper_subtask(0), LIMITS, provider="local-0").result(timeout=60)
        assert not first.ok and first.failure is Failure.LOST
        assert first.reason.startswith("provider local-0 cannot clean up after this attempt and takes no more work")
        assert [p.id for p in ex.providers()] == ["local-1"]
        assert list(ex.retired) == ["local-0"]
        # Pinned to the retired slot: fails at once; anything else runs on the other.
        pinned = ex.submit(wat_program("upper"), upper_subtask(1), LIMITS, provider="local-0").result(timeout=60)
        assert pinned.failure is Failure.LOST
        later = ex.submit(wat_program("upper"), upper_subtask(2), LIMITS).result(timeout=60)
        assert later.ok and later.provider == "local-1"
    real(failed[0])


def test_clock_and_random_are_the_same_in_every_process(wat_program: WatProgram) -> None:
    from gflite.gwasm import guestworld

    clock = Subtask(0, "clock", (), (), ())
    answers = set()
    for _ in range(3):  # three fresh worker processes, started apart in time
        with LocalExecutor(1, start_method="exec") as ex:
            result = ex.submit(wat_program("clock"), clock, LIMITS).result(timeout=60)
        assert result.ok, result.reason
        answers.add(result.stdout)
        time.sleep(0.05)
    assert len(answers) == 1
    (out,) = answers
    times = [int.from_bytes(out[i : i + 8], "little") for i in range(0, 40, 8)]
    tick = guestworld.TICK_NS
    assert times == [guestworld.EPOCH_NS + tick, 2 * tick, guestworld.EPOCH_NS + 3 * tick, 4 * tick, tick]
    # Seeded by the subtask's key: another subtask draws other random bytes.
    other = Subtask(1, "clock", ("other",), (), ())
    with LocalExecutor(1) as ex:
        assert ex.submit(wat_program("clock"), other, LIMITS).result(timeout=60).stdout[40:] != out[40:]


def test_warm_starts_every_worker_loaded_before_the_first_attempt(wat_program: WatProgram) -> None:
    """warm() forks every slot's worker at once and has it load the program; the
    attempts then run in those workers (none is started later), and a warm
    after the first submit does nothing."""
    program = wat_program("upper")
    with LocalExecutor(2) as ex:
        ex.warm(program)
        assert ex.spawned == 2  # both now, not when the attempts come
        futures = [ex.submit(program, upper_subtask(i), LIMITS) for i in range(4)]
        assert all(f.result(timeout=60).ok for f in futures)
        ex.warm(program)
        assert ex.spawned == 2


def test_a_program_that_fails_to_load_while_warming_fails_its_first_attempt(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\1\0\0\0garbage")
    import hashlib

    program = Program(path=str(bad), sha256=hashlib.sha256(bad.read_bytes()).hexdigest())
    with LocalExecutor(1) as ex:
        ex.warm(program)
        result = ex.submit(program, upper_subtask(0), LIMITS).result(timeout=60)
    assert not result.ok and "valid WebAssembly" in result.reason
