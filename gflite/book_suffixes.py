"""Which file names are books (read by :mod:`gflite.books`) rather than plain text.

Apart from the readers, so deciding costs the CLI no import of them.
"""
from __future__ import annotations

from pathlib import Path

BOOK_SUFFIXES = {".epub": "epub", ".md": "markdown", ".markdown": "markdown",
                 ".html": "html", ".htm": "html", ".xhtml": "html"}  # fmt: skip


def is_book(path: str | Path) -> bool:
    """True if ``path`` names a structured book (not plain text)."""
    return Path(path).suffix.lower() in BOOK_SUFFIXES
