"""A book to an audiobook through the gflite CLI: what chapters, pauses and the
m4b path cost.

    python bench/bench_book.py [--corpus PATH] [--chars N] [--voice V]

Makes a Markdown book from the first N characters of the benchmark book (a
chapter at each ``CHAPTER`` line, paragraphs at blank lines), then times, in
one run, each with an empty cache: the book to .wav without pauses, with the
default pauses (a chunk cut at every paragraph), to .m4b as gflite writes it
(AAC encoded while synthesising, then chapters added by stream copy), and the
alternative: .wav first, then encoded with chapters by ``write_audiobook``.
Prints a table; ratios only mean something within one run.
"""
from __future__ import annotations

import argparse
import os
import re
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
    ap.add_argument("--chars", type=int, default=60000)
    ap.add_argument("--voice", default="kal16")
    args = ap.parse_args()
    text = Path(args.corpus).read_text(encoding="utf-8", errors="replace")[: args.chars]
    md = re.sub(r"^(CHAPTER [^\n]*)$", r"## \1", text.replace("\r\n", "\n"), flags=re.M)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        book = work / "book.md"
        book.write_text("# Bench Book\n\n" + md, "utf-8")

        def run(*extra: str) -> tuple[float, str]:
            env = dict(os.environ, GFLITE_CACHE_DIR=str(work / f"cache{time.monotonic_ns()}"))
            t = time.monotonic()
            done = subprocess.run([*GFLITE, str(book), "-voice", args.voice, *extra], env=env,
                                  capture_output=True, text=True, check=True)
            return time.monotonic() - t, done.stderr.strip().splitlines()[-1]

        rows = []
        rows.append(("wav, no pauses", *run("--paragraph-silence", "0", "--chapter-silence", "0",
                                            "-o", str(work / "a.wav"))))
        rows.append(("wav, default pauses", *run("-o", str(work / "b.wav"))))
        rows.append(("m4b (stream AAC + copy)", *run("-o", str(work / "c.m4b"))))
        took, line = run("-o", str(work / "d.wav"))
        sys.path.insert(0, str(ROOT))
        from gflite.audiobook import ChapterMark, write_audiobook

        marks = [ChapterMark(0, "one")]  # the encode dominates; one mark is enough to time it
        t = time.monotonic()
        write_audiobook(work / "d.wav", work / "d.m4b", marks)
        rows.append(("m4b (wav, then encode)", took + time.monotonic() - t, line))
    print(f"{'run':28} {'seconds':>8}  gflite's summary")
    for name, secs, line in rows:
        print(f"{name:28} {secs:8.1f}  {line}")


if __name__ == "__main__":
    main()
