"""The guest's virtual clock and random source.

WASI's ``clock_time_get``, ``clock_res_get`` and ``random_get`` are shadowed in
the linker by these: every clock starts at a fixed epoch (the realtime clock at
2019-01-01T00:00:00Z, the others at 0) and each reading is one millisecond
after the previous one, whatever the host's time; random bytes are a SHA-256
counter stream seeded with the subtask's key. The same subtask then reads the
same time and the same random bytes on every provider, so its outputs agree.
"""
from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING

from gflite.gwasm.guestfs import FIXED_MTIME_NS

if TYPE_CHECKING:
    import wasmtime

EPOCH_NS = FIXED_MTIME_NS  # input files carry the same time
TICK_NS = 1_000_000  # each reading is one millisecond after the previous one

_ERRNO_FAULT = 21
_ERRNO_INVAL = 28
_CLOCKS = 4  # realtime, monotonic, process CPU time, thread CPU time


class VirtualWorld:
    """One guest's clock and random source: a function of its subtask's key only."""

    def __init__(self, seed: bytes) -> None:
        self.seed = seed
        self.readings = 0
        self.block = 0
        self.pool = b""

    def now(self, clock: int) -> int:
        self.readings += 1
        since = self.readings * TICK_NS
        return EPOCH_NS + since if clock == 0 else since

    def random(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if not self.pool:
                self.pool = hashlib.sha256(self.seed + self.block.to_bytes(8, "little")).digest()
                self.block += 1
            take = min(n - len(out), len(self.pool))
            out += self.pool[:take]
            self.pool = self.pool[take:]
        return bytes(out)


# The running guest's world. One guest runs per thread at a time; the host
# functions below are shared by every store of the engine's linker.
_current = threading.local()


_U32 = 0xFFFFFFFF  # wasm passes i32 as signed; WASI means unsigned


def _write_guest(caller: wasmtime.Caller, data: bytes, ptr: int) -> int:
    import wasmtime

    ptr &= _U32
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory) or ptr + len(data) > memory.data_len(caller):
        return _ERRNO_FAULT
    memory.write(caller, data, ptr)
    return 0


def _clock_time_get(caller: wasmtime.Caller, clock: int, _precision: int, ptr: int) -> int:
    if not 0 <= clock & _U32 < _CLOCKS:
        return _ERRNO_INVAL
    return _write_guest(caller, _current.world.now(clock & _U32).to_bytes(8, "little"), ptr)


def _clock_res_get(caller: wasmtime.Caller, clock: int, ptr: int) -> int:
    if not 0 <= clock & _U32 < _CLOCKS:
        return _ERRNO_INVAL
    return _write_guest(caller, TICK_NS.to_bytes(8, "little"), ptr)


def _random_get(caller: wasmtime.Caller, ptr: int, length: int) -> int:
    import wasmtime

    ptr, length = ptr & _U32, length & _U32
    memory = caller.get("memory")
    if not isinstance(memory, wasmtime.Memory) or ptr + length > memory.data_len(caller):
        return _ERRNO_FAULT
    # In pieces: the host never holds more than 64 KiB of it at once.
    world = _current.world
    for offset in range(0, length, 1 << 16):
        memory.write(caller, world.random(min(1 << 16, length - offset)), ptr + offset)
    return 0


def define(linker: wasmtime.Linker) -> None:
    """Shadow WASI's clocks and random source with the guest's virtual ones."""
    import wasmtime

    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    linker.allow_shadowing = True
    wasi = "wasi_snapshot_preview1"
    linker.define_func(wasi, "clock_time_get", wasmtime.FuncType([i32, i64, i32], [i32]), _clock_time_get, True)
    linker.define_func(wasi, "clock_res_get", wasmtime.FuncType([i32, i32], [i32]), _clock_res_get, True)
    linker.define_func(wasi, "random_get", wasmtime.FuncType([i32, i32], [i32]), _random_get, True)
    linker.allow_shadowing = False


def enter(seed: bytes) -> None:
    """Make a fresh world, seeded with ``seed``, the one this thread's next guest sees."""
    _current.world = VirtualWorld(seed)
