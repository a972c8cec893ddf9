"""flite.wasm throughput with the sandbox's whole-guest limits against without them.

    python bench/bench_limits.py [--corpus [PATH]] [--paragraphs N] [--repeat R] [--voices V,V]

"with limits" is :func:`gflite.gwasm.sandbox.run_subtask` as providers run it:
one memory, one table, one instance, proposals off, the virtual clock and
random source, the fd-based output walk, and the worker's address-space cap
(RLIMIT_AS) around the run. "without" is the engine as it was before them: the
default wasmtime proposals, WASI's real clock and random, only a per-memory
store limit, no address-space cap. Both run the same synthesis in this
process, alternating, after one untimed warm-up each (which also compiles);
each figure is the fastest and the median of R runs, in wall seconds and in
this process's CPU seconds (the CPU figures are the less disturbed by other
processes on a shared machine). Outputs are checked to be identical.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from corpus import CORPUS, excerpt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import wasmtime  # noqa: E402

from gflite import flitewasm  # noqa: E402
from gflite.gwasm import guestfs, sandbox  # noqa: E402
from gflite.gwasm.workers import _address_space_cap  # noqa: E402
from gflite.gwasm.subtask import Limits, Program, Subtask  # noqa: E402

LIMITS = Limits()


class Unlimited:
    """The sandbox as it was before the whole-guest limits (for comparison only)."""

    def __init__(self, program: Program) -> None:
        config = wasmtime.Config()
        config.cranelift_nan_canonicalization = program.nan_canonicalization
        config.wasm_relaxed_simd_deterministic = True
        config.wasm_threads = False
        config.shared_memory = False
        self.engine = wasmtime.Engine(config)
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_wasi()
        self.pre = self.linker.instantiate_pre(wasmtime.Module.from_file(self.engine, str(program.path)))

    def run(self, subtask: Subtask) -> bytes:
        workdir = Path(tempfile.mkdtemp(prefix="bench-"))
        try:
            sandbox.materialise(subtask, workdir)
            store = wasmtime.Store(self.engine)
            store.set_limits(memory_size=LIMITS.memory_bytes, table_elements=sandbox.MAX_TABLE_ELEMENTS)
            wasi = wasmtime.WasiConfig()
            wasi.argv = [sandbox.ARGV0, *subtask.args]
            wasi.preopen_dir(str(workdir), ".", True)
            store.set_wasi(wasi)
            instance = self.pre.instantiate(store)
            try:
                instance.exports(store)["_start"](store)  # type: ignore[operator]
            except wasmtime.ExitTrap as exc:
                if exc.code:
                    raise SystemExit(f"flite.wasm exited {exc.code}") from None
            return (workdir / subtask.outputs[0]).read_bytes()
        finally:
            guestfs.remove_tree(workdir)


def limited(program: Program, subtask: Subtask) -> bytes:
    with _address_space_cap(sandbox.run_headroom(LIMITS)):
        result = sandbox.run_subtask(program, subtask, LIMITS)
    if not result.ok:
        raise SystemExit(f"flite.wasm failed: {result.reason}")
    return result.outputs[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", nargs="?", const=CORPUS, type=Path, default=CORPUS)
    parser.add_argument("--paragraphs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--voices", default="kal,slt")
    args = parser.parse_args()

    text = excerpt(args.corpus, args.paragraphs).encode()
    program = flitewasm.program()
    unlimited = Unlimited(program)
    print(f"text: {len(text)} bytes ({args.paragraphs} paragraphs); {args.repeat} runs each")
    print(f"{'voice':6} {'clock':5} {'fastest with s':>14} {'without s':>10} {'ratio':>6}   "
          f"{'median with':>11} {'without':>8} {'ratio':>6}")
    for voice in args.voices.split(","):
        subtask = Subtask(0, f"bench-{voice}", ("-voice", voice, "-f", "in.txt", "-o", "out.wav"),
                          (("in.txt", text),), ("out.wav",))
        if limited(program, subtask) != unlimited.run(subtask):  # warm-up; compiles both
            raise SystemExit(f"{voice}: outputs differ with and without limits")
        times: dict[tuple[str, str], list[float]] = {(side, clock): [] for side in ("with", "without")
                                                      for clock in ("wall", "cpu")}
        runs = [("with", lambda: limited(program, subtask)), ("without", lambda: unlimited.run(subtask))]
        for i in range(args.repeat):
            for name, run in runs if i % 2 == 0 else runs[::-1]:  # ABBA: neither side always goes first
                t0, c0 = time.perf_counter(), time.process_time()
                run()
                times[name, "wall"].append(time.perf_counter() - t0)
                times[name, "cpu"].append(time.process_time() - c0)
        for clock in ("wall", "cpu"):
            w, wo = min(times["with", clock]), min(times["without", clock])
            mw, mwo = statistics.median(times["with", clock]), statistics.median(times["without", clock])
            print(f"{voice:6} {clock:5} {w:14.3f} {wo:10.3f} {w / wo:6.3f}   {mw:11.3f} {mwo:8.3f} {mw / mwo:6.3f}")


if __name__ == "__main__":
    main()
