"""The shipped flite.wasm: where it is, its pinned sha256, and the voices built in.

flite.wasm is flite 2.2's command-line program built as a WASI command module by
``wasm_bin/build.sh`` (reproducible: the same toolchain gives the same bytes).
In a source checkout it lives in ``wasm_bin/``; installed, it is package data of
``gflite.wasm_bin`` (pyproject maps that package to the ``wasm_bin/`` directory).
"""
from __future__ import annotations

import functools
from pathlib import Path

from gflite.errors import GfliteError
from gflite.gwasm.subtask import Program
from gflite.voices import BUILT_IN

# In the order flite lists them; the first is flite's default voice (facts in gflite/voices.py).
VOICES: tuple[str, ...] = BUILT_IN

WASM_NAME = "flite.wasm"
SHA256_NAME = "flite.wasm.sha256"
_CHECKOUT_DIR = Path(__file__).resolve().parent.parent / "wasm_bin"


def _bin_dir() -> Path:
    """The directory holding flite.wasm: the installed package, else the checkout's wasm_bin/."""
    try:
        # The package's own directory (wheel and editable installs both give a
        # real one, never a zip); importlib.resources would find the same, at a
        # twentieth of this command's start-up for its import alone.
        import gflite.wasm_bin as package
    except ModuleNotFoundError:
        # Running from a checkout that was never installed (gflite on sys.path only).
        return _CHECKOUT_DIR
    return Path(next(iter(package.__path__)))


def _read_pin(path: Path) -> str:
    """The hex digest from a ``sha256sum``-format file (``<hex>  flite.wasm``)."""
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise GfliteError(f"cannot read the pinned sha256 of flite.wasm: {exc}") from None
    digest = text.split()[0] if text.split() else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise GfliteError(f"{path} does not hold a sha256 digest")
    return digest


# The sha256 that wasm_bin/build.sh reproduces, from flite.wasm.sha256 (the one
# place it is pinned). Read on first access, so importing does no I/O.
PINNED_SHA256: str


@functools.lru_cache(maxsize=1)
def _pinned_sha256() -> str:
    return _read_pin(_bin_dir() / SHA256_NAME)


def __getattr__(name: str) -> str:
    if name == "PINNED_SHA256":
        return _pinned_sha256()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def wasm_path() -> Path:
    """Path of the shipped flite.wasm; raises GfliteError if it is missing."""
    path = _bin_dir() / WASM_NAME
    if not path.is_file():
        raise GfliteError(f"flite.wasm not found at {path}; rebuild it with wasm_bin/build.sh")
    return path


def program() -> Program:
    """The engine's Program for flite.wasm.

    The digest is the file's own (see :mod:`gflite.gwasm.digests`: hashed once
    per file version, then remembered), never trusted from the pin, so a
    locally rebuilt or damaged binary is never passed off under the pinned
    identity; the engine's result cache and provider agreement key on it.
    """
    from gflite.gwasm.digests import file_sha256

    path = wasm_path()
    try:
        digest = file_sha256(path)
    except OSError as exc:
        raise GfliteError(f"cannot read {path}: {exc}") from None
    # NaN canonicalisation off: it makes the clustergen voices ~4x slower, and
    # flite's output cannot carry a NaN payload — samples are int16, and wasm's
    # float-to-int conversions trap on NaN (or give 0) whatever its bits. The
    # native-oracle tests and redundancy compare every sample byte for byte.
    return Program(path=path, sha256=digest, nan_canonicalization=False)
