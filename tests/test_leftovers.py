"""gflite.gwasm.leftovers: a killed run's scratch directories go with the next run,
and nothing else does."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gflite.gwasm import leftovers


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def scratch(root: Path, kind: str, pid: int, tail: str = "abc123") -> Path:
    path = root / f"gwasm-{kind}-{pid}-{tail}"
    path.mkdir()
    (path / "out.wav").write_bytes(b"RIFF" + b"\0" * 4096)
    (path / "sub").mkdir()
    (path / "sub" / "in.txt").write_text("text")
    return path


def test_only_dead_processes_own_directories_are_removed(tmp_path: Path) -> None:
    gone = dead_pid()
    orphans = [scratch(tmp_path, kind, gone, f"x{i}") for i, kind in enumerate(leftovers.KINDS)]
    mine = scratch(tmp_path, "spool", os.getpid())
    parent = scratch(tmp_path, "attempt", os.getppid())  # alive
    unrelated = tmp_path / f"gwasm-{gone}-abc"  # not a name this module makes
    unrelated.mkdir()
    other = tmp_path / f"gflite-spool-{gone}-abc"
    other.mkdir()
    assert sorted(leftovers.sweep(tmp_path)) == sorted(orphans)
    assert not any(p.exists() for p in orphans)
    assert mine.exists() and parent.exists() and unrelated.exists() and other.exists()


def test_a_symlink_or_a_file_under_the_name_is_not_followed(tmp_path: Path) -> None:
    # A crafted name pointing at something precious: never removed through.
    gone = dead_pid()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "book.wav").write_bytes(b"keep")
    link = tmp_path / f"gwasm-spool-{gone}-link"
    link.symlink_to(precious)
    plain = tmp_path / f"gwasm-attempt-{gone}-file"
    plain.write_text("a file, not a directory")
    assert leftovers.sweep(tmp_path) == []
    assert (precious / "book.wav").read_bytes() == b"keep"
    assert link.is_symlink() and plain.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user owns needs root")
def test_another_users_directory_is_left_alone(tmp_path: Path) -> None:
    path = scratch(tmp_path, "spool", dead_pid())
    os.chown(path, 65534, 65534)
    assert leftovers.sweep(tmp_path) == []
    assert path.exists()


def test_names_carry_the_maker_pid() -> None:
    assert leftovers.prefix("spool") == f"gwasm-spool-{os.getpid()}-"
    with pytest.raises(ValueError):
        leftovers.prefix("cache")


def test_a_killed_run_leaves_its_spool_and_the_next_executor_removes_it(tmp_path: Path, wat_program) -> None:  # type: ignore[no-untyped-def]
    # A real run killed with SIGKILL while its executor holds a spool and an
    # attempt directory (a guest that sleeps), then a new executor in another process.
    program = wat_program("sleep")
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    victim = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from gflite.gwasm.executors.local import LocalExecutor
        from gflite.gwasm.subtask import Limits, Program, Subtask
        ex = LocalExecutor(1, files=True)
        ex.submit(Program.from_path({str(program.path)!r}), Subtask(0, "s", ("60000", "late"), (), ("out.txt",)),
                  Limits(subtask_timeout=120))
        print("running", flush=True)
        sys.stdin.read()
        """)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None and victim.stdout.readline() == "running\n"
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob(f"gwasm-attempt-{victim.pid}-*"))) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    left = sorted(p.name.split("-")[1] for p in tmp_path.glob(f"gwasm-*-{victim.pid}-*"))
    assert left == ["attempt", "spool"]
    time.sleep(0.5)  # its worker follows it (PR_SET_PDEATHSIG)
    after = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from gflite.gwasm.executors.local import LocalExecutor
        LocalExecutor(1).close()
        """)], env=env, timeout=120)
    assert after.returncode == 0
    assert list(tmp_path.glob(f"gwasm-*-{victim.pid}-*")) == []
