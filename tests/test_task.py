"""Bare tasks in the original gWASM format: parsing, natural order, relative
paths, one-line errors naming the bad field, and writing outputs."""
from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gflite.errors import OutputError, TaskFileError
from gflite.gwasm.subtask import Program, SubtaskResult
from gflite.gwasm.task import load_task, natural_key, parse_duration, write_outputs

WatProgram = Callable[[str], Program]

# The example from gWASM's documentation, paths aside.
EXAMPLE: dict[str, Any] = {
    "type": "wasm",
    "name": "test",
    "bid": 1,
    "subtask_timeout": "00:10:00",
    "timeout": "00:10:00",
    "options": {
        "js_name": "test.js",
        "wasm_name": "test.wasm",
        "input_dir": "/home/user/test_in",
        "output_dir": "/home/user/test_out",
        "subtasks": {
            "subtask1": {"exec_args": ["arg1", "arg2"], "output_file_paths": ["out.txt"]},
            "subtask2": {"exec_args": ["arg3", "arg4"], "output_file_paths": ["out.txt"]},
        },
    },
}


def make_task(root: Path, wasm: bytes, doc: dict[str, Any] | None = None, names=("subtask1", "subtask2")) -> Path:
    """A task folder as gWASM laid it out: input_dir holds the binary and one folder per subtask."""
    doc = copy.deepcopy(doc or EXAMPLE)
    doc["options"]["input_dir"] = "test_in"
    doc["options"]["output_dir"] = "test_out"
    inputs = root / "test_in"
    inputs.mkdir(parents=True)
    (inputs / "test.wasm").write_bytes(wasm)
    for name in names:
        (inputs / name).mkdir()
        (inputs / name / "in.txt").write_text(f"input of {name}\n")
    path = root / "task.json"
    path.write_text(json.dumps(doc))
    return path


def test_loads_the_documented_example(tmp_path: Path, wat_program: WatProgram) -> None:
    wasm = wat_program("upper").path.read_bytes()
    path = make_task(tmp_path, wasm)
    spec = load_task(path)
    assert spec.name == "test" and spec.bid == 1.0
    assert spec.timeout == 600.0 and spec.subtask_timeout == 600.0
    assert spec.limits.subtask_timeout == 600.0
    assert spec.input_dir == tmp_path / "test_in" and spec.output_dir == tmp_path / "test_out"
    assert spec.program.path == tmp_path / "test_in" / "test.wasm"
    assert spec.program.sha256 == Program.from_path(spec.program.path).sha256
    assert [(s.index, s.name, s.args, s.outputs) for s in spec.subtasks] == [
        (0, "subtask1", ("arg1", "arg2"), ("out.txt",)),
        (1, "subtask2", ("arg3", "arg4"), ("out.txt",)),
    ]
    assert spec.subtasks[0].inputs == (("in.txt", b"input of subtask1\n"),)


