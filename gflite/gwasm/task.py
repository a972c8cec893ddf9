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
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gflite.errors import OutputError, TaskFileError
from gflite.gwasm.sandbox import check_relpath
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult

_DURATION = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")
_WASM_MAGIC = b"\0asm\x01\0\0\0"


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


def _read_inputs(folder: Path, field: str) -> tuple[tuple[str, bytes], ...]:
    """Every regular file under ``folder``, as (relative posix path, bytes), sorted."""
    inputs = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            rel = path.relative_to(folder).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                raise _Bad(field, f"input {rel} is a symlink; inputs must be regular files")
            if stat.S_ISREG(st.st_mode):
                try:
                    inputs.append((rel, path.read_bytes()))
                except OSError as exc:
                    raise _Bad(field, f"cannot read input {rel}: {exc.strerror}") from None
            elif not stat.S_ISDIR(st.st_mode):
                raise _Bad(field, f"input {rel} is not a regular file")
    return tuple(sorted(inputs))


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
        text = path.read_text(encoding="utf-8")
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
    if isinstance(bid, bool) or not isinstance(bid, (int, float)) or bid < 0 or bid != bid:
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
    except OSError as exc:
        raise _Bad(p + "wasm_name", f"cannot read {wasm_path}: {exc.strerror}") from None
    if magic != _WASM_MAGIC:
        raise _Bad(p + "wasm_name", f"{wasm_path} is not a WebAssembly module")

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
        if not folder.is_dir() or folder.is_symlink():
            raise _Bad(field, f"input folder {folder} not found")
        if _is_within(output_dir, folder):
            raise _Bad(p + "output_dir", f"must not be inside the input folder {folder}")
        subtasks.append(
            Subtask(
                index=index,
                name=sub_name,
                args=tuple(args),
                inputs=_read_inputs(folder, field),
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
    atomically (a reader sees the old file or the whole new one). Returns the paths."""
    written = []
    folder = spec.output_dir / result.name
    for rel, data in result.outputs:
        target = folder / rel
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
        written.append(target)
    return written
