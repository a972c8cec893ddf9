"""What a read-along EPUB costs: the benchmark book's first N characters as a
20-chapter EPUB 3, to .m4b (AAC, chapter marks) and to a read-along .epub.

    python bench/bench_readalong.py [--corpus PATH] [--chars N] [--voice V] [-j N]

Each run starts with an empty cache. Prints a table; ratios only mean
something within one run.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus import CORPUS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from epubs import chapter, members, write  # noqa: E402  (the tests' EPUB builder)

GFLITE = [sys.executable, "-m", "gflite"]


def book(text: str, path: Path, chapters: int = 20) -> None:
    paragraphs = [html.escape(" ".join(p.split())) for p in re.split(r"\n\s*\n", text) if p.strip()]
    per = max(1, -(-len(paragraphs) // chapters))
    docs = [(f"ch{i + 1}.xhtml", chapter(f"Chapter {i + 1}", *paragraphs[at:at + per]))
            for i, at in enumerate(range(0, len(paragraphs), per))]
    write(path, members(3, chapters=docs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--chars", type=int, default=60_000)
    ap.add_argument("--voice", default="kal16")
    ap.add_argument("-j", default="2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        book(Path(args.corpus).read_text("utf-8", "replace")[: args.chars], d / "book.epub")
        rows = []
        for label, out in (("m4b (AAC, chapter marks)", "out.m4b"), ("read-along EPUB 3", "out.epub")):
            env = dict(os.environ, GFLITE_CACHE_DIR=str(d / f"cache-{len(rows)}"))
            t0 = time.monotonic()
            subprocess.run([*GFLITE, str(d / "book.epub"), "-o", str(d / out), "-voice", args.voice, "-q",
                            "-j", args.j], check=True, env=env)
            rows.append((label, time.monotonic() - t0, (d / out).stat().st_size))
    print(f"{args.chars} characters as a 20-chapter EPUB, {args.voice}, -j {args.j}, empty cache")
    print(f"{'output':28} {'seconds':>8} {'ratio':>6} {'MB':>7}")
    for label, secs, size in rows:
        print(f"{label:28} {secs:8.1f} {secs / rows[0][1]:6.2f} {size / 1e6:7.1f}")


if __name__ == "__main__":
    main()
