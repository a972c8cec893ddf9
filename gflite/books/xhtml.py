"""(X)HTML to blocks of text: headings, paragraphs and list items, each its own block.

The stdlib ``html.parser`` reads the body: it knows HTML's named character
references, expands no declared entity and fetches nothing. A document that
declares entities of its own (the billion-laughs shape) is refused outright.
Elements marked by ``epub:type`` or ARIA ``role`` as notes, tables of contents
or front/back matter are skipped unless the options keep them.

With ``origins=True`` (a read-along EPUB, ``gflite.readalong``) the same parse
also records where each character of each block came from: its offset in the
decoded document (``Block.origins``, -1 for a character the parser made up: the
newline of a ``<br/>``, the space between table cells), and where every tag
starts and ends (``Document.tags``). The text is the same either way.
"""
from __future__ import annotations

import codecs
import html as html_lib
import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

from gflite.books.model import ReadOptions
from gflite.errors import BookError, BookProblem

_NOTES = {"footnote", "footnotes", "endnote", "endnotes", "rearnote", "rearnotes", "note", "noteref",
          "doc-footnote", "doc-endnote", "doc-endnotes", "doc-noteref", "doc-backlink"}  # fmt: skip
_TOC = {"toc", "landmarks", "page-list", "loi", "lot", "loa", "lov", "doc-toc", "doc-pagelist"}
_FRONT = {"frontmatter", "titlepage", "halftitlepage", "copyright-page", "seriespage", "imprint",
          "imprimatur", "contributors", "other-credits", "errata", "revision-history"}  # fmt: skip
_BACK = {"backmatter", "index", "colophon", "bibliography", "doc-index", "doc-colophon", "doc-bibliography"}
# Never spoken: page numbers, and markup that is not text.
_ALWAYS = {"pagebreak", "doc-pagebreak"}
_SKIP_TAGS = {"head", "script", "style", "template", "svg", "math", "object", "iframe", "rt", "rp", "noscript"}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "html",
    "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead",
    "tr", "ul",
}  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
_CELL = {"td", "th"}
# HTML's implied end tags: a new paragraph ends an open <p>, a new item an open <li>.
_CLOSES = {"p": {"p"}, "li": {"li", "p"}, "dt": {"dt", "dd", "p"}, "dd": {"dt", "dd", "p"}}
_CLOSED_BY_BLOCK = {"p"}
_WS = re.compile(r"[ \t\r\n\f]+")


@dataclass(frozen=True)
class Block:
    text: str
    level: int = 0  # 1-6 for a heading, 0 for any other block
    # With origins=True: per character of text, its offset in the decoded document (-1: made up).
    origins: array | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Tag:
    """A tag as it stands in the decoded document (with origins=True)."""

    start: int  # offset of its "<"
    end: int  # offset after its ">"
    depth: int  # +1 a start tag, -1 an end tag, 0 an empty-element tag (<br/>)
    name: str  # lower case, as html.parser reports it


@dataclass(frozen=True)
class Document:
    blocks: tuple[Block, ...]
    anchors: dict[str, int]  # element id -> index of the first block at or after it
    title: str = ""  # <title>
    language: str = ""  # <html lang>
    author: str = ""  # <meta name="author">
    tags: tuple[Tag, ...] = field(default=(), compare=False, repr=False)  # with origins=True
    length: int = 0  # characters of the decoded document (with origins=True)


def skipped_types(options: ReadOptions) -> frozenset[str]:
    skip = set(_ALWAYS)
    if not options.keep_notes:
        skip |= _NOTES
    if not options.keep_toc:
        skip |= _TOC
    if not options.keep_front_matter:
        skip |= _FRONT
    if not options.keep_back_matter:
        skip |= _BACK
    return frozenset(skip)


