"""What a book is once read: metadata and chapters of plain text, in reading order."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gflite.books.anchors import Piece


@dataclass(frozen=True)
class Cover:
    data: bytes = field(repr=False)
    media_type: str  # "image/jpeg" or "image/png"

    @property
    def extension(self) -> str:
        return {"image/png": "png", "image/gif": "gif", "image/webp": "webp"}.get(self.media_type, "jpg")


@dataclass(frozen=True)
class Metadata:
    title: str = ""
    authors: tuple[str, ...] = ()
    language: str = ""
    cover: Cover | None = None

    @property
    def author(self) -> str:
        return ", ".join(self.authors)


@dataclass(frozen=True)
class Chapter:
    """One chapter's text: blocks (headings, paragraphs, list items) separated by a
    blank line, which flite always takes as the end of an utterance."""

    title: str
    text: str
    source: str = ""  # where it came from: the EPUB member, or "" for a heading split
    # Read with origins (a read-along EPUB): where each block of text stands in its document.
    pieces: tuple[Piece, ...] = field(default=(), compare=False, repr=False)

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Book:
    metadata: Metadata
    chapters: tuple[Chapter, ...]
    format: str  # "epub", "markdown" or "html"


@dataclass(frozen=True)
class ReadOptions:
    """What to keep that is skipped by default (each has its own CLI flag)."""

    keep_notes: bool = False  # epub:type footnotes/endnotes and their noterefs
    keep_toc: bool = False  # the nav document, TOC pages, landmarks
    keep_front_matter: bool = False  # title page, copyright page, "frontmatter"
    keep_back_matter: bool = False  # index, colophon, "backmatter"
    keep_nonlinear: bool = False  # EPUB spine items marked linear="no" (auxiliary content)
