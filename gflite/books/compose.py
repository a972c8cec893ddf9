"""A book as the one text flite reads, with the offset where each chapter starts.

Each chapter is normalised on its own (``gflite.text.normalise``) and the
chapters are joined by a blank line, which flite always takes as the end of an
utterance: so every chapter start is an utterance start, a chunk may be cut
there, and the chapter's first sample is the first sample of that chunk.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gflite.books.model import Book
from gflite.errors import BookError, BookProblem
from gflite.text import Text, normalise

SEPARATOR = "\n\n"
_WS = " \t\r\n"


@dataclass(frozen=True)
class Composed:
    text: Text
    starts: tuple[int, ...]  # offset in text.text of each chapter's first character
    titles: tuple[str, ...]  # the chapters' titles, ASCII as flite would say them
    sources: tuple[int, ...] = ()  # each one's index in book.chapters (chapters with nothing to say are left out)


def compose(book: Book) -> Composed:
    parts: list[str] = []
    starts: list[int] = []
    titles: list[str] = []
    sources: list[int] = []
    replaced, dropped = 0, Counter[str]()
    pos = 0
    for index, chapter in enumerate(book.chapters):
        text, r, d = normalise(chapter.text)
        text = text.strip(_WS)
        replaced += r
        dropped.update(dict(d))
        if not text:
            continue  # nothing flite can say (e.g. a chapter in a script it cannot read)
        if parts:
            parts.append(SEPARATOR)
            pos += len(SEPARATOR)
        starts.append(pos)
        parts.append(text)
        pos += len(text)
        titles.append(chapter.title)
        sources.append(index)
    if not parts:
        raise BookError("the book has no text flite can say", BookProblem.MALFORMED)
    text = Text(
        text="".join(parts) + "\n",
        encoding="utf-8",
        replaced=replaced,
        dropped=tuple(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
    return Composed(text=text, starts=tuple(starts), titles=tuple(titles), sources=tuple(sources))