_XML_DECL = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9._:-]+)""", re.I)


def decode(data: bytes, *, name: str) -> str:
    """Text of an (X)HTML document: BOM, else the XML declaration's encoding, else a
    ``<meta charset>``, else UTF-8. Bytes invalid in that encoding are an error,
    never guessed at."""
    declared = True  # a BOM declares its encoding too
    if data.startswith(codecs.BOM_UTF8):
        data, encoding = data[3:], "utf-8"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        m = _XML_DECL.match(data) or _META_CHARSET.search(data[:4096])
        encoding = m.group(1).decode("ascii").lower() if m else "utf-8"
        declared = m is not None
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise BookError(f"{name} declares an unknown encoding {encoding!r}", BookProblem.ENCODING) from None
    try:
        text = data.decode(encoding)
    except LookupError:  # a codec that is not a text encoding ("zlib", "base64")
        raise BookError(f"{name} declares {encoding!r}, which is not a text encoding", BookProblem.ENCODING) from None
    except (UnicodeDecodeError, UnicodeError) as e:
        how = "" if encoding != "utf-8" or declared else " and declares no other encoding"
        where = f" (byte offset {e.start})" if isinstance(e, UnicodeDecodeError) else ""
        raise BookError(f"{name} is not valid {encoding}{where}{how}", BookProblem.ENCODING) from None
    if "\0" in text:
        raise BookError(f"{name} contains NUL characters: not a text document", BookProblem.ENCODING)
    return text


_ENTITY_DECL = re.compile(r"<!ENTITY", re.I)


def parse(html: str, *, name: str, skip: frozenset[str] = frozenset(), origins: bool = False) -> Document:
    """Blocks of ``html`` in document order; elements whose epub:type or role is in
    ``skip`` are left out, with everything inside them. ``origins``: also map each
    block's characters and every tag to their offsets in ``html``."""
    # html.parser would not expand them, but a document declaring entities is
    # built to attack XML parsers: refuse it, wherever the declaration hides.
    if _ENTITY_DECL.search(html):
        raise BookError(f"{name} declares XML entities (refused: entity expansion)", BookProblem.ENTITIES)
    parser = _Extractor(skip, html if origins else None)
    try:
        parser.feed(html)
        parser.close()
    except AssertionError as e:  # html.parser's way of giving up on broken markup
        raise BookError(f"{name} is not readable HTML: {e}", BookProblem.MALFORMED) from None
    parser.flush()
    return Document(
        blocks=tuple(parser.blocks),
        anchors=parser.anchors,
        title=_collapse("".join(parser.title)),
        language=parser.language,
        author=parser.author,
        tags=tuple(parser.tags),
        length=len(html) if origins else 0,
    )


def _collapse(s: str) -> str:
    return _WS.sub(" ", s).strip()


