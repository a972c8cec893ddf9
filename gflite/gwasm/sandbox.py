"""Run one subtask attempt of a WASI command under wasmtime, in this process.

The guest sees only a fresh private working directory (preopened as ".")
holding copies of its subtask's inputs; it gets its argv and nothing else: no
environment variables, no network, no host stdio (stdout and stderr are
captured up to ``Limits.stdio_bytes`` each). Afterwards the listed outputs are
read back without following symlinks, so a guest cannot smuggle host files out
through a link it made.

What this module enforces in-process: the whole guest's memory (one instance,
one linear memory, one table, each capped by wasmtime store limits; no
multi-memory, GC or other proposal that would add more), the size of the
module before it is compiled, and the output tree's bytes, entries and depth
(checked after the run). Wall time, compilation memory and an output flood
*while* the guest runs are enforced by the executor, which runs guests in
worker processes it caps (RLIMIT_AS, see :func:`compile_headroom` and
:func:`run_headroom`) and
can kill; keeping epoch interruption and fuel off leaves the compiled code
free of checks (measured on flite.wasm: epoch checks cost 13-85 %, fuel
15-180 %, depending on the voice).

Determinism: the guest's clocks and random source are virtual (see
:mod:`guestworld`), so the same subtask gives the same bytes on every provider.

Guest behaviour never raises: every failure is a ``SubtaskResult`` with
``ok=False``, a ``failure`` kind and a one-line ``reason``. wasmtime is
imported on first use, so the requestor can use the path helpers here without
loading the runtime.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gflite.errors import GfliteError
from gflite.gwasm import guestfs, guestworld, leftovers
from gflite.gwasm.spool import OutputFile, Spool, release
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult

if TYPE_CHECKING:
    import wasmtime

    from gflite.gwasm.cache import ModuleCache

# What the guest sees as argv[0]. A constant, so a result never depends on
# what the requestor named the .wasm file (results are cached by content).
# It is the name Emscripten gave programs in the original gWASM.
ARGV0 = "./this.program"

# A table bomb (table.grow to billions of entries) would be host memory the
# linear-memory limit does not see; 8 bytes an entry, so this is 8 MiB.
MAX_TABLE_ELEMENTS = 1 << 20
_TABLE_ENTRY_BYTES = 8

# Modules larger than this are refused before compilation (flite.wasm, all
# voices built in, is 14 MB). Compilation itself is bounded by the worker's
# address-space cap: see compile_headroom.
MAX_WASM_BYTES = 64 << 20

# The one linear memory's address space: 4 GiB reserved plus a guard region,
# so 32-bit loads and stores need no bounds checks. Reserved, not resident:
# the store limit caps what the guest can touch, the worker's RLIMIT_AS counts
# the reservation once (one memory per store).
MEMORY_RESERVATION = 4 << 30
MEMORY_GUARD = 32 << 20

# Address space a worker may add while compiling a module (flite.wasm takes
# about 260 MB with two compiler threads) and, apart, while running the guest
# (wasmtime's runtime state and the host's own bookkeeping). A module needing
# more to compile is refused by the operating system, not swapped in.
COMPILE_HEADROOM = 768 << 20
RUN_HEADROOM = 256 << 20

# Determinism: NaN bit patterns canonicalised (unless a program opts out, see
# Program.nan_canonicalization), relaxed SIMD pinned to its deterministic
# lowering, no threads, no proposal beyond what a C program compiled to WASI
# uses, one memory; virtual clocks and random. Part of the compiled-module
# cache key: change it whenever the engine configuration changes.
CONFIG_ID = (
    "gwasm-2;relaxed-simd-deterministic;no-threads;no-multi-memory;no-gc;no-exceptions;"
    "no-memory64;no-tail-call;no-component-model;"
    f"reservation-{MEMORY_RESERVATION};guard-{MEMORY_GUARD};virtual-clock-random"
)

_lock = threading.Lock()
_engines: dict[bool, tuple[wasmtime.Engine, wasmtime.Linker]] = {}
_module_caches: dict[tuple[str, bool], ModuleCache] = {}
_pres: dict[tuple[str, bool], wasmtime.InstancePre] = {}


class ProgramTooLargeError(GfliteError):
    """The module is larger than MAX_WASM_BYTES (never compiled)."""


def compile_headroom() -> int:
    """Bytes of address space a worker process may add while it loads or
    compiles a program. Compilation happens before any memory is reserved, so
    this is its cap, not the memory reservation's."""
    return COMPILE_HEADROOM


