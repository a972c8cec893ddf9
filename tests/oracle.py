"""Native Debian flite, the test oracle, beside flite.wasm run in the sandbox: the
helpers the oracle tests share (the ``native_flite`` fixture is in conftest.py)."""
from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import pytest

from gflite import flitewasm
from gflite.gwasm.sandbox import run_subtask
from gflite.gwasm.subtask import Limits, Subtask, SubtaskResult

LIMITS = Limits(memory_bytes=256 << 20, subtask_timeout=120.0)


def run_wasm(
    args: list[str],
    inputs: dict[str, bytes] | None = None,
    outputs: tuple[str, ...] = (),
    check: bool = True,
) -> SubtaskResult:
    subtask = Subtask(
        index=0,
        name="flite",
        args=tuple(args),
        inputs=tuple((inputs or {}).items()),
        outputs=outputs,
    )
    result = run_subtask(flitewasm.program(), subtask, LIMITS)
    if check:
        assert result.ok, f"flite.wasm {args} failed: {result.reason} {result.stderr[-500:]!r}"
        assert result.exit_code == 0
    return result


def run_native(
    flite: str,
    args: list[str],
    cwd: Path,
    inputs: dict[str, bytes] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    for rel, data in (inputs or {}).items():
        (cwd / rel).write_bytes(data)
    proc = subprocess.run([flite, *args], cwd=cwd, capture_output=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_same_wav(got: bytes, want: bytes) -> None:
    """Header and PCM data identical; on failure say where they part."""
    with wave.open(io.BytesIO(want)) as w:
        want_params, want_pcm = w.getparams(), w.readframes(w.getnframes())
    with wave.open(io.BytesIO(got)) as g:
        got_params, got_pcm = g.getparams(), g.readframes(g.getnframes())
    assert want_params.nframes > 1000, "the oracle produced (almost) no audio"
    assert got_params == want_params
    if got_pcm != want_pcm:
        first = next(i for i, (a, b) in enumerate(zip(got_pcm, want_pcm)) if a != b)
        pytest.fail(f"PCM differs from native flite from byte {first} of {len(want_pcm)}")
    header_len = len(want) - len(want_pcm)
    assert got[:header_len] == want[:header_len], "WAV headers differ"
    assert got == want