# html.unescape's own pattern: each match is replaced on its own, which is what
# lets a character of the data be traced to the reference it came from.
CHARREF = getattr(html_lib, "_charref", None) or re.compile(
    r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


class _Extractor(HTMLParser):
    def __init__(self, skip: frozenset[str], source: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.skip = skip
        # origins: the document itself, where its lines start, and per character of
        # _buf its offset in the document.
        self._src = source
        self._lines = [0] + [m.end() for m in re.finditer("\n", source)] if source is not None else []
        self._orig: list[int] = []
        self.tags: list[Tag] = []
        self.blocks: list[Block] = []
        self.anchors: dict[str, int] = {}
        self.title: list[str] = []
        self.language = ""
        self.author = ""
        self._stack: list[tuple[str, bool]] = []  # (tag, skipping)
        self._open: Counter[str] = Counter()  # tags on the stack, so an end tag finds its start in O(1)
        self._skipping = 0
        self._buf: list[str] = []  # text, with "\n" for <br>
        self._level = 0
        self._pre = 0
        self._in_title = False

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._lines[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._src is not None:
            at, raw = self._offset(), self.get_starttag_text() or ""
            self.tags.append(Tag(at, at + len(raw), 0 if raw.endswith("/>") else 1, tag))
        a = {k: v or "" for k, v in attrs}
        if tag == "html" and not self.language:
            self.language = a.get("lang") or a.get("xml:lang", "")
        if tag == "meta" and a.get("name", "").lower() == "author" and not self.author:
            self.author = _collapse(a.get("content", ""))
        if tag == "title":
            self._in_title = True
        if tag in _BLOCK_TAGS or tag in _HEADINGS:
            self._close_implied(_CLOSES.get(tag, _CLOSED_BY_BLOCK))
            self.flush()
        if self._skipping == 0:
            # An anchor after some text of an unfinished block starts at the next block.
            at = len(self.blocks) + (1 if self._has_text() else 0)
            for key in ("id", "name") if tag == "a" else ("id",):
                if a.get(key):
                    self.anchors.setdefault(a[key], at)
        if tag in _VOID:
            if tag == "br" and not self._skipping:
                self._append("\n")
            elif tag == "hr":
                self.flush()
            return
        kinds = set((a.get("epub:type", "") + " " + a.get("role", "")).lower().split())
        skipping = tag in _SKIP_TAGS or bool(kinds & self.skip)
        if tag in _HEADINGS and not self._skipping:
            self._level = _HEADINGS[tag]
        if tag == "pre":
            self._pre += 1
        if tag in _CELL:
            self._append(" ")
        self._stack.append((tag, skipping))
        self._open[tag] += 1
        self._skipping += skipping

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <div/> in XHTML is an empty element: open and close it at once.
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._src is not None:
            at = self._offset()
            if not (self.tags and self.tags[-1].start == at and self.tags[-1].depth == 0):  # not <x/>'s end
                self.tags.append(Tag(at, self._src.find(">", at) + 1, -1, tag))
        if tag == "title":
            self._in_title = False
        if not self._open[tag]:
            return  # a stray end tag: HTML ignores it
        while self._stack and self._pop() != tag:
            pass

    def _pop(self) -> str:
        t, skipping = self._stack.pop()
        self._open[t] -= 1
        self._skipping -= skipping
        if t in _BLOCK_TAGS or t in _HEADINGS:
            self.flush()
        if t == "pre":
            self._pre -= 1
        return t

    def _close_implied(self, tags: set[str]) -> None:
        """Close an open element of ``tags`` if only inline elements lie above it
        (``<p>a<p>b``, ``<li>a<li>b`` in HTML that leaves end tags out)."""
        for i in range(len(self._stack) - 1, -1, -1):
            t = self._stack[i][0]
            if t in tags:
                while len(self._stack) > i:
                    self._pop()
                return
            if t in _BLOCK_TAGS or t in _HEADINGS:
                return

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        if self._skipping:
            return
        if self._src is None:
            self._buf.append(data if self._pre else _WS.sub(" ", data))
            return
        origins = self._data_origins(data)
        if not self._pre:
            # As _WS.sub(" ", data): a run of white space is one space, from the run's first character.
            kept, out = [], []
            for m in re.finditer(r"[ \t\r\n\f]+|[^ \t\r\n\f]+", data):
                if m.group()[0] in " \t\r\n\f":
                    out.append(" ")
                    kept.append(origins[m.start()])
                else:
                    out.append(m.group())
                    kept.extend(origins[m.start():m.end()])
            data, origins = "".join(out), kept
        self._buf.append(data)
        self._orig.extend(origins)

    def _append(self, made_up: str) -> None:
        self._buf.append(made_up)
        if self._src is not None:
            self._orig.extend([-1] * len(made_up))

    def _data_origins(self, data: str) -> list[int]:
        """Per character of ``data`` (html.parser's unescaped text), its offset in
        the document: a character reference's characters all point at its "&"."""
        assert self._src is not None
        src, at, out = self._src, self._offset(), []
        while len(out) < len(data):
            m = CHARREF.match(src, at) if src.startswith("&", at) else None
            if m is None:
                out.append(at)
                at += 1
            else:
                out.extend([at] * len(html_lib.unescape(m.group())))
                at = m.end()
        if len(out) != len(data):  # a reference that unescapes differently alone: keep lengths right
            out = (out + [-1] * len(data))[:len(data)]
        return out

    def _has_text(self) -> bool:
        return any(s.strip() for s in self._buf)

    def flush(self) -> None:
        raw = text = "".join(self._buf)
        self._buf.clear()
        level, self._level = self._level, 0
        if not self._pre:
            text = "\n".join(_collapse(line) for line in text.split("\n"))
        # Trim blank lines: a blank line inside a block would end an utterance there.
        lines = [ln.rstrip() for ln in text.split("\n")]
        text = "\n".join(ln for ln in lines if ln.strip())
        origins, self._orig = self._orig, []
        if text.strip():
            kept = _align(text, raw, origins) if self._src is not None else None
            self.blocks.append(Block(text=text, level=level, origins=kept))


def _align(text: str, raw: str, origins: list[int]) -> array | None:
    """The origins of ``text``, made from ``raw`` only by dropping white space and
    turning white space into a single space: so its characters are matched in
    order, each to the next character of ``raw`` it can be. None if they cannot
    be (never seen): the block then has no place, and is read but not marked."""
    out, j = array("q"), 0
    try:
        for c in text:
            if c == " ":
                while raw[j] not in " \t\r\f":
                    j += 1
            else:
                while raw[j] != c:
                    j += 1
            out.append(origins[j])
            j += 1
    except IndexError:
        return None
    return out


def text_of(blocks: tuple[Block, ...] | list[Block]) -> str:
    """The blocks as one text, a blank line between blocks (flite ends an utterance there)."""
    return "\n\n".join(b.text for b in blocks)
