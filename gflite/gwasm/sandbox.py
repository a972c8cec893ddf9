"""Run one subtask attempt of a WASI command under wasmtime, in this process.

The guest sees only a fresh private working directory (preopened as ".")
holding copies of its subtask's inputs; it gets its argv and nothing else: no
environment variables, no network, no host stdio (stdout and stderr are
captured up to ``Limits.stdio_bytes`` each). Afterwards the listed outputs are
read back without following symlinks, so a guest cannot smuggle host files out
through a link it made.

What this module enforces in-process: linear memory and table size (wasmtime
store limits) and the total output size (checked after the run). Wall time and
an output flood *while* the guest runs are enforced by the executor, which runs
guests in worker processes it can kill; keeping epoch interruption and fuel off
leaves the compiled code free of checks (measured on flite.wasm: epoch checks
cost 13-85 %, fuel 15-180 %, depending on the voice).

Guest behaviour never raises: every failure is a ``SubtaskResult`` with
``ok=False`` and a one-line ``reason``. wasmtime is imported on first use, so
the requestor can use the path helpers here without loading the runtime.
"""
from __future__ import annotations

import atexit
import errno
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gflite.errors import GfliteError
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult

if TYPE_CHECKING:
    import wasmtime

    from gflite.gwasm.cache import ModuleCache

# What the guest sees as argv[0]. A constant, so a result never depends on
# what the requestor named the .wasm file (results are cached by content).
# It is the name Emscripten gave programs in the original gWASM.
ARGV0 = "./this.program"

# Determinism: NaN bit patterns canonicalised (unless a program opts out, see
# Program.nan_canonicalization), relaxed SIMD pinned to its deterministic
# lowering, no threads. Part of the compiled-module cache key.
CONFIG_ID = "gwasm-1;relaxed-simd-deterministic;no-threads"

# A table bomb (table.grow to billions of entries) would be host memory the
# linear-memory limit does not see; 8 bytes an entry, so this is 8 MiB.
MAX_TABLE_ELEMENTS = 1 << 20

_lock = threading.Lock()
_engines: dict[bool, tuple[wasmtime.Engine, wasmtime.Linker]] = {}
_module_caches: dict[tuple[str, bool], ModuleCache] = {}
_pres: dict[tuple[str, bool], wasmtime.InstancePre] = {}


def _engine_and_linker(nan_canonicalization: bool = True) -> tuple[wasmtime.Engine, wasmtime.Linker]:
    with _lock:
        pair = _engines.get(nan_canonicalization)
        if pair is None:
            import wasmtime

            config = wasmtime.Config()
            config.cranelift_nan_canonicalization = nan_canonicalization
            config.wasm_relaxed_simd_deterministic = True
            config.wasm_threads = False
            config.shared_memory = False
            eng = wasmtime.Engine(config)
            linker = wasmtime.Linker(eng)
            linker.define_wasi()
            if not _engines:
                atexit.register(_release)
            pair = _engines[nan_canonicalization] = (eng, linker)
        return pair


def engine(nan_canonicalization: bool = True) -> wasmtime.Engine:
    """This process's Engine for that NaN setting, configured for deterministic execution."""
    return _engine_and_linker(nan_canonicalization)[0]


def _release() -> None:
    """Drop our wasmtime objects at exit, while wasmtime's module is still intact
    (left to interpreter teardown, their finalisers print errors)."""
    with _lock:
        _pres.clear()
        _module_caches.clear()
        _engines.clear()


def module_cache(nan_canonicalization: bool = True) -> ModuleCache:
    """The compiled-module cache for the current cache directory and NaN setting."""
    from gflite.gwasm.cache import ModuleCache, cache_dir

    eng = engine(nan_canonicalization)
    root = cache_dir()
    config_id = f"{CONFIG_ID};{'nan-canonicalization' if nan_canonicalization else 'nan-native'}"
    with _lock:
        cache = _module_caches.get((str(root), nan_canonicalization))
        if cache is None:
            cache = _module_caches[(str(root), nan_canonicalization)] = ModuleCache(eng, config_id, root)
        return cache


