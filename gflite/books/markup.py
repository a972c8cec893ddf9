"""Markdown and HTML/XHTML books: headings become chapters.

Markdown is rendered to HTML by markdown-it-py (CommonMark), then read like
any HTML, so both keep the same block breaks. The chapter level is the top
heading level, unless that level occurs once, at the very start: then it is
the book's title and the next level down makes the chapters.
"""
from __future__ import annotations

import re

from gflite.books import limits, xhtml
from gflite.books.model import Book, Chapter, Metadata, ReadOptions
from gflite.errors import BookError, BookProblem

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$")


def read_markdown(data: bytes, *, name: str, options: ReadOptions = ReadOptions()) -> Book:
    from markdown_it import MarkdownIt

    text = xhtml.decode(data, name=name)
    fields, body = _front_matter(text)
    # CommonMark plus GitHub's tables and strikethrough, common in Markdown books.
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(body)
    doc = xhtml.parse(html, name=name, skip=xhtml.skipped_types(options))
    meta = Metadata(
        title=fields.get("title", ""),
        authors=tuple(a for a in re.split(r"\s*[;&]\s*|\s+and\s+", fields.get("author", "")) if a),
        language=fields.get("lang", fields.get("language", "")),
    )
    return _book(doc, meta, name, "markdown")


def read_html(data: bytes, *, name: str, options: ReadOptions = ReadOptions()) -> Book:
    doc = xhtml.parse(xhtml.decode(data, name=name), name=name, skip=xhtml.skipped_types(options))
    authors = (doc.author,) if doc.author else ()
    return _book(doc, Metadata(title=doc.title, authors=authors, language=doc.language), name, "html")


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    """Simple ``key: value`` YAML front matter (title, author, lang), and the rest."""
    m = _FRONT_MATTER.match(text.lstrip("\ufeff"))
    if not m:
        return {}, text
    fields = {}
    for line in m.group(1).splitlines():
        k = _KEY.match(line)
        if k:
            fields.setdefault(k.group(1).lower(), k.group(2).strip("\"'"))
    return fields, text.lstrip("\ufeff")[m.end() :]


def _book(doc: xhtml.Document, meta: Metadata, name: str, fmt: str) -> Book:
    blocks = list(doc.blocks)
    if not blocks:
        raise BookError(f"{name} has no text to speak", BookProblem.MALFORMED)
    stem = name.rsplit(".", 1)[0]
    levels = sorted({b.level for b in blocks if b.level})
    book_title = ""
    if levels:
        top = [b for b in blocks if b.level == levels[0]]
        if len(top) == 1 and len(levels) > 1 and blocks[0] is top[0]:
            book_title = blocks.pop(0).text
            levels = levels[1:]
    if not meta.title:
        meta = Metadata(title=book_title or stem, authors=meta.authors, language=meta.language, cover=meta.cover)
    split = levels[0] if levels else 0
    groups: list[tuple[str, list[xhtml.Block]]] = []
    for b in blocks:
        if split and b.level and b.level <= split:
            groups.append((b.text, [b]))
        elif groups:
            groups[-1][1].append(b)
        else:
            groups.append((meta.title, [b]))  # text before the first chapter heading
    if len(groups) > limits.MAX_CHAPTERS:
        raise BookError(f"{name} has over {limits.MAX_CHAPTERS} chapters", BookProblem.TOO_LARGE)
    chapters = tuple(Chapter(title=" ".join(t.split()), text=xhtml.text_of(bs)) for t, bs in groups)
    return Book(metadata=meta, chapters=chapters, format=fmt)
