"""A book as the one text flite reads, with the offset where each chapter starts.

Each chapter is normalised on its own (``gflite.text.normalise``) and the
chapters are joined by a blank line, which flite always takes as the end of an
utterance: so every chapter start is an utterance start, a chunk may be cut
there, and the chapter's first sample is the first sample of that chunk.
"""
from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass

from gflite.books.model import Book
from gflite.errors import BookError, BookProblem
from gflite.text import Origins, Text, normalise, normalise_origins

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


def origins(book: Book, composed: Composed) -> Origins:
    """The composed text's characters in the book's own text: the same chapters
    before normalisation, each with the white space around it stripped, joined
    by the same blank line (read-along subtitles and timings show a book's own
    characters with it)."""
    parts: list[str] = []
    index = array("q")
    at = 0  # length of the book's own text so far
    for start, number in zip(composed.starts, composed.sources):
        own = book.chapters[number].text
        said, where = normalise_origins(own)
        lead = len(said) - len(said.lstrip(_WS))
        size = len(said.strip(_WS))
        if parts:
            parts.append(SEPARATOR)
            index.extend(range(at, at + len(SEPARATOR)))
            at += len(SEPARATOR)
        if len(index) != start:
            raise AssertionError("compose.origins disagrees with compose")
        first, last = where[lead], where[lead + size - 1] + 1
        parts.append(own[first:last])
        index.extend(at + i - first for i in where[lead:lead + size])
        at += last - first
    parts.append("\n")
    index.append(at)
    return Origins("".join(parts), index)
