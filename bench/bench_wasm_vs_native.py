"""flite.wasm under the gwasm sandbox vs Debian's native flite, per voice.

    python bench/bench_wasm_vs_native.py [--corpus [PATH]] [--paragraphs N] [--repeat R] [--wasm PATH ...]

Both sides synthesise the same text to a WAV file, in the same run, alternating
so that load from other processes hits both alike; each figure is the median
of R timed runs after one untimed warm-up. The wasm time is the whole
run_subtask call (instantiation, module load or compile, I/O); the native time
is the whole process. The outputs are also checked to be byte-identical.

``--wasm PATH`` adds a column for another build of flite.wasm (for example one
made with other compiler flags), timed in the same rounds as the shipped one.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import CORPUS, excerpt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # Runnable from a checkout that is not pip-installed.
    sys.path.insert(0, str(REPO))

from gflite import flitewasm  # noqa: E402
from gflite.gwasm.sandbox import run_subtask  # noqa: E402
from gflite.gwasm.subtask import Limits, Program, Subtask  # noqa: E402


# Written for this benchmark: a few paragraphs of ordinary prose.
DEFAULT_TEXT = """\
On the first clear morning of spring the ferry left the harbour at seven,
carrying a dozen passengers, two bicycles and a crate of oranges bound for the
island shop. The captain, who had made the crossing for thirty years, said the
water had never been so still.

Halfway across, a school of dolphins came alongside and stayed with the boat for
several minutes. The children on board ran from one rail to the other, and even
the oldest passengers put down their newspapers to watch.

When they reached the island the tide was low, so everyone climbed a long
wooden ladder to the quay. The shopkeeper was waiting with a barrow for the
oranges, and she asked whether anyone had seen the dolphins. Everyone had.

By the afternoon the wind had risen, the sky had clouded over, and the return
crossing was rough enough that nobody stood at the rail at all.
"""


def time_wasm(program: Program, voice: str, text: bytes) -> tuple[float, bytes]:
    subtask = Subtask(
        index=0,
        name=f"bench-{voice}",
        args=("-voice", voice, "-f", "in.txt", "-o", "out.wav"),
        inputs=(("in.txt", text),),
        outputs=("out.wav",),
    )
    t0 = time.perf_counter()
    result = run_subtask(program, subtask, Limits())
    elapsed = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"flite.wasm failed for {voice}: {result.reason}")
    return elapsed, result.outputs[0][1]


def time_native(voice: str, text: bytes, workdir: Path) -> tuple[float, bytes]:
    (workdir / "in.txt").write_bytes(text)
    t0 = time.perf_counter()
    subprocess.run(
        ["flite", "-voice", voice, "-f", "in.txt", "-o", "out.wav"], cwd=workdir, check=True
    )
    elapsed = time.perf_counter() - t0
    return elapsed, (workdir / "out.wav").read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", nargs="?", const=CORPUS, type=Path, default=None,
                    help=f"take the text from a corpus file (default {CORPUS})")
    ap.add_argument("--paragraphs", type=int, default=4, help="paragraphs of the corpus to use")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per voice and side")
    ap.add_argument("--voices", nargs="+", default=list(flitewasm.VOICES), choices=flitewasm.VOICES)
    ap.add_argument("--wasm", nargs="+", type=Path, default=[], metavar="PATH",
                    help="also time these builds of flite.wasm (same NaN setting as the shipped one)")
    args = ap.parse_args()
    shipped = flitewasm.program()
    programs = [shipped] + [
        Program.from_path(p, nan_canonicalization=shipped.nan_canonicalization) for p in args.wasm
    ]

    text = excerpt(args.corpus, args.paragraphs) if args.corpus else DEFAULT_TEXT
    data = text.encode("utf-8")
    print(f"text: {len(text.split())} words, {len(data)} bytes; "
          f"median of {args.repeat} runs after a warm-up; flite.wasm {flitewasm.PINNED_SHA256[:12]}")
    others = "".join(f"{'wasm' + str(i) + ' s':>10}{'/native':>9} same" for i in range(1, len(programs)))
    for i, p in enumerate(args.wasm, 1):
        print(f"wasm{i}: {p} ({programs[i].sha256[:12]})")
    print(f"{'voice':<7}{'native s':>10}{'wasm s':>10}{'wasm/native':>13}{'audio s':>9}  same{others}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for voice in args.voices:
            time_native(voice, data, workdir)
            for program in programs:
                time_wasm(program, voice, data)
            native_t: list[float] = []
            wasm_t: list[list[float]] = [[] for _ in programs]
            wavs: list[bytes] = [b""] * len(programs)
            for _ in range(args.repeat):
                t, native_wav = time_native(voice, data, workdir)
                native_t.append(t)
                for i, program in enumerate(programs):
                    t, wavs[i] = time_wasm(program, voice, data)
                    wasm_t[i].append(t)
            n = statistics.median(native_t)
            w = [statistics.median(ts) for ts in wasm_t]
            # 16-bit mono: bytes after the 44-byte header / 2 / rate.
            rate = int.from_bytes(native_wav[24:28], "little")
            audio = (len(native_wav) - 44) / 2 / rate
            same = ["yes" if wav == native_wav else "NO" for wav in wavs]
            extra = "".join(f"{w[i]:>10.3f}{w[i] / n:>8.2f}x {same[i]:>4}" for i in range(1, len(programs)))
            print(f"{voice:<7}{n:>10.3f}{w[0]:>10.3f}{w[0] / n:>12.2f}x{audio:>9.1f}  {same[0]:<4}{extra}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
