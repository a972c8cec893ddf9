"""Choosing chapters (``--chapters 3-7,9``) and listing them (``--list-chapters``)."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from gflite.books.model import Book
from gflite.errors import UsageError

_PART = re.compile(r"^\s*(\d*)\s*(-?)\s*(\d*)\s*$")


def parse_chapters(spec: str, count: int) -> tuple[int, ...]:
    """1-based chapter numbers named by ``spec`` (``"3-7,9"``, ``"5-"``, ``"-2"``), in
    book order without repeats. UsageError for a malformed spec or a chapter the
    book does not have."""
    picked: set[int] = set()
    for part in spec.split(","):
        m = _PART.match(part)
        if not m or not (m.group(1) or m.group(3)) or (not m.group(2) and not m.group(1)):
            raise UsageError(f"--chapters: {part.strip()!r} is not a chapter number or range like 3-7")
        lo = int(m.group(1)) if m.group(1) else 1
        hi = (int(m.group(3)) if m.group(3) else count) if m.group(2) else lo
        if lo < 1 or hi < lo:
            raise UsageError(f"--chapters: {part.strip()!r} is an empty range")
        if hi > count:
            raise UsageError(f"--chapters: the book has {count} chapter{'s' if count != 1 else ''}, not {hi}")
        picked.update(range(lo, hi + 1))
    return tuple(sorted(picked))


def select(book: Book, numbers: tuple[int, ...]) -> Book:
    """The book with only the chapters numbered (1-based) in ``numbers``."""
    return replace(book, chapters=tuple(book.chapters[n - 1] for n in numbers))


@dataclass(frozen=True)
class ChapterInfo:
    number: int  # 1-based, as --chapters counts
    title: str
    words: int
    characters: int
    seconds: float  # estimated audio length


def list_chapters(book: Book, chars_per_second: float) -> tuple[ChapterInfo, ...]:
    """One row per chapter; ``chars_per_second`` is the voice's speaking rate
    (characters of text per second of audio)."""
    if chars_per_second <= 0:
        raise ValueError("chars_per_second must be positive")
    return tuple(
        ChapterInfo(
            number=i,
            title=c.title,
            words=c.words,
            characters=len(c.text),
            seconds=len(c.text) / chars_per_second,
        )
        for i, c in enumerate(book.chapters, 1)
    )
