"""From a span of the text flite read back to the book's XHTML: xhtml's
origins, normalise_origins, and BookMap.locate through a whole EPUB."""
from __future__ import annotations

from pathlib import Path

import pytest

from epubs import chapter, members, write
from gflite.books import read_book, xhtml
from gflite.books.anchors import BookMap
from gflite.books.compose import compose
from gflite.text import normalise, normalise_origins


@pytest.mark.parametrize("text", [
    "plain ASCII", "\ufeffBOM first", "\u201cQuoted\u201d \u2014 dashed\u2014here 1914\u20131918 \u2013 x",
    "caf\u00e9 \u00df \u2026 \u00a3 \x01\x0c\t\r\n", "\u4e2d\u6587 dropped", "\u2014", "a\u2014\u2014b",
])
def test_normalise_origins_is_normalise_with_a_map(text: str) -> None:
    said, origins = normalise_origins(text)
    assert said == normalise(text)[0] and len(origins) == len(said)
    assert list(origins) == sorted(origins)
    for c, o in zip(said, origins):
        if c.isalnum() and text[o].isascii():
            assert text[o] == c


def test_block_characters_point_into_the_document() -> None:
    html = '<html><body><h1>Title &amp; more</h1><p>One   <em>two</em>\n three<br/>four</p></body></html>'
    doc = xhtml.parse(html, name="t", origins=True)
    assert [b.text for b in doc.blocks] == [b.text for b in xhtml.parse(html, name="t").blocks]
    shown = ["".join(html[o] if o >= 0 else "#" for o in b.origins) for b in doc.blocks]
    assert shown == ["Title & more", "One two\nthree#four"]  # a run of white space: its first character
    assert all(html.startswith("<", t.start) and html[t.end - 1] == ">" for t in doc.tags)


def test_locate_maps_a_composed_span_to_its_document(tmp_path: Path) -> None:
    ch1 = chapter("One", "Caf\u00e9 \u201cnoir\u201d \u2014 strong.", "Second block.")
    ch2 = chapter("Two", "Last words &amp; more.")
    path = write(tmp_path / "b.epub", members(3, chapters=[("c1.xhtml", ch1), ("c2.xhtml", ch2)]))
    book = read_book(path, origins=True)
    composed = compose(book)
    text = composed.text.text
    where = BookMap.of(book, composed)
    for said, doc, shown in [('Cafe "noir" -- strong.', "OEBPS/c1.xhtml", "Caf\u00e9 \u201cnoir\u201d \u2014 strong."),
                             ("Second block.", "OEBPS/c1.xhtml", "Second block."),
                             ("Last words & more.", "OEBPS/c2.xhtml", "Last words &amp; more.")]:
        i = text.index(said)
        place = where.locate((i, i + len(said)))
        assert place is not None and place.document == doc
        raw = members(3, chapters=[("c1.xhtml", ch1), ("c2.xhtml", ch2)])[doc].decode()
        end = raw.index(";", place.last) + 1 if raw[place.last] == "&" else place.last + 1
        assert raw[place.first:end] == shown
    # A span over two blocks has no single place.
    i = text.index("strong.")
    assert where.locate((i, text.index("Second") + 6)) is None
