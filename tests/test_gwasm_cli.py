"""``gwasm run task.json`` end to end: bare gWASM tasks, resume, failures with
their exit codes and one-line errors, Ctrl-C, and the original gWASM flite example
checked against native flite."""
from __future__ import annotations

import re

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gflite.gwasm.cli import app, main
from gflite.gwasm.subtask import Program

WatProgram = Callable[[str], Program]
ROOT = Path(__file__).resolve().parent.parent

TASK: dict[str, Any] = {
    "type": "wasm",
    "name": "test",
    "bid": 1,
    "subtask_timeout": "00:10:00",
    "timeout": "00:10:00",
    "options": {
        "js_name": "test.js",
        "wasm_name": "test.wasm",
        "input_dir": "test_in",
        "output_dir": "test_out",
        "subtasks": {},
    },
}


def bare_task(
    root: Path, wasm: Path, texts: dict[str, bytes], args: list[str], output: str = "out.txt", **top: Any
) -> Path:
    """A gWASM task folder: task.json beside test_in/ (binary + one folder per subtask)."""
    doc = copy.deepcopy(TASK)
    doc.update(top)
    (root / "test_in").mkdir(parents=True)
    shutil.copy(wasm, root / "test_in" / "test.wasm")
    for name, text in texts.items():
        (root / "test_in" / name).mkdir()
        (root / "test_in" / name / "in.txt").write_bytes(text)
        doc["options"]["subtasks"][name] = {"exec_args": args, "output_file_paths": [output]}
    path = root / "task.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