def test_relative_paths_resolve_against_the_task_file(
    tmp_path: Path, wat_program: WatProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_task(tmp_path / "deep", wat_program("upper").path.read_bytes())
    monkeypatch.chdir(tmp_path)  # not the task's folder
    spec = load_task(Path("deep") / "task.json")
    assert spec.input_dir == (tmp_path / "deep" / "test_in")
    assert spec.output_dir == (tmp_path / "deep" / "test_out")


def test_subtasks_sort_naturally(tmp_path: Path, wat_program: WatProgram) -> None:
    names = ["subtask10", "subtask2", "subtask1", "subtask9", "subtask11"]
    doc = copy.deepcopy(EXAMPLE)
    doc["options"]["subtasks"] = {n: {"exec_args": [], "output_file_paths": ["o"]} for n in names}
    spec = load_task(make_task(tmp_path, wat_program("upper").path.read_bytes(), doc, names))
    assert [s.name for s in spec.subtasks] == ["subtask1", "subtask2", "subtask9", "subtask10", "subtask11"]
    assert [s.index for s in spec.subtasks] == [0, 1, 2, 3, 4]


def test_natural_key() -> None:
    assert sorted(["a10", "a2", "b1", "a1b2", "a1b10", "a01"], key=natural_key) == [
        "a01", "a1b2", "a1b10", "a2", "a10", "b1",
    ]


def test_inputs_include_nested_files(tmp_path: Path, wat_program: WatProgram) -> None:
    path = make_task(tmp_path, wat_program("upper").path.read_bytes())
    (tmp_path / "test_in" / "subtask1" / "data").mkdir()
    (tmp_path / "test_in" / "subtask1" / "data" / "x.bin").write_bytes(b"\0\1")
    spec = load_task(path)
    assert spec.subtasks[0].inputs == (("data/x.bin", b"\0\1"), ("in.txt", b"input of subtask1\n"))


def test_durations() -> None:
    assert parse_duration("01:02:03", "t") == 3723.0
    assert parse_duration("100:00:00", "t") == 360000.0
    for bad in ("10:00", "00:60:00", "00:00:00", "1:2:3", 600, "ten"):
        with pytest.raises(Exception, match="^t: "):
            parse_duration(bad, "t")


def mutate(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[key]
    if value is KeyError:
        del doc[last]
    else:
        doc[last] = value


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("type", KeyError, "type: missing"),
        ("type", "docker", 'type: must be "wasm"'),
        ("name", KeyError, "name: missing"),
        ("name", "", "name: must be a non-empty string"),
        ("bid", "cheap", "bid: must be a number >= 0"),
        ("bid", -1, "bid: must be a number >= 0"),
        ("bid", True, "bid: must be a number >= 0"),
        ("timeout", "10:00", 'timeout: must be a duration "HH:MM:SS"'),
        ("subtask_timeout", KeyError, "subtask_timeout: missing"),
        ("subtask_timeout", "00:00:00", "subtask_timeout: must be longer than 00:00:00"),
        ("options", KeyError, "options: missing"),
        ("options", [], "options: must be a JSON object"),
        ("options.js_name", 3, "options.js_name: must be a string"),
        ("options.wasm_name", KeyError, "options.wasm_name: missing"),
        ("options.wasm_name", "nope.wasm", "options.wasm_name: cannot read"),
        ("options.wasm_name", "subtask1/in.txt", "is not a WebAssembly module"),
        ("options.input_dir", KeyError, "options.input_dir: missing"),
        ("options.input_dir", "missing_dir", "options.input_dir: "),
        ("options.output_dir", "test_in", "options.output_dir: must not be input_dir"),
        ("options.output_dir", "test_in/subtask1/out", "options.output_dir: must not be inside the input folder"),
        ("options.subtasks", {}, "options.subtasks: must name at least one subtask"),
        ("options.subtasks", KeyError, "options.subtasks: missing"),
        ("options.subtasks.subtask2", "x", "options.subtasks.subtask2: must be a JSON object"),
        ("options.subtasks.subtask2.exec_args", KeyError, "options.subtasks.subtask2.exec_args: missing"),
        ("options.subtasks.subtask2.exec_args", "-f in.txt", "options.subtasks.subtask2.exec_args: must be a list"),
        ("options.subtasks.subtask2.exec_args", ["-f", 3], "options.subtasks.subtask2.exec_args: must be a list"),
        ("options.subtasks.subtask2.output_file_paths", [], "options.subtasks.subtask2.output_file_paths: must be"),
        ("options.subtasks.subtask2.output_file_paths", ["../x"], "output_file_paths: '../x' must be a relative path"),
        ("options.subtasks.subtask2.output_file_paths", ["/etc/x"], "output_file_paths: '/etc/x' must be a relative"),
        ("options.subtasks.subtask2.output_file_paths", ["a", "a"], "output_file_paths: lists a path twice"),
        ("options.subtasks.subtask3", {"exec_args": [], "output_file_paths": ["o"]}, "options.subtasks.subtask3: input folder"),
        ("options.subtasks.a/b", {"exec_args": [], "output_file_paths": ["o"]}, "is not a usable folder name"),
    ],
)
def test_bad_fields_give_one_line_naming_them(
    tmp_path: Path, wat_program: WatProgram, field: str, value: Any, message: str
) -> None:
    path = make_task(tmp_path, wat_program("upper").path.read_bytes())
    doc = json.loads(path.read_text())
    if field.startswith("options.subtasks.a/b"):
        doc["options"]["subtasks"]["a/b"] = value
    else:
        mutate(doc, field, value)
    path.write_text(json.dumps(doc))
    with pytest.raises(TaskFileError) as info:
        load_task(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert message in text
    assert info.value.exit_code == 4


def test_file_level_errors(tmp_path: Path, wat_program: WatProgram) -> None:
    with pytest.raises(TaskFileError, match="no such task file"):
        load_task(tmp_path / "missing.json")
    with pytest.raises(TaskFileError, match="is a directory"):
        load_task(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "wasm",\n "name": }')
    with pytest.raises(TaskFileError, match=r"invalid JSON: .* at line 2 column"):
        load_task(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(TaskFileError, match="task: must be a JSON object"):
        load_task(bad)


def test_symlinked_input_is_refused(tmp_path: Path, wat_program: WatProgram) -> None:
    path = make_task(tmp_path, wat_program("upper").path.read_bytes())
    (tmp_path / "secret").write_text("host file")
    (tmp_path / "test_in" / "subtask2" / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(TaskFileError, match="options.subtasks.subtask2: input link is a symlink"):
        load_task(path)


def test_write_outputs(tmp_path: Path, wat_program: WatProgram) -> None:
    spec = load_task(make_task(tmp_path, wat_program("upper").path.read_bytes()))
    result = SubtaskResult(1, "subtask2", ok=True, outputs=(("out.txt", b"one"), ("sub/two.bin", b"\0\1")))
    written = write_outputs(spec, result)
    out = tmp_path / "test_out" / "subtask2"
    assert written == [out / "out.txt", out / "sub" / "two.bin"]
    assert (out / "out.txt").read_bytes() == b"one"
    assert (out / "sub" / "two.bin").read_bytes() == b"\0\1"
    write_outputs(spec, SubtaskResult(1, "subtask2", ok=True, outputs=(("out.txt", b"again"),)))
    assert (out / "out.txt").read_bytes() == b"again"
    assert sorted(p.name for p in out.iterdir()) == ["out.txt", "sub"]  # no temporary files left


def test_write_outputs_error(tmp_path: Path, wat_program: WatProgram) -> None:
    spec = load_task(make_task(tmp_path, wat_program("upper").path.read_bytes()))
    (tmp_path / "test_out").write_text("a file where the folder should be")
    with pytest.raises(OutputError, match="cannot write"):
        write_outputs(spec, SubtaskResult(0, "subtask1", ok=True, outputs=(("out.txt", b"x"),)))


# --- a hostile task folder ----------------------------------------------------------


def _refused(path: Path, message: str) -> None:
    with pytest.raises(TaskFileError) as info:
        load_task(path)
    text = str(info.value)
    assert "\n" not in text and info.value.exit_code == 4
    assert message in text, text


def test_hard_linked_input_is_refused(tmp_path: Path, wat_program: WatProgram) -> None:
    # A second name for a file outside the folder (as a link to /etc/shadow
    # would be): copying it would ship that file to providers.
    path = make_task(tmp_path, wat_program("upper").path.read_bytes())
    secret = tmp_path / "secret"
    secret.write_text("host file")
    os.link(secret, tmp_path / "test_in" / "subtask2" / "shadow")
    _refused(path, "options.subtasks.subtask2: input shadow is a hard link")


@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
def test_special_files_are_refused(tmp_path: Path, wat_program: WatProgram, kind: str) -> None:
    path = make_task(tmp_path, wat_program("upper").path.read_bytes())
    where = tmp_path / "test_in" / "subtask1" / "deep"
    where.mkdir()
    special = where / "x"
    if kind == "fifo":
        os.mkfifo(special)  # opening it for reading would block forever
        expected = "input deep/x is a FIFO"
    elif kind == "device":
        os.mknod(special, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
        expected = "input deep/x is a character device"
    else:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(special))
        sock.close()
        expected = "input deep/x is a socket"
    _refused(path, f"options.subtasks.subtask1: {expected}; inputs must be regular files")


def test_symlinked_subtask_folder_is_refused(tmp_path: Path, wat_program: WatProgram) -> None:
    path = make_task(tmp_path, wat_program("upper").path.read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "in.txt").write_text("not the task's")
    shutil.rmtree(tmp_path / "test_in" / "subtask2")
    (tmp_path / "test_in" / "subtask2").symlink_to(elsewhere)
    _refused(path, "options.subtasks.subtask2: input folder")


def test_deeply_nested_task_file(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    _refused(path, "invalid JSON: nested too deeply")


def test_deeply_nested_task_file_from_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text('{"type": ' + "[" * 100_000 + "]" * 100_000 + "}")
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run(
        [sys.executable, "-m", "gflite.gwasm.cli", "run", str(path)],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=root),
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "nested too deeply" in proc.stderr


def test_task_file_size_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gflite.gwasm import task

    monkeypatch.setattr(task, "MAX_TASK_FILE_BYTES", 100)
    path = tmp_path / "task.json"
    path.write_text(json.dumps(EXAMPLE))
    _refused(path, "larger than 100 bytes; not a task file")


def test_outputs_never_go_through_a_symlinked_subtask_folder(tmp_path: Path, wat_program: WatProgram) -> None:
    spec = load_task(make_task(tmp_path, wat_program("upper").path.read_bytes()))
    victim = tmp_path / "victim"
    victim.mkdir()
    spec.output_dir.mkdir()
    (spec.output_dir / "subtask1").symlink_to(victim)
    with pytest.raises(OutputError, match="subtask1 is a symlink or not a folder"):
        write_outputs(spec, SubtaskResult(0, "subtask1", ok=True, outputs=(("out.txt", b"x"),)))
    assert list(victim.iterdir()) == []


def test_an_output_symlink_is_replaced_not_followed(tmp_path: Path, wat_program: WatProgram) -> None:
    spec = load_task(make_task(tmp_path, wat_program("upper").path.read_bytes()))
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (spec.output_dir / "subtask1").mkdir(parents=True)
    (spec.output_dir / "subtask1" / "out.txt").symlink_to(victim)
    write_outputs(spec, SubtaskResult(0, "subtask1", ok=True, outputs=(("out.txt", b"new"),)))
    assert victim.read_text() == "keep me"
    assert (spec.output_dir / "subtask1" / "out.txt").read_bytes() == b"new"


def test_a_file_swapped_for_a_symlink_after_the_listing_is_never_read(
    tmp_path: Path, wat_program: WatProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race an attacker needs many tries for, made certain: right after the
    # loader looks at in.txt (a regular file), it becomes a link to a host file.
    path = make_task(tmp_path, wat_program("upper").path.read_bytes())
    secret = tmp_path / "secret"
    secret.write_text("TOP SECRET host file")
    victim = tmp_path / "test_in" / "subtask1" / "in.txt"
    real_stat, real_lstat = os.stat, os.lstat
    swapped: list[bool] = []

    def swap_after(result: os.stat_result) -> os.stat_result:
        if not swapped and stat.S_ISREG(result.st_mode) and result.st_size == len("input of subtask1\n"):
            swapped.append(True)
            victim.unlink()
            victim.symlink_to(secret)
        return result

    def fake_stat(p, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_stat(p, *args, **kwargs)
        return swap_after(result) if p == "in.txt" and kwargs.get("follow_symlinks") is False else result

    def fake_lstat(p, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_lstat(p, *args, **kwargs)
        return swap_after(result) if Path(p) == victim else result

    monkeypatch.setattr(os, "stat", fake_stat)
    monkeypatch.setattr(os, "lstat", fake_lstat)
    try:
        spec = load_task(path)
    except TaskFileError as exc:
        assert "input in.txt changed while the folder was read" in str(exc)
    else:
        pytest.fail(f"loaded {spec.subtasks[0].inputs!r}")
    assert swapped
