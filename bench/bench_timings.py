"""What read-along costs: the benchmark book's first N characters to WAV, with
and without ``--timings``/``--subtitles``.

    python bench/bench_timings.py [--corpus PATH] [--chars N] [--voice V]

Each run starts with an empty cache. Prints a table; ratios only mean
something within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import CORPUS

ROOT = Path(__file__).resolve().parent.parent

GFLITE = [sys.executable, "-m", "gflite"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--chars", type=int, default=60_000)
    ap.add_argument("--voice", default="kal16")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        src = d / "book.txt"
        src.write_text(Path(args.corpus).read_text("utf-8", "replace")[: args.chars], "utf-8")
        rows = []
        for label, extra in (("WAV", []), ("WAV + --timings + --subtitles .vtt",
                                            ["--timings", str(d / "t.json"), "--subtitles", str(d / "s.vtt")])):
            env = dict(os.environ, GFLITE_CACHE_DIR=str(d / f"cache-{len(rows)}"))
            t0 = time.monotonic()
            subprocess.run([*GFLITE, str(src), "-o", str(d / "out.wav"), "-voice", args.voice, "-q", *extra],
                           check=True, env=env)
            rows.append((label, time.monotonic() - t0))
        words = len(json.loads((d / "t.json").read_text())["words"])
        size = (d / "t.json").stat().st_size
    print(f"{args.chars} characters, {args.voice}, {words} words ({size} bytes of JSON)")
    print(f"{'run':40} {'seconds':>8} {'ratio':>6}")
    for label, secs in rows:
        print(f"{label:40} {secs:8.1f} {secs / rows[0][1]:6.2f}")


if __name__ == "__main__":
    main()
