"""Shared fixtures. Add new fixtures below; keep the existing ones' names and behaviour."""
from __future__ import annotations

from collections.abc import Callable, Iterator
import shutil
from pathlib import Path

import pytest

from gflite.gwasm.subtask import Program

WAT_DIR = Path(__file__).parent / "wat"


@pytest.fixture(scope="session", autouse=True)
def gflite_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test run gets its own cache (never the user's ~/.cache/gflite).

    Session-wide, so flite.wasm is compiled once per run; a test that needs an
    empty cache sets ``GFLITE_CACHE_DIR`` itself (see ``fresh_cache``)."""
    path = tmp_path_factory.mktemp("gflite-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GFLITE_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory for this test only."""
    path = tmp_path / "cache"
    monkeypatch.setenv("GFLITE_CACHE_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def wat_program(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Program]:
    """``wat_program("upper")`` compiles tests/wat/upper.wat to a .wasm file (once) and
    returns it as a Program."""
    import wasmtime

    out = tmp_path_factory.mktemp("wasm")
    made: dict[str, Program] = {}

    def make(name: str) -> Program:
        if name not in made:
            path = out / f"{name}.wasm"
            path.write_bytes(wasmtime.wat2wasm((WAT_DIR / f"{name}.wat").read_text()))
            made[name] = Program.from_path(path)
        return made[name]

    return make


@pytest.fixture
def sigint_reaches_children() -> Iterator[None]:
    """Children started in this test react to SIGINT as from a terminal's Ctrl-C.

    A run started as a background job of a non-interactive shell (``cmd &``,
    ``nohup``) has SIGINT ignored, and an ignored signal stays ignored across
    exec, so gflite would never see the Ctrl-C a test sends it. A handler set
    here is reset to the default action in each child, which Python then turns
    into KeyboardInterrupt."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.fixture(scope="session")
def native_flite() -> str:
    """The path of native Debian flite, the oracle every exactness test compares with."""
    path = shutil.which("flite")
    if path is None:
        pytest.fail("native flite (the test oracle) is not installed; run scripts/setup.sh --dev")
    return path


@pytest.fixture(autouse=True)
def _tracing_stops_when_safe() -> Iterator[None]:
    """tests/memory.py: tracemalloc is stopped only once no other thread can allocate."""
    yield
    from memory import stop_when_alone

    stop_when_alone()

