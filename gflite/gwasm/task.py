"""Bare tasks in the original gWASM format: load a task.json, write its outputs.

::

    {"type": "wasm", "name": "test", "bid": 1,
     "subtask_timeout": "00:10:00", "timeout": "00:10:00",
     "options": {"js_name": "test.js", "wasm_name": "test.wasm",
       "input_dir": "/home/user/test_in", "output_dir": "/home/user/test_out",
       "subtasks": {"subtask1": {"exec_args": ["arg1", "arg2"], "output_file_paths": ["out.txt"]}}}}

``input_dir`` holds the program and one folder per subtask; a subtask's folder
is its guest's working directory (copied, so the guest never touches it).
Outputs go to ``output_dir/<subtask>/``. ``js_name`` (the original's Emscripten
loader) is accepted and ignored. Relative paths are relative to the task file.

A subtask's folder is shipped to providers, so it is read as a hostile party
may have laid it out: every entry opened relative to its directory's fd with
O_NOFOLLOW and checked with fstat against what the listing showed (no
check-then-open race), and anything but plain directories and regular files
with one name refused: no symlinks, no hard links (a second name of, say,
/etc/shadow), no FIFOs, sockets or devices. Outputs are written the same way,
never through a symlink below ``output_dir``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gflite.errors import OutputError, TaskFileError
from gflite.gwasm.sandbox import MAX_WASM_BYTES, check_relpath, format_bytes
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult

_DURATION = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")
_WASM_MAGIC = b"\0asm\x01\0\0\0"

# What a task folder may hold. The task file is read whole; a subtask's inputs
# are held in memory and shipped to providers.
MAX_TASK_FILE_BYTES = 16 << 20
MAX_SUBTASK_INPUT_BYTES = 1 << 30
MAX_INPUT_DEPTH = 64

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: a FIFO swapped in after the listing must not hang the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    bid: float
    timeout: float  # seconds, the whole task
    subtask_timeout: float  # seconds, each attempt of a subtask
    program: Program
    input_dir: Path
    output_dir: Path
    subtasks: tuple[Subtask, ...]  # natural order of their names; index = position
    limits: Limits


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key putting ``subtask2`` before ``subtask10``."""
    parts = re.split(r"(\d+)", name)
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name)


def parse_duration(value: object, field: str) -> float:
    """``"HH:MM:SS"`` to seconds (hours may exceed 23); must be positive."""
    if not isinstance(value, str) or not (m := _DURATION.match(value.strip())):
        raise _Bad(field, f'must be a duration "HH:MM:SS", got {value!r}')
    seconds = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    if seconds <= 0:
        raise _Bad(field, "must be longer than 00:00:00")
    return float(seconds)


class _Bad(Exception):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")


def _require(obj: dict[str, Any], key: str, prefix: str = "") -> Any:
    if key not in obj:
        raise _Bad(prefix + key, "missing")
    return obj[key]


def _string(obj: dict[str, Any], key: str, prefix: str = "") -> str:
    value = _require(obj, key, prefix)
    if not isinstance(value, str) or not value.strip():
        raise _Bad(prefix + key, f"must be a non-empty string, got {value!r}")
    return value


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(field, f"must be a JSON object, got {type(value).__name__}")
    return value


