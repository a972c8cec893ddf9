"""Reading a book and writing its audiobook: how long each step takes.

    python bench/bench_audiobook.py [--corpus PATH] [--seconds S] [--rate HZ]

Builds an EPUB 3 in a temporary directory from the benchmark book (a chapter
at each ``CHAPTER`` line, a paragraph at each blank line), then times, in one
run: reading it (``read_book``), composing the text flite reads (``compose``),
encoding S seconds of 16-bit PCM to .m4b and .mp3 with one chapter mark per
chapter, and adding the marks to that .m4b's audio without re-encoding it. Prints a table; ratios only mean something within one run.
"""
from __future__ import annotations

import argparse
import html
import math
import re
import struct
import sys
import tempfile
import time
from pathlib import Path

from corpus import CORPUS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import epubs  # noqa: E402  (the tests' EPUB builder)

from gflite.audiobook import ChapterMark, Tags, add_chapters, write_audiobook  # noqa: E402
from gflite.books import read_book  # noqa: E402
from gflite.books.compose import compose  # noqa: E402
from gflite.stitching import WavFormat, wav_header  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--seconds", type=float, default=600.0, help="audio to encode (default 600)")
    ap.add_argument("--rate", type=int, default=16000)
    args = ap.parse_args()
    text = Path(args.corpus).read_text(encoding="utf-8", errors="replace")
    parts = re.split(r"\n(?=CHAPTER )", text)
    chapters = []
    for i, part in enumerate(parts):
        paras = [html.escape(" ".join(p.split())) for p in part.split("\n\n") if p.strip()]
        chapters.append((f"c{i}.xhtml", epubs.chapter(paras[0][:60], *paras[1:])))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        epub = epubs.write(work / "book.epub", epubs.members(3, chapters=chapters, cover=epubs.tiny_png()))
        t = time.perf_counter()
        book = read_book(epub)
        rows.append(("read_book (EPUB)", time.perf_counter() - t, f"{len(book.chapters)} chapters"))
        t = time.perf_counter()
        composed = compose(book)
        rows.append(("compose", time.perf_counter() - t, f"{len(composed.text.text):,} characters"))
        frames = int(args.seconds * args.rate)
        period = b"".join(struct.pack("<h", int(6000 * math.sin(2 * math.pi * i / 40))) for i in range(40))
        wav = work / "book.wav"
        with wav.open("wb") as f:
            f.write(wav_header(WavFormat(args.rate), frames * 2))
            f.write(period * (frames // 40) + bytes(2 * (frames % 40)))
        step = frames // len(composed.titles)
        marks = [ChapterMark(i * step, title) for i, title in enumerate(composed.titles)]
        tags = Tags(title="News from Nowhere", author="William Morris", cover=book.metadata.cover)
        for kind in ("m4b", "mp3"):
            t = time.perf_counter()
            out = write_audiobook(wav, work / f"book.{kind}", marks, tags)
            took = time.perf_counter() - t
            rows.append((f"write .{kind}", took, f"{args.seconds / took:.0f}x real time, {out.stat().st_size:,} bytes"))
        # The audio already encoded (as if streamed during synthesis): chapters added by copying it.
        t = time.perf_counter()
        add_chapters(work / "book.m4b", work / "remuxed.m4b", marks, tags, sample_rate=args.rate, frames=frames)
        rows.append(("add_chapters .m4b", time.perf_counter() - t, "audio copied, not re-encoded"))
    print(f"{'step':<18} {'seconds':>8}  notes")
    for name, secs, note in rows:
        print(f"{name:<18} {secs:>8.2f}  {note}")


if __name__ == "__main__":
    main()
