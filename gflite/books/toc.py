"""An EPUB's table of contents: the nav document (EPUB 3) or the NCX (EPUB 2).

Entries are flattened in reading order; nesting is not kept (a part and its
chapters are all chapters). Landmarks (EPUB 3) and the guide (EPUB 2) say
which documents are the TOC, the title page, the index...
"""
from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from xml.etree.ElementTree import Element

from gflite.books import xmlsafe
from gflite.books.limits import is_external, member_path


@dataclass(frozen=True)
class TocEntry:
    path: str  # archive member
    fragment: str  # element id inside it, or ""
    title: str


def _split(base: str, href: str, name: str) -> tuple[str, str]:
    path = member_path(base, href, name=name)
    return path, href.partition("#")[2]


def from_ncx(root: Element, base: str, *, name: str) -> tuple[TocEntry, ...]:
    out = []
    for point in xmlsafe.descendants(root, "navPoint"):
        label = next(iter(xmlsafe.descendants(point, "navLabel")), None)
        content = next((c for c in point if xmlsafe.local(c.tag) == "content"), None)
        src = xmlsafe.attr(content, "src") if content is not None else ""
        if not src or is_external(src):
            continue
        path, frag = _split(base, src, name)
        title = xmlsafe.text(next(iter(xmlsafe.descendants(label, "text")), None)) if label is not None else ""
        out.append(TocEntry(path, frag, title))
    return tuple(out)


def from_guide(opf: Element, base: str, *, name: str) -> dict[str, str]:
    """member path -> guide type (``toc``, ``title-page``, ``copyright-page``...)."""
    out: dict[str, str] = {}
    for ref in xmlsafe.descendants(opf, "reference"):
        href, kind = xmlsafe.attr(ref, "href"), xmlsafe.attr(ref, "type").lower()
        if href and kind and not is_external(href):
            out.setdefault(member_path(base, href, name=name), kind)
    return out


def from_nav(html: str, base: str, *, name: str) -> tuple[tuple[TocEntry, ...], dict[str, str]]:
    """(toc entries, landmarks: member path -> epub:type) from a nav document."""
    p = _NavParser()
    p.feed(html)
    p.close()
    toc, marks = [], {}
    for nav, href, kind, title in p.links:
        if is_external(href):
            continue
        path, frag = _split(base, href, name)
        if nav == "toc":
            toc.append(TocEntry(path, frag, title))
        elif nav == "landmarks" and kind:
            marks.setdefault(path, kind)
    return tuple(toc), marks


class _NavParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, str, str]] = []  # (nav type, href, epub:type, text)
        self._navs: list[str] = []
        self._depth: list[int] = []
        self._a: tuple[str, str, str] | None = None  # (nav type, href, epub:type) of an open <a>
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "nav":
            kinds = (a.get("epub:type", "") + " " + a.get("role", "")).lower().split()
            kind = "toc" if {"toc", "doc-toc"} & set(kinds) else "landmarks" if "landmarks" in kinds else "other"
            self._navs.append(kind)
        elif tag == "a" and self._navs and a.get("href"):
            kinds = a.get("epub:type", "").lower().split()
            self._a = (self._navs[-1], a["href"], kinds[0] if kinds else "")
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav" and self._navs:
            self._navs.pop()
        elif tag == "a" and self._a is not None:
            self.links.append((*self._a, " ".join("".join(self._text).split())))
            self._a = None

    def handle_data(self, data: str) -> None:
        if self._a is not None:
            self._text.append(data)
