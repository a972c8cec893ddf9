"""Which file names are books (read by :mod:`gflite.books`) rather than plain text,
and which outputs are audiobooks (written by :mod:`gflite.audiobook`).

Apart from the readers and writers, so deciding costs the CLI no import of them.
"""
from __future__ import annotations

import os
from pathlib import Path

BOOK_SUFFIXES = {".epub": "epub", ".md": "markdown", ".markdown": "markdown",
                 ".html": "html", ".htm": "html", ".xhtml": "html"}  # fmt: skip


def is_book(path: str | Path) -> bool:
    """True if ``path`` names a structured book (not plain text)."""
    return Path(path).suffix.lower() in BOOK_SUFFIXES


AUDIOBOOK_FORMATS = ("m4b", "m4a", "mp3")


def audiobook_format(target: str | os.PathLike[str]) -> str | None:
    """``"m4b"``, ``"m4a"`` or ``"mp3"`` if ``target`` names an audiobook file, else None."""
    ext = Path(target).suffix.lower().lstrip(".")
    return ext if ext in AUDIOBOOK_FORMATS else None
