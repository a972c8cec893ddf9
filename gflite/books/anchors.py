"""Where a stretch of the text flite read stands in the book's XHTML.

Three steps, each recorded where its text is made, never found again later:

1. ``gflite.books.xhtml`` (``origins=True``) gives each block's characters
   their offsets in the decoded document, and every tag's place;
2. ``gflite.books.epub`` puts blocks into chapters: a :class:`Piece` says where
   a block's text starts in its chapter's text, and in which document;
3. ``gflite.books.compose`` normalises each chapter and joins them; here
   :func:`gflite.text.normalise_origins` makes the same text with, per
   character, the chapter character it came from.

:meth:`BookMap.locate` runs them backwards: a span of the composed text (a
sentence's, from ``gflite.timings``) becomes a :class:`Place`, the offsets in
one document of its first and last characters. A span that is not within one
block (it never is: blocks end utterances) has no place.
"""
from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass, field

from gflite.books.compose import Composed
from gflite.books.model import Book
from gflite.books.xhtml import Block, Document, Tag
from gflite.text import normalise_origins

_WS = " \t\r\n"


@dataclass(frozen=True)
class Piece:
    """One block of a chapter's text, and where its characters stand in its document."""

    start: int  # offset of the block's first character in the chapter's text
    document: str  # the EPUB member
    block: Block = field(repr=False)  # with origins
    tags: tuple[Tag, ...] = field(default=(), repr=False, compare=False)  # the document's tags


@dataclass(frozen=True)
class Place:
    document: str
    first: int  # offset in the decoded document of the first character
    last: int  # of the last character (its "&" if it was a character reference)


def pieces(doc: Document, blocks: tuple[Block, ...] | list[Block], path: str, offset: int = 0) -> tuple[Piece, ...]:
    """The pieces of ``blocks`` (joined by blank lines, as ``xhtml.text_of``), the
    first at ``offset`` in its chapter; none if the document was read without origins."""
    if not doc.tags and not doc.length:
        return ()
    out, at = [], offset
    for b in blocks:
        if b.origins is not None:  # a block without them is read aloud, but has no place
            out.append(Piece(at, path, b, doc.tags))
        at += len(b.text) + 2
    return tuple(out)


@dataclass(frozen=True)
class _ChapterMap:
    start: int  # offset of the chapter in the composed text
    lead: int  # white space stripped from the front of its normalised text
    origins: array = field(repr=False)  # per normalised character, its offset in the chapter's text
    pieces: tuple[Piece, ...] = field(repr=False)
    starts: tuple[int, ...] = field(default=(), repr=False)  # each piece's start, to search


@dataclass(frozen=True)
class BookMap:
    """The composed text's characters back to their documents; see the module docstring."""

    chapters: tuple[_ChapterMap, ...]
    starts: tuple[int, ...] = field(default=(), repr=False)  # each chapter's start, to search

    @classmethod
    def of(cls, book: Book, composed: Composed) -> BookMap:
        maps = []
        for start, index in zip(composed.starts, composed.sources):
            chapter = book.chapters[index]
            text, origins = normalise_origins(chapter.text)
            lead = len(text) - len(text.lstrip(_WS))
            maps.append(_ChapterMap(start, lead, origins, chapter.pieces, tuple(p.start for p in chapter.pieces)))
        return cls(tuple(maps), tuple(c.start for c in maps))

    def chapter_of(self, offset: int) -> int:
        return max(0, bisect_right(self.starts, offset) - 1)

    def locate(self, span: tuple[int, int]) -> Place | None:
        """Where the characters ``span`` = [start, end) of the composed text stand."""
        start, end = span
        if end <= start or not self.chapters:
            return None
        ch = self.chapters[self.chapter_of(start)]
        first, last = start - ch.start + ch.lead, end - 1 - ch.start + ch.lead
        if first < 0 or last >= len(ch.origins):
            return None
        a, b = ch.origins[first], ch.origins[last]
        i = bisect_right(ch.starts, a) - 1
        if i < 0 or bisect_right(ch.starts, b) - 1 != i:
            return None
        piece = ch.pieces[i]
        raw = piece.block.origins
        assert raw is not None
        lo, hi = a - piece.start, b - piece.start
        if hi >= len(raw):
            return None
        # Characters the parser made up (a <br/>'s newline) stand nowhere: step inwards.
        while lo <= hi and raw[lo] < 0:
            lo += 1
        while hi >= lo and raw[hi] < 0:
            hi -= 1
        if lo > hi:
            return None
        return Place(piece.document, raw[lo], raw[hi])
