"""Books in, chapters of text out: EPUB 2/3, Markdown and HTML/XHTML.

``read_book(path)`` picks the reader by file type. Every reader treats the
book as hostile: sizes are capped (``limits``), XML resolves no entities and
fetches nothing, and anything unsafe raises :class:`gflite.errors.BookError`
(an InputError, exit 3) with a one-line message.
"""
from __future__ import annotations

from pathlib import Path

from gflite.book_suffixes import BOOK_SUFFIXES, is_book
from gflite.books.model import Book, Chapter, Cover, Metadata, ReadOptions
from gflite.errors import BookError, BookProblem
from gflite.text import reading_input

__all__ = ["Book", "Chapter", "Cover", "Metadata", "ReadOptions", "BOOK_SUFFIXES", "is_book", "read_book"]


def read_book(path: str | Path, options: ReadOptions = ReadOptions(), *, origins: bool = False) -> Book:
    """Read an EPUB, Markdown or HTML book; BookError/InputError if it cannot be read.
    ``origins``: an EPUB's chapters keep where their text stands (``gflite.books.anchors``)."""
    p = Path(path)
    kind = BOOK_SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise BookError(f"{p}: not a book (use .epub, .md, .html or .xhtml)", BookProblem.NOT_A_BOOK)
    if kind == "epub":
        from gflite.books import epub

        return epub.read_epub(p, options, origins=origins)
    from gflite.books import limits, markup

    data = _read_capped(p, limits.MAX_TEXT_FILE_BYTES)
    if kind == "markdown":
        return markup.read_markdown(data, name=p.name, options=options)
    return markup.read_html(data, name=p.name, options=options)


def _read_capped(p: Path, cap: int) -> bytes:
    with reading_input(p, "a book"), p.open("rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise BookError(f"{p.name} is over {cap >> 20} MiB: too large for a book", BookProblem.TOO_LARGE)
    return data