def run_headroom(limits: Limits) -> int:
    """Bytes of address space a worker process may add while it runs one guest
    under ``limits``: the one memory's reservation and guard, the table's cap,
    the outputs and captured stdio it reads back, and wasmtime's own state.
    What the guest touches inside the reservation is capped by the store
    limits, so resident memory stays under ``memory_bytes`` plus the rest."""
    table = MAX_TABLE_ELEMENTS * _TABLE_ENTRY_BYTES
    readback = limits.output_bytes + 2 * limits.stdio_bytes
    return MEMORY_RESERVATION + MEMORY_GUARD + table + readback + RUN_HEADROOM


def _config(nan_canonicalization: bool) -> wasmtime.Config:
    import wasmtime

    config = wasmtime.Config()
    config.cranelift_nan_canonicalization = nan_canonicalization
    config.wasm_relaxed_simd_deterministic = True
    config.wasm_threads = False
    config.shared_memory = False
    # Everything a guest could use to hold host memory the limits do not see
    # (several memories, GC heaps) or that nothing we run needs.
    config.wasm_multi_memory = False
    config.wasm_gc = False
    config.wasm_function_references = False
    config.gc_support = False
    config.wasm_exceptions = False
    config.wasm_memory64 = False
    config.wasm_tail_call = False
    config.wasm_custom_page_sizes = False
    config.wasm_wide_arithmetic = False
    config.wasm_stack_switching = False
    config.wasm_component_model = False
    config.memory_reservation = MEMORY_RESERVATION
    config.memory_guard_size = MEMORY_GUARD
    return config


def _engine_and_linker(nan_canonicalization: bool = True) -> tuple[wasmtime.Engine, wasmtime.Linker]:
    with _lock:
        pair = _engines.get(nan_canonicalization)
        if pair is None:
            import wasmtime

            eng = wasmtime.Engine(_config(nan_canonicalization))
            linker = wasmtime.Linker(eng)
            linker.define_wasi()
            guestworld.define(linker)
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
    """Compile ``program`` or load it from the module cache; raises GfliteError
    (ProgramTooLargeError past MAX_WASM_BYTES)."""
    try:
        size = os.stat(program.path).st_size
    except OSError as exc:
        raise GfliteError(f"cannot read {program.path}: {exc.strerror or exc}") from None
    if size > MAX_WASM_BYTES:
        raise ProgramTooLargeError(
            f"{program.path} is {size} bytes, over the {format_bytes(MAX_WASM_BYTES)} module size limit"
        )
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


# --- the guest's directory (see guestfs) ---------------------------------------

check_relpath = guestfs.check_relpath
materialise = guestfs.materialise
remove_tree = guestfs.remove_tree
format_bytes = guestfs.format_bytes


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


def _limit_error(msg: str) -> bool:
    """True if wasmtime refused instantiation because of a store limit."""
    return "limit" in msg and any(word in msg for word in ("memor", "table", "instance", "resource"))


def load_failure(exc: Exception) -> tuple[str, Failure]:
    """The reason and failure kind for an exception from loading a program."""
    import wasmtime

    if isinstance(exc, ProgramTooLargeError):
        return f"cannot load program: {exc}", Failure.LIMIT
    if isinstance(exc, MemoryError):
        return "cannot load program: compiling it needs more memory than the cap for compiling", Failure.LIMIT
    if isinstance(exc, GfliteError):
        return f"cannot load program: {exc}", Failure.GUEST
    if isinstance(exc, wasmtime.WasmtimeError):
        return f"cannot link program: {_first_line(exc)}", Failure.GUEST
    raise exc