def load_module(program: Program) -> wasmtime.Module:
    """Compile ``program`` or load it from the module cache; raises GfliteError."""
    return module_cache(program.nan_canonicalization).load(program)


def _instance_pre(program: Program) -> wasmtime.InstancePre:
    module = load_module(program)
    _, linker = _engine_and_linker(program.nan_canonicalization)
    key = (program.sha256, program.nan_canonicalization)
    with _lock:
        pre = _pres.get(key)
        if pre is None:
            pre = _pres[key] = linker.instantiate_pre(module)
        return pre


# --- the guest's directory ---------------------------------------------------


def check_relpath(rel: str) -> str:
    """Return ``rel`` if it is a plain relative path inside a directory, else raise ValueError."""
    if not isinstance(rel, str) or not rel or "\0" in rel or "\\" in rel:
        raise ValueError(f"bad path {rel!r}")
    if rel.startswith("/") or any(part in ("", ".", "..") for part in rel.split("/")):
        raise ValueError(f"path {rel!r} must be relative, without '..', '.' or empty parts")
    return rel


def materialise(subtask: Subtask, workdir: Path) -> int:
    """Write the subtask's inputs into ``workdir`` (read-only) and create the
    parents of its outputs. Returns the bytes written; raises ValueError for a
    bad path."""
    total = 0
    for rel, data in subtask.inputs:
        path = workdir / check_relpath(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        total += len(data)
    for rel in subtask.outputs:
        (workdir / check_relpath(rel)).parent.mkdir(parents=True, exist_ok=True)
    return total


def dir_size(path: Path | str) -> int:
    """Bytes in regular files under ``path``, never following symlinks.

    Tolerates the tree changing underneath (the guest may be writing)."""
    total = 0
    stack = [os.fspath(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _read_output(workdir: Path, rel: str, budget: int) -> bytes | str:
    """The bytes of output ``rel``, or a reason string. Walks down from
    ``workdir`` with O_NOFOLLOW at every level, so no symlink is ever followed."""
    parts = rel.split("/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            sub = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        # O_NONBLOCK: were it a FIFO, opening must not hang the host.
        file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        return f"missing output file {rel}"
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return f"output file {rel} is a symlink or not a file"
        return f"cannot read output file {rel}: {exc.strerror}"
    finally:
        os.close(fd)
    try:
        st = os.fstat(file_fd)
        if not stat.S_ISREG(st.st_mode):
            return f"output file {rel} is not a regular file"
        if st.st_size > budget:
            return "output limit exceeded"
        with os.fdopen(file_fd, "rb", closefd=False) as f:
            data = f.read(budget + 1)
        return "output limit exceeded" if len(data) > budget else data
    finally:
        os.close(file_fd)


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def output_limit_reason(limits: Limits) -> str:
    return f"output limit of {format_bytes(limits.output_bytes)} exceeded"


class _Capture:
    """A stdout/stderr sink that keeps the first ``limit`` bytes and drops the rest,
    so a guest printing forever costs no disk and bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def __call__(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]


# --- running -----------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _trap_reason(trap: wasmtime.Trap) -> str:
    detail = _first_line(trap).removeprefix("wasm trap: ")
    code = trap.trap_code
    return f"trap: {code.name.lower().replace('_', ' ')}: {detail}" if code else f"trap: {detail}"


def _memory_in_use(instance: wasmtime.Instance, store: wasmtime.Store) -> int:
    import wasmtime

    used = 0
    for item in instance.exports(store).by_index:
        if isinstance(item, wasmtime.Memory):
            used += item.data_len(store)
    return used


def execute(
    program: Program, subtask: Subtask, limits: Limits, workdir: Path, *, provider: str = "local"
) -> SubtaskResult:
    """Run ``subtask`` in ``workdir``, which already holds its inputs (see
    :func:`materialise`), and collect its outputs from there."""
    import wasmtime

    # CPU-seconds, what providers bill: the guest runs on this thread, and
    # wasmtime's WASI I/O may use helper threads of this process, so the
    # process's CPU time (executors run one guest per process).
    started = time.process_time()

    def result(ok: bool, reason: str = "", **kw: object) -> SubtaskResult:
        return SubtaskResult(
            index=subtask.index,
            name=subtask.name,
            ok=ok,
            reason=reason,
            provider=provider,
            seconds=time.process_time() - started,
            failure=None if ok else Failure.GUEST,  # the same input fails the same way
            **kw,  # type: ignore[arg-type]
        )

    try:
        pre = _instance_pre(program)
    except GfliteError as exc:
        return result(False, f"cannot load program: {exc}")
    except wasmtime.WasmtimeError as exc:
        return result(False, f"cannot link program: {_first_line(exc)}")
    baseline = dir_size(workdir)
    memory_reason = f"memory limit of {format_bytes(limits.memory_bytes)} exceeded"

    store = wasmtime.Store(engine(program.nan_canonicalization))
    store.set_limits(memory_size=limits.memory_bytes, table_elements=MAX_TABLE_ELEMENTS)
    stdout, stderr = _Capture(limits.stdio_bytes), _Capture(limits.stdio_bytes)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [ARGV0, *subtask.args]
    wasi.stdout_custom = stdout
    wasi.stderr_custom = stderr
    wasi.preopen_dir(str(workdir), ".", True)
    store.set_wasi(wasi)

    try:
        instance = pre.instantiate(store)
    except wasmtime.Trap as exc:
        return result(False, f"start-up {_trap_reason(exc)}")
    except wasmtime.WasmtimeError as exc:
        msg = _first_line(exc)
        if "exceeds memory limits" in msg or "table" in msg and "limit" in msg:
            return result(False, f"{memory_reason} ({msg})")
        return result(False, f"cannot instantiate program: {msg}")

    exit_code: int | None = None
    reason = ""
    try:
        start = instance.exports(store)["_start"]
    except KeyError:
        return result(False, "program has no _start function (not a WASI command)")
    try:
        start(store)  # type: ignore[operator]
        exit_code = 0
    except wasmtime.ExitTrap as exc:
        exit_code = exc.code
        if exit_code:
            reason = f"exit code {exit_code}"
    except wasmtime.Trap as exc:
        reason = _trap_reason(exc)
    except wasmtime.WasmtimeError as exc:
        reason = f"error: {_first_line(exc)}"
    captured = {"stdout": bytes(stdout.data), "stderr": bytes(stderr.data), "exit_code": exit_code}

    if reason:
        # The store refuses memory.grow past the limit; a guest then aborts or
        # traps. Name the cause when the guest died right at the limit.
        if _memory_in_use(instance, store) + 65536 > limits.memory_bytes:
            reason = f"{memory_reason} ({reason})"
        return result(False, reason, **captured)
    if dir_size(workdir) - baseline > limits.output_bytes:
        return result(False, output_limit_reason(limits), **captured)

    outputs = []
    budget = limits.output_bytes
    for rel in subtask.outputs:
        data = _read_output(workdir, check_relpath(rel), budget)
        if isinstance(data, str):
            if data == "output limit exceeded":
                data = output_limit_reason(limits)
            return result(False, data, **captured)
        budget -= len(data)
        outputs.append((rel, data))
    return result(True, outputs=tuple(outputs), **captured)


def run_subtask(
    program: Program, subtask: Subtask, limits: Limits, *, provider: str = "local"
) -> SubtaskResult:
    """Run one attempt of ``subtask`` in this process, in a fresh private
    directory that is removed afterwards.

    Memory and output size are enforced; wall time is not (use an executor for
    that), so call this only with guests you expect to finish.
    """
    workdir = Path(tempfile.mkdtemp(prefix="gwasm-"))
    try:
        try:
            materialise(subtask, workdir)
        except (ValueError, OSError) as exc:  # e.g. "../x", or "a" both a file and a folder
            return SubtaskResult(
                index=subtask.index, name=subtask.name, ok=False, reason=f"bad input: {exc}", provider=provider,
                failure=Failure.BAD_INPUT,
            )
        return execute(program, subtask, limits, workdir, provider=provider)
    finally:
        remove_tree(workdir)


def remove_tree(path: Path) -> None:
    """Remove a guest's directory. Read-only inputs need no special care: unlinking
    depends on the directory's mode, and the guest cannot change modes."""
    shutil.rmtree(path, ignore_errors=True)