def _relpath(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad(field, f"must be a non-empty string, got {value!r}")
    try:
        return check_relpath(value)
    except ValueError:
        raise _Bad(field, f"{value!r} must be a relative path inside the subtask's folder") from None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _read_inputs(input_dir: Path, sub_name: str, field: str) -> tuple[tuple[str, bytes], ...]:
    """Every file under ``input_dir/sub_name``, as (relative posix path, bytes), sorted."""
    folder = input_dir / sub_name
    try:
        parent = os.open(input_dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _Bad("options.input_dir", f"cannot open {input_dir}: {exc.strerror}") from None
    try:
        top = os.open(sub_name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _Bad(field, f"input folder {folder} is a symlink or not a folder") from None
        raise _Bad(field, f"input folder {folder} not found") from None
    finally:
        os.close(parent)
    inputs: list[tuple[str, bytes]] = []
    total = 0
    stack = [(top, "", 1)]
    try:
        while stack:
            fd, prefix, depth = stack[-1]
            stack.pop()
            try:
                for name in sorted(_listdir(fd, prefix, field)):
                    rel = prefix + name
                    entry = _open_entry(fd, name, rel, field)
                    try:
                        st = os.fstat(entry)
                        if stat.S_ISDIR(st.st_mode):
                            if depth >= MAX_INPUT_DEPTH:
                                raise _Bad(field, f"input {rel} is more than {MAX_INPUT_DEPTH} folders deep")
                            stack.append((entry, rel + "/", depth + 1))
                            entry = -1  # the stack owns it now
                            continue
                        total += st.st_size
                        if total > MAX_SUBTASK_INPUT_BYTES:
                            raise _Bad(field, f"inputs are larger than {format_bytes(MAX_SUBTASK_INPUT_BYTES)}")
                        inputs.append((rel, _read_all(entry, st.st_size, rel, field)))
                    finally:
                        if entry >= 0:
                            os.close(entry)
            finally:
                os.close(fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return tuple(sorted(inputs))


def _listdir(fd: int, prefix: str, field: str) -> list[str]:
    try:
        return os.listdir(fd)
    except OSError as exc:
        raise _Bad(field, f"cannot list input folder {prefix or '.'}: {exc.strerror}") from None


def _open_entry(dir_fd: int, name: str, rel: str, field: str) -> int:
    """Open entry ``name`` of ``dir_fd`` if it is a directory or a regular file
    with one name, else raise _Bad. The listing's lstat only decides whether to
    open at all (opening a device can have effects); what counts is the fstat
    of what was opened, compared with the lstat, so a swap in between is caught."""
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise _Bad(field, f"input {rel} vanished while the folder was read") from None
    except OSError as exc:
        raise _Bad(field, f"cannot read input {rel}: {exc.strerror}") from None
    if not (stat.S_ISREG(before.st_mode) or stat.S_ISDIR(before.st_mode)):
        raise _Bad(field, f"input {rel} is {_kind(before.st_mode)}; inputs must be regular files")
    flags = _DIR_FLAGS if stat.S_ISDIR(before.st_mode) else _FILE_FLAGS
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _Bad(field, f"input {rel} changed while the folder was read") from None
        if exc.errno == errno.ENOENT:
            raise _Bad(field, f"input {rel} vanished while the folder was read") from None
        raise _Bad(field, f"cannot read input {rel}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise _Bad(field, f"cannot read input {rel}: {exc.strerror}") from None
    problem = ""
    if (st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)) != (before.st_dev, before.st_ino, stat.S_IFMT(before.st_mode)):
        problem = "changed while the folder was read"
    elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        problem = "is a hard link (the file has another name elsewhere); copy it instead"
    if problem:
        os.close(fd)
        raise _Bad(field, f"input {rel} {problem}")
    return fd


def _read_all(fd: int, size: int, rel: str, field: str) -> bytes:
    """The file's bytes: at most ``size`` (what fstat said) plus one to see growth."""
    chunks = []
    left = size + 1
    try:
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise _Bad(field, f"cannot read input {rel}: {exc.strerror}") from None
    data = b"".join(chunks)
    if len(data) != size:
        raise _Bad(field, f"input {rel} changed while the folder was read")
    return data


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def load_task(path: Path | str) -> TaskSpec:
    """Read and check a task.json; raise TaskFileError naming the first bad field."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TASK_FILE_BYTES + 1)
        if len(raw) > MAX_TASK_FILE_BYTES:
            raise TaskFileError(f"{path}: larger than {format_bytes(MAX_TASK_FILE_BYTES)}; not a task file")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"{path}: no such task file") from None
    except IsADirectoryError:
        raise TaskFileError(f"{path}: is a directory, not a task file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{path}: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise TaskFileError(f"{path}: invalid JSON: nested too deeply") from None
    try:
        return _parse(doc, path.resolve().parent)
    except _Bad as exc:
        raise TaskFileError(f"{path}: {exc}") from None


def _parse(doc: object, base: Path) -> TaskSpec:
    if not isinstance(doc, dict):
        raise _Bad("task", "must be a JSON object")
    kind = _require(doc, "type")
    if kind != "wasm":
        raise _Bad("type", f'must be "wasm", got {kind!r}')
    name = _string(doc, "name")
    bid = _require(doc, "bid")
    if isinstance(bid, bool) or not isinstance(bid, (int, float)) or bid < 0 or not math.isfinite(bid):
        raise _Bad("bid", f"must be a number >= 0, got {bid!r}")
    subtask_timeout = parse_duration(_require(doc, "subtask_timeout"), "subtask_timeout")
    timeout = parse_duration(_require(doc, "timeout"), "timeout")

    options = _object(_require(doc, "options"), "options")
    p = "options."
    if "js_name" in options and not isinstance(options["js_name"], str):
        raise _Bad(p + "js_name", f"must be a string, got {options['js_name']!r}")
    wasm_name = _string(options, "wasm_name", p)
    input_dir = _resolve(base, _string(options, "input_dir", p))
    output_dir = _resolve(base, _string(options, "output_dir", p))
    if not input_dir.is_dir():
        raise _Bad(p + "input_dir", f"{input_dir} is not a directory")
    if output_dir.exists() and not output_dir.is_dir():
        raise _Bad(p + "output_dir", f"{output_dir} is not a directory")

    wasm_path = _resolve(input_dir, wasm_name)
    try:
        with wasm_path.open("rb") as f:
            magic = f.read(len(_WASM_MAGIC))
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise _Bad(p + "wasm_name", f"cannot read {wasm_path}: {exc.strerror}") from None
    if magic != _WASM_MAGIC:
        raise _Bad(p + "wasm_name", f"{wasm_path} is not a WebAssembly module")
    if size > MAX_WASM_BYTES:
        raise _Bad(p + "wasm_name", f"{wasm_path} is {size} bytes, over the {format_bytes(MAX_WASM_BYTES)} module size limit")

    table = _object(_require(options, "subtasks", p), p + "subtasks")
    if not table:
        raise _Bad(p + "subtasks", "must name at least one subtask")
    if output_dir.resolve() == input_dir.resolve():
        raise _Bad(p + "output_dir", "must not be input_dir (outputs would become inputs)")
    subtasks = []
    for index, sub_name in enumerate(sorted(table, key=natural_key)):
        field = f"{p}subtasks.{sub_name}"
        if sub_name in (".", "..") or not sub_name or any(c in sub_name for c in "/\\\0"):
            raise _Bad(p + "subtasks", f"{sub_name!r} is not a usable folder name")
        entry = _object(table[sub_name], field)
        args = _require(entry, "exec_args", field + ".")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise _Bad(field + ".exec_args", f"must be a list of strings, got {args!r}")
        outs = _require(entry, "output_file_paths", field + ".")
        if not isinstance(outs, list) or not outs:
            raise _Bad(field + ".output_file_paths", f"must be a non-empty list of paths, got {outs!r}")
        outputs = tuple(_relpath(o, field + ".output_file_paths") for o in outs)
        if len(set(outputs)) != len(outputs):
            raise _Bad(field + ".output_file_paths", "lists a path twice")
        folder = input_dir / sub_name
        if _is_within(output_dir, folder):
            raise _Bad(p + "output_dir", f"must not be inside the input folder {folder}")
        subtasks.append(
            Subtask(
                index=index,
                name=sub_name,
                args=tuple(args),
                inputs=_read_inputs(input_dir, sub_name, field),
                outputs=outputs,
            )
        )
    program = Program.from_path(wasm_path)
    return TaskSpec(
        name=name,
        bid=float(bid),
        timeout=timeout,
        subtask_timeout=subtask_timeout,
        program=program,
        input_dir=input_dir,
        output_dir=output_dir,
        subtasks=tuple(subtasks),
        limits=Limits(subtask_timeout=subtask_timeout),
    )


def write_outputs(spec: TaskSpec, result: SubtaskResult) -> list[Path]:
    """Write a successful result's files to ``output_dir/<subtask>/``, each
    atomically (a reader sees the old file or the whole new one), never
    through a symlink below ``output_dir``. Returns the paths."""
    written = []
    folder = spec.output_dir / result.name
    try:
        spec.output_dir.mkdir(parents=True, exist_ok=True)  # the user's own choice: may be a symlink
        base = os.open(spec.output_dir, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from None
    try:
        for rel, data in result.outputs:
            target = folder / rel
            try:
                parts = [result.name, *check_relpath(rel).split("/")]
                check_relpath(result.name)
            except ValueError:
                raise OutputError(f"cannot write {target}: not a path inside {spec.output_dir}") from None
            _write_below(base, parts, data, target)
            written.append(target)
    finally:
        os.close(base)
    return written


def _write_below(base: int, parts: list[str], data: bytes, target: Path) -> None:
    fd = os.dup(base)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutputError(f"cannot write {target}: {part} is a symlink or not a folder") from None
                raise
            os.close(fd)
            fd = sub
        name = parts[-1]
        tmp = f".{name}.{secrets.token_hex(6)}"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644,
                      dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as f:
                f.write(data)
            # Replaces whatever has the name, a symlink included, without following it.
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=fd)
            raise
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