def execute(
    program: Program, subtask: Subtask, limits: Limits, workdir: Path, *, provider: str = "local",
    spool: str | None = None,
) -> SubtaskResult:
    """Run ``subtask`` in ``workdir``, which already holds its inputs (see
    :func:`materialise`), and collect its outputs from there: as bytes, or,
    given the directory of a :class:`~gflite.gwasm.spool.Spool`, moved into it
    and returned as :class:`~gflite.gwasm.spool.OutputFile`s (never read whole)."""
    import wasmtime

    # CPU-seconds, what providers bill, from the guest's start (loading the
    # program is the provider's business): the guest runs on this thread, and
    # wasmtime's WASI I/O may use helper threads of this process, so the
    # process's CPU time (executors run one guest per process).
    started: float | None = None

    def result(ok: bool, reason: str = "", failure: Failure | None = None, **kw: object) -> SubtaskResult:
        return SubtaskResult(
            index=subtask.index,
            name=subtask.name,
            ok=ok,
            reason=reason,
            provider=provider,
            seconds=0.0 if started is None else time.process_time() - started,
            failure=None if ok else failure or Failure.GUEST,
            **kw,  # type: ignore[arg-type]
        )

    try:
        pre = _instance_pre(program)
    except Exception as exc:
        return result(False, *load_failure(exc))
    baseline = guestfs.usage(workdir)
    memory_reason = f"memory limit of {format_bytes(limits.memory_bytes)} exceeded"

    store = wasmtime.Store(engine(program.nan_canonicalization))
    store.set_limits(
        memory_size=limits.memory_bytes,
        table_elements=MAX_TABLE_ELEMENTS,
        instances=1,
        tables=1,
        memories=1,
    )
    stdout, stderr = _Capture(limits.stdio_bytes), _Capture(limits.stdio_bytes)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [ARGV0, *subtask.args]
    wasi.stdout_custom = stdout
    wasi.stderr_custom = stderr
    wasi.preopen_dir(str(workdir), ".", True)
    store.set_wasi(wasi)
    guestworld.enter(subtask.key(program).encode())

    started = time.process_time()
    try:
        instance = pre.instantiate(store)
    except wasmtime.Trap as exc:
        return result(False, f"start-up {_trap_reason(exc)}")
    except wasmtime.WasmtimeError as exc:
        msg = _first_line(exc)
        if "count too high" in msg:
            return result(False, f"a guest may have one instance, one memory and one table ({msg})", Failure.LIMIT)
        if _limit_error(msg):
            return result(False, f"{memory_reason} ({msg})", Failure.LIMIT)
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
            return result(False, f"{memory_reason} ({reason})", Failure.LIMIT, **captured)
        return result(False, reason, Failure.GUEST, **captured)
    over = guestfs.usage(workdir, baseline, limits).over(baseline, limits)
    if over:
        return result(False, over, Failure.LIMIT, **captured)

    outputs: list = []
    budget = limits.output_bytes
    taken = None if spool is None else Spool.at(spool)
    for rel in subtask.outputs:
        if taken is None:
            data = guestfs.read_output(workdir, check_relpath(rel), budget)
        else:
            data = guestfs.take_output(workdir, check_relpath(rel), budget, taken)
        if isinstance(data, str):
            release(tuple(outputs))
            if data == "output limit exceeded":
                return result(False, output_limit_reason(limits), Failure.LIMIT, **captured)
            return result(False, data, Failure.GUEST, **captured)
        budget -= data.size if isinstance(data, OutputFile) else len(data)
        outputs.append((rel, data))
    return result(True, outputs=tuple(outputs), **captured)


def run_subtask(
    program: Program, subtask: Subtask, limits: Limits, *, provider: str = "local"
) -> SubtaskResult:
    """Run one attempt of ``subtask`` in this process, in a fresh private
    directory that is removed afterwards (if it cannot be, the attempt fails).

    Memory and output size are enforced; wall time and compilation memory are
    not (use an executor for that), so call this only with programs you trust
    to finish.
    """
    workdir = Path(tempfile.mkdtemp(prefix=leftovers.prefix("run")))
    try:
        materialise(subtask, workdir)
    except (ValueError, OSError) as exc:  # e.g. "../x", or "a" both a file and a folder
        result = SubtaskResult.failed(subtask, f"bad input: {exc}", Failure.BAD_INPUT, provider=provider)
    else:
        try:
            result = execute(program, subtask, limits, workdir, provider=provider)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_tree(workdir)
            raise
    try:
        remove_tree(workdir)
    except OSError as exc:
        return SubtaskResult.failed(subtask, f"cannot remove the guest's directory {workdir}: {exc}",
                                    Failure.LOST, provider=provider)
    return result
