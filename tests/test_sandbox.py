"""sandbox.run_subtask in this process: the happy path, every hostile guest that
can be contained in-process, and the deterministic engine configuration.

Guests that never stop (infinite loop, output flood) need a process to kill;
they are in test_local.py.
"""
from __future__ import annotations

import dataclasses
import os
import platform

import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gflite.gwasm import guestfs, guestworld, sandbox
from gflite.gwasm.cache import ModuleCache
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask

LIMITS = Limits(memory_bytes=64 << 20, subtask_timeout=2.0, output_bytes=1 << 20, stdio_bytes=4096)
SECRET = b"TOP SECRET host file\n"

WatProgram = Callable[[str], Program]


def subtask(args: tuple[str, ...] = (), inputs: dict[str, bytes] | None = None, outputs=("out.txt",)) -> Subtask:
    return Subtask(index=0, name="s", args=args, inputs=tuple((inputs or {}).items()), outputs=tuple(outputs))


@pytest.fixture
def secret_beside_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A host file at ``<guest's working directory>/../secret.txt``: the guest's
    directory is made under tmp_path, so ``../secret.txt`` names this file."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    return secret


def test_happy_path(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(
        wat_program("upper"), subtask(("in.txt", "out.txt"), {"in.txt": b"hello, world\n"}), LIMITS
    )
    assert result.ok, result.reason
    assert result.outputs == (("out.txt", b"HELLO, WORLD\n"),)
    assert result.exit_code == 0
    assert result.stdout == b"upper: done\n"
    assert result.stderr == b""
    assert result.digest and result.provider == "local"


def test_nested_paths_and_provider(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(
        wat_program("upper"),
        subtask(("data/in.txt", "res/out.txt"), {"data/in.txt": b"abc"}, outputs=("res/out.txt",)),
        LIMITS,
        provider="p7",
    )
    assert result.ok, result.reason
    assert result.outputs == (("res/out.txt", b"ABC"),)
    assert result.provider == "p7"


def test_trap(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(wat_program("trap"), subtask(), LIMITS)
    assert not result.ok
    assert result.reason.startswith("trap: unreachable")
    assert "\n" not in result.reason
    assert result.failure is Failure.GUEST
    assert result.exit_code is None


def test_nonzero_exit(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(wat_program("exit3"), subtask(), LIMITS)
    assert not result.ok
    assert result.reason == "exit code 3"
    assert result.exit_code == 3
    assert result.stderr == b"exit3: giving up\n"


def test_missing_output(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(wat_program("nooutput"), subtask(), LIMITS)
    assert not result.ok
    assert result.reason == "missing output file out.txt"


def test_memory_bomb(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(wat_program("membomb"), subtask(), LIMITS)
    assert not result.ok
    assert result.reason.startswith("memory limit of 64 MiB exceeded"), result.reason
    assert result.failure is Failure.LIMIT


def test_memory_too_small_to_start(wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=1000, subtask_timeout=2.0)
    result = sandbox.run_subtask(wat_program("upper"), subtask(("in.txt", "out.txt"), {"in.txt": b"x"}), limits)
    assert not result.ok
    assert result.reason.startswith("memory limit of 1000 bytes exceeded")


def test_output_limit_after_the_run(wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=2.0, output_bytes=1024)
    big = b"x" * 4096
    result = sandbox.run_subtask(wat_program("upper"), subtask(("in.txt", "out.txt"), {"in.txt": big}), limits)
    assert not result.ok
    assert result.reason == "output limit of 1 KiB exceeded"
    assert result.failure is Failure.LIMIT


def test_stdout_is_captured_up_to_the_limit(wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=2.0, stdio_bytes=5)
    result = sandbox.run_subtask(wat_program("upper"), subtask(("in.txt", "out.txt"), {"in.txt": b"a"}), limits)
    assert result.ok
    assert result.stdout == b"upper"


@pytest.mark.parametrize("path", ["../secret.txt", "../../secret.txt", "./../secret.txt"])
def test_escape_by_dotdot(wat_program: WatProgram, secret_beside_workdir: Path, path: str) -> None:
    result = sandbox.run_subtask(wat_program("escape"), subtask((path,)), LIMITS)
    assert not result.ok
    assert result.reason.startswith("exit code ") and result.exit_code != 0
    assert SECRET not in b"".join(data for _, data in result.outputs)


def test_escape_by_absolute_path(wat_program: WatProgram, secret_beside_workdir: Path) -> None:
    result = sandbox.run_subtask(wat_program("escape"), subtask((str(secret_beside_workdir),)), LIMITS)
    assert not result.ok
    assert result.reason.startswith("exit code ")


def test_reading_inside_is_allowed(wat_program: WatProgram) -> None:
    # The control for the escape tests: the same guest may read its own input.
    result = sandbox.run_subtask(wat_program("escape"), subtask(("in.txt",), {"in.txt": b"mine"}), LIMITS)
    assert result.ok and result.outputs == (("out.txt", b"mine"),)


@pytest.mark.parametrize("target", ["../secret.txt", "ABSOLUTE"])
def test_escape_by_symlink(wat_program: WatProgram, secret_beside_workdir: Path, target: str) -> None:
    target = str(secret_beside_workdir) if target == "ABSOLUTE" else target
    result = sandbox.run_subtask(wat_program("symlink"), subtask((target, "lnk", "open")), LIMITS)
    assert not result.ok
    assert result.reason.startswith("exit code ")
    assert SECRET not in b"".join(data for _, data in result.outputs)


def test_symlink_inside_is_followed_by_the_guest(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(
        wat_program("symlink"), subtask(("in.txt", "lnk", "open"), {"in.txt": b"inside"}), LIMITS
    )
    assert result.ok and result.outputs == (("out.txt", b"inside"),)


def test_output_symlink_is_never_followed_by_the_host(wat_program: WatProgram, secret_beside_workdir: Path) -> None:
    # WASI lets a guest create a dangling-looking link out.txt -> ../secret.txt;
    # collecting out.txt must not read the host file it points at.
    result = sandbox.run_subtask(wat_program("symlink"), subtask(("../secret.txt", "out.txt")), LIMITS)
    assert not result.ok
    assert result.reason == "output file out.txt is a symlink or not a file"
    assert result.outputs == ()


def test_bad_input_path_is_refused(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(wat_program("upper"), subtask(("x",), {"../x": b""}), LIMITS)
    assert not result.ok and result.reason.startswith("bad input:")
    assert result.failure is Failure.BAD_INPUT


def test_not_a_command(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(wat_program("nostart"), subtask(), LIMITS)
    assert not result.ok
    assert result.reason == "program has no _start function (not a WASI command)"


def test_invalid_program(tmp_path: Path) -> None:
    path = tmp_path / "bad.wasm"
    path.write_bytes(b"\0asm\x01\0\0\0garbage")
    result = sandbox.run_subtask(Program.from_path(path), subtask(), LIMITS)
    assert not result.ok
    assert result.reason.startswith("cannot load program:")
    assert "not a valid WebAssembly module" in result.reason


def test_guest_directory_is_removed(wat_program: WatProgram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("upper", "exit3", "symlink"):
        sandbox.run_subtask(wat_program(name), subtask(("in.txt", "out.txt"), {"in.txt": b"x"}), LIMITS)
    assert list(tmp_path.iterdir()) == []


def test_nan_canonicalisation(wat_program: WatProgram) -> None:
    result = sandbox.run_subtask(wat_program("nan"), subtask(outputs=("out.bin",)), LIMITS)
    assert result.ok, result.reason
    assert result.outputs == (("out.bin", struct.pack("<Q", 0x7FF8000000000000)),)


def test_a_program_may_opt_out_of_nan_canonicalisation(wat_program: WatProgram) -> None:
    canonical = wat_program("nan")
    native = dataclasses.replace(canonical, nan_canonicalization=False)
    result = sandbox.run_subtask(native, subtask(outputs=("out.bin",)), LIMITS)
    assert result.ok, result.reason
    if platform.machine() in ("x86_64", "AMD64"):  # x86 keeps the payload; arm64 may not
        assert result.outputs == (("out.bin", struct.pack("<Q", 0x7FF8000000000001)),)
    # The setting changes what a result may be, so it is part of the cache key.
    task = subtask(outputs=("out.bin",))
    assert task.key(canonical) != task.key(native)


def test_second_load_uses_the_module_cache(wat_program: WatProgram, fresh_cache: Path) -> None:
    program = wat_program("upper")
    first = ModuleCache(sandbox.engine(), sandbox.CONFIG_ID, fresh_cache)
    first.load(program)
    assert (first.compiles, first.hits) == (1, 0)
    second = ModuleCache(sandbox.engine(), sandbox.CONFIG_ID, fresh_cache)
    module = second.load(program)
    assert (second.compiles, second.hits) == (0, 1)
    assert "_start" in {e.name for e in module.exports}


def test_check_relpath() -> None:
    assert sandbox.check_relpath("a/b.txt") == "a/b.txt"
    for bad in ("", "/etc/passwd", "../x", "a/../x", "a//b", "./a", "a/", "a\\b", "a\0b"):
        with pytest.raises(ValueError):
            sandbox.check_relpath(bad)


def test_no_host_stdin_and_no_environment(wat_program: WatProgram, tmp_path: Path) -> None:
    # In a child process whose stdin holds data and whose environment is full.
    import os
    import subprocess
    import sys

    script = (
        "import sys; from gflite.gwasm import sandbox; from gflite.gwasm.subtask import *; "
        f"r = sandbox.run_subtask(Program.from_path({str(wat_program('isolation').path)!r}), "
        "Subtask(0, 's', (), (), ()), Limits()); print(repr((r.ok, r.exit_code, r.stdout)))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=root, SECRET_TOKEN="hunter2")
    proc = subprocess.run(
        [sys.executable, "-c", script], input=b"HOST STDIN\n", capture_output=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "(True, 0, b'')"


# --- the whole guest is bounded -------------------------------------------------


@pytest.mark.parametrize("guest", ["multimem", "tables"])
def test_one_memory_one_table(wat_program: WatProgram, guest: str) -> None:
    # Store limits count per memory and per table: four memories or 100 tables
    # would each get the whole limit. Refused before the guest starts.
    result = sandbox.run_subtask(wat_program(guest), subtask(outputs=()), Limits(memory_bytes=256 << 20))
    assert not result.ok
    assert result.failure in (Failure.GUEST, Failure.LIMIT)
    assert result.reason.startswith(("cannot load program", "a guest may have one instance")), result.reason


def test_gc_and_multi_memory_are_off() -> None:
    import wasmtime

    for wat in ("(module (memory 1) (memory 1))", "(module (type (struct)))", "(module (memory i64 1))"):
        with pytest.raises(wasmtime.WasmtimeError):
            wasmtime.Module(sandbox.engine(), wasmtime.wat2wasm(wat))
    assert "no-multi-memory" in sandbox.CONFIG_ID and "no-gc" in sandbox.CONFIG_ID


def test_a_module_over_the_size_cap_is_never_compiled(
    wat_program: WatProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = wat_program("upper")
    monkeypatch.setattr(sandbox, "MAX_WASM_BYTES", program.path.stat().st_size - 1)
    result = sandbox.run_subtask(program, subtask(("in.txt", "out.txt"), {"in.txt": b"x"}), LIMITS)
    assert not result.ok and result.failure is Failure.LIMIT
    assert "module size limit" in result.reason


# --- the output cap counts what the disk pays for ---------------------------------


def test_output_cap_counts_bytes_past_path_max(wat_program: WatProgram) -> None:
    # 1.5 MiB in two files below a 10 KB path. (A guest that floods the disk
    # with directories needs a process to kill: see test_local.py.)
    result = sandbox.run_subtask(wat_program("deepbytes"), subtask(outputs=()), LIMITS)
    assert not result.ok and result.failure is Failure.LIMIT
    assert result.reason == "output limit of 1 MiB exceeded"


def _deep_tree(root: Path, depth: int, name: str = "d", payload: bytes = b"") -> None:
    """``depth`` nested directories under ``root``, made through directory fds
    (so the path may grow past PATH_MAX), with ``payload`` in a file at the bottom."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir(name, dir_fd=fd)
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = sub
    if payload:
        out = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, payload)
        os.close(out)
    os.close(fd)


def test_usage_counts_past_path_max(tmp_path: Path) -> None:
    _deep_tree(tmp_path, 30, "n" * 200, b"x" * 100_000)  # a 6 KB path to the file
    found = guestfs.usage(tmp_path)
    assert (found.depth, found.entries) == (31, 31)
    assert found.bytes >= 100_000


def test_remove_tree_is_not_recursive(tmp_path: Path) -> None:
    # shutil.rmtree recurses on Python < 3.12 and raises RecursionError here.
    top = tmp_path / "top"
    top.mkdir()
    _deep_tree(top, 1200, payload=b"bottom")
    sandbox.remove_tree(top)
    assert not top.exists()


# --- determinism: virtual clock and random -----------------------------------------


def test_clock_and_random_are_virtual(wat_program: WatProgram) -> None:
    runs = [sandbox.run_subtask(wat_program("clock"), subtask(outputs=()), LIMITS) for _ in range(2)]
    assert all(r.ok for r in runs), [r.reason for r in runs]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout) == 104
    realtime = int.from_bytes(runs[0].stdout[:8], "little")
    assert realtime == guestworld.EPOCH_NS + guestworld.TICK_NS
    assert runs[0].stdout[40:] != bytes(64)


def test_remove_tree_handles_wide_and_locked_directories(tmp_path: Path) -> None:
    # (Run as root, the read-only directory is no obstacle; as a user it is.)
    top = tmp_path / "top"
    (top / "wide").mkdir(parents=True)
    for i in range(300):
        (top / "wide" / f"f{i}").write_bytes(b"x")
    (top / "locked" / "inner").mkdir(parents=True)
    (top / "locked" / "inner" / "file").write_bytes(b"y")
    os.chmod(top / "locked" / "inner", 0o500)
    (top / "link").symlink_to("/etc")
    sandbox.remove_tree(top)
    assert not top.exists()
    assert os.path.isdir("/etc")
