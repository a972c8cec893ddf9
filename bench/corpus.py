"""The benchmark book, shared by the scripts in bench/: where it lives (outside
the repository, never committed) and the excerpt of its story they time."""
from __future__ import annotations

from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "news_from_nowhere.txt"


def excerpt(path: Path, paragraphs: int) -> str:
    """The first N paragraphs of the story itself, skipping the front matter."""
    text = path.read_text(encoding="utf-8", errors="replace")
    start = text.find("CHAPTER I")
    body = text[start:] if start >= 0 else text
    paras = [p.strip() for p in body.split("\n\n") if len(p.strip()) > 200]
    return "\n\n".join(paras[:paragraphs]) + "\n"