TEXTS = {"subtask1": b"one\n", "subtask2": b"two\n", "subtask10": b"ten\n"}


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def test_runs_a_bare_task(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    before = tree(tmp_path / "test_in")
    result = invoke("run", str(path), "--workers", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("test: 3 done, 0 failed, ")
    assert f"outputs in {tmp_path / 'test_out'}" in result.stdout
    assert tree(tmp_path / "test_out") == {
        "subtask1/out.txt": b"ONE\n",
        "subtask10/out.txt": b"TEN\n",
        "subtask2/out.txt": b"TWO\n",
    }
    assert tree(tmp_path / "test_in") == before  # the requestor's inputs are untouched


def test_rerun_resumes_from_the_cache(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    assert invoke("run", str(path)).exit_code == 0
    shutil.rmtree(tmp_path / "test_out")
    again = invoke("run", str(path))
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("test: 3 done (3 from cache), 0 failed, ")
    assert tree(tmp_path / "test_out")["subtask10/out.txt"] == b"TEN\n"


def test_guest_cannot_change_the_requestors_inputs(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    # The guest overwrites in.txt in its working directory: only its private copy changes.
    path = bare_task(tmp_path, wat_program("upper").path, {"subtask1": b"abc"}, ["in.txt", "in.txt"])
    doc = json.loads(path.read_text())
    doc["options"]["subtasks"]["subtask1"]["output_file_paths"] = ["in.txt"]
    path.write_text(json.dumps(doc))
    assert invoke("run", str(path)).exit_code == 0
    assert (tmp_path / "test_out" / "subtask1" / "in.txt").read_bytes() == b"ABC"
    assert (tmp_path / "test_in" / "subtask1" / "in.txt").read_bytes() == b"abc"


def test_one_and_many_workers_write_identical_outputs(
    tmp_path: Path, wat_program: WatProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = {f"subtask{i}": bytes(range(i, 200)) for i in range(1, 7)}
    outputs = []
    for workers in ("1", "3"):
        root = tmp_path / f"w{workers}"
        monkeypatch.setenv("GFLITE_CACHE_DIR", str(root / "cache"))  # really run, do not resume
        path = bare_task(root, wat_program("upper").path, texts, ["in.txt", "out.txt"])
        result = invoke("run", str(path), "-w", workers, "-q")
        assert result.exit_code == 0, result.output
        assert result.stdout == ""  # -q
        outputs.append(tree(root / "test_out"))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 6


def test_failed_subtask_exit_code_and_report(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    doc = json.loads(path.read_text())
    doc["options"]["subtasks"]["subtask2"]["exec_args"] = ["missing.txt", "out.txt"]
    path.write_text(json.dumps(doc))
    result = invoke("run", str(path), "--retries", "1")
    assert result.exit_code == 5
    assert result.stdout.startswith("test: 2 done, 1 failed, ")
    assert result.stderr.splitlines() == [
        "  subtask1: ok",
        "  subtask2: failed: exit code 1 (after 2 attempts)",
        "  subtask10: ok",
        "gwasm: error: 1 of 3 subtasks failed: subtask2 (exit code 1 (after 2 attempts))",
    ]
    # What finished is kept.
    assert sorted(tree(tmp_path / "test_out")) == ["subtask1/out.txt", "subtask10/out.txt"]


def test_looping_guest_times_out(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    path = bare_task(tmp_path, wat_program("loop").path, {"subtask1": b""}, [], subtask_timeout="00:00:01")
    started = time.monotonic()
    result = invoke("run", str(path), "--retries", "0", "-q")
    assert result.exit_code == 5
    assert result.stderr.splitlines()[-1] == (
        "gwasm: error: 1 of 1 subtasks failed: subtask1 (timeout: subtask time limit of 1 s exceeded)"
    )
    assert time.monotonic() - started < 10


def test_bad_task_file_is_one_line_exit_4(tmp_path: Path, wat_program: WatProgram) -> None:
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    doc = json.loads(path.read_text())
    del doc["options"]["wasm_name"]
    path.write_text(json.dumps(doc))
    result = invoke("run", str(path))
    assert result.exit_code == 4
    assert result.stderr == f"gwasm: error: {path}: options.wasm_name: missing\n"
    assert result.stdout == ""


def test_unwritable_output_is_exit_9(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    (tmp_path / "test_out").mkdir()
    (tmp_path / "test_out" / "subtask1").write_text("a file where a folder belongs")
    result = invoke("run", str(path))
    assert result.exit_code == 9
    assert result.stderr.startswith("gwasm: error: cannot write ")
    assert len(result.stderr.splitlines()) == 1


def test_usage_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in [
        (["run", "--bogus", "x"], r"^gwasm: error: No such option:? '?--bogus'?\.? \(see gwasm run --help\)\n$"),
        (["run"], r"^gwasm: error: Missing argument '(?i:task)'\. \(see gwasm run --help\)\n$"),
        (["frob"], r"^gwasm: error: No such command 'frob'\. \(see gwasm --help\)\n$"),
    ]:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        # click's wording varies a little between releases; the shape must not.
        assert re.match(message, capsys.readouterr().err)


def test_main_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "none.json")])
    assert info.value.code == 4
    assert capsys.readouterr().err == f"gwasm: error: {tmp_path / 'none.json'}: no such task file\n"
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "run" in capsys.readouterr().out


def gwasm_processes(marker: str) -> list[int]:
    """Our processes (the CLI and its workers) whose command line mentions ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.usefixtures("sigint_reaches_children")
def test_ctrl_c_exits_130_and_leaves_no_workers(tmp_path: Path, wat_program: WatProgram) -> None:
    path = bare_task(tmp_path, wat_program("loop").path, {"subtask1": b"", "subtask2": b""}, [])
    env = dict(os.environ, PYTHONPATH=str(ROOT), GFLITE_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gflite.gwasm.cli", "run", str(path), "-w", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    deadline = time.monotonic() + 30
    while len(gwasm_processes(str(path))) < 3:  # the CLI and its two workers
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err == "gwasm: error: interrupted; finished subtasks are cached, rerun to resume\n"
    time.sleep(0.2)
    assert gwasm_processes(str(path)) == []


# The original gWASM flite example, run unmodified as a bare task.
FLITE_TEXTS = {
    "subtask1": b"It was a bright cold day in April.\n",
    "subtask2": b"The clocks were striking thirteen, said Dr. Smith at 10:30.\n",
    "subtask3": b"Hello world.\n",
}


def test_gwasm_flite_example_matches_native_flite(tmp_path: Path, fresh_cache: Path) -> None:
    from gflite import flitewasm

    native = shutil.which("flite")
    assert native, "native flite (the test oracle) is not installed; run scripts/setup.sh --dev"
    wasm = flitewasm.wasm_path()  # raises (the test fails) if flite.wasm was not built
    path = bare_task(tmp_path, wasm, FLITE_TEXTS, ["-f", "in.txt", "-o", "out.wav"], output="out.wav")
    result = invoke("run", str(path))
    assert result.exit_code == 0, result.output
    for name in FLITE_TEXTS:
        ref = tmp_path / "native" / name
        shutil.copytree(tmp_path / "test_in" / name, ref)
        subprocess.run([native, "-f", "in.txt", "-o", "ref.wav"], cwd=ref, check=True, timeout=60)
        got = (tmp_path / "test_out" / name / "out.wav").read_bytes()
        assert got[:4] == b"RIFF" and len(got) > 1000
        assert got == (ref / "ref.wav").read_bytes(), name


def test_cluster_logging_is_kept_off_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    import logging

    from gflite.cli_shared import quiet_cluster_logs

    quiet_cluster_logs()
    for name in ("distributed.client", "distributed.worker", "distributed.comm.tcp", "tornado"):
        assert not logging.getLogger(name).isEnabledFor(logging.CRITICAL), name
    logging.getLogger("distributed.client").error("Failed to reconnect to scheduler after 30.00 seconds")
    assert capfd.readouterr().err == ""


def test_market_and_cluster_options_locally(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    result = invoke("run", str(path), "-w", "2", "--redundancy", "2", "--budget", "5")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "  verified 3 subtasks on 2 operators each; 0 with disagreeing results"
    assert lines[2].startswith("  local-0: 3/3 results, ") and lines[3].startswith("  local-1: 3/3 results, ")
    assert lines[4] == "  total: 0 of budget 5"  # local worker slots are free
    assert tree(tmp_path / "test_out")["subtask10/out.txt"] == b"TEN\n"
    result = invoke("run", str(path), "-w", "2", "--redundancy", "3")
    assert result.exit_code == 7
    assert result.stderr == ("gwasm: error: only 2 of 2 providers at or under the bid 1/CPU-s, run by 2 "
                             "operators; redundancy 3 needs 3 distinct operators\n")


def test_no_cache_neither_replays_nor_stores(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path) -> None:
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    assert invoke("run", str(path), "-w", "2", "--no-cache").exit_code == 0
    assert not list(fresh_cache.glob("results/*/*.result"))
    assert invoke("run", str(path), "-w", "2").exit_code == 0
    again = invoke("run", str(path), "-w", "2", "--no-cache")
    assert again.exit_code == 0 and again.stdout.startswith("test: 3 done, 0 failed, ")


def test_cache_info_and_clear(tmp_path: Path, wat_program: WatProgram, fresh_cache: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GFLITE_CACHE_MAX", "64M")
    path = bare_task(tmp_path, wat_program("upper").path, TEXTS, ["in.txt", "out.txt"])
    assert invoke("run", str(path), "-w", "2").exit_code == 0
    info = invoke("cache", "info")
    assert info.exit_code == 0
    assert info.stdout.splitlines()[0] == f"result cache: {fresh_cache / 'results'}"
    assert info.stdout.splitlines()[1].startswith("  3 results, ")
    assert "of 64.0 MiB (GFLITE_CACHE_MAX" in info.stdout
    cleared = invoke("cache", "clear")
    assert cleared.exit_code == 0 and cleared.stdout.startswith("removed ")
    assert invoke("cache", "info").stdout.splitlines()[1].startswith("  0 results, 0 bytes")
    assert invoke("cache", "wipe").exit_code == 2
