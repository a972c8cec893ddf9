"""Running ``gflite`` in tests, and native flite (the oracle) beside it: the helpers
the CLI test modules share (tests/test_cli.py, test_cli_books.py, test_ssml.py)."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from gflite import cli

FLITE = shutil.which("flite") or "/usr/bin/flite"
GFLITE = [sys.executable, "-m", "gflite"]


def pcm(wav: Path | bytes) -> tuple[int, bytes]:
    """A WAV's sample rate and samples."""
    with wave.open(io.BytesIO(wav) if isinstance(wav, bytes) else str(wav)) as w:
        return w.getframerate(), w.readframes(w.getnframes())


def native(tmp: Path, *args: str) -> tuple[int, bytes]:
    """What native flite says for ``args``, as :func:`pcm`."""
    out = tmp / "native.wav"
    subprocess.run([FLITE, *args, "-o", str(out)], check=True)
    return pcm(out)


def gflite(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``gflite ARGS`` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err  # type: ignore[return-value]


def ok(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``gflite ARGS`` in-process, which must succeed; its stderr."""
    code, _, err = gflite(capsys, *args)
    assert code == 0, err
    return err
