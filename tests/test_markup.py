"""Markdown and HTML/XHTML books: headings become chapters, blocks keep their breaks."""
from __future__ import annotations

from pathlib import Path

import pytest

from gflite.books import ReadOptions, read_book
from gflite.errors import BookError, BookProblem

MD = """---
title: "A Small Book"
author: Ada Author and Bo Writer
lang: en
---
# A Small Book

## The First Chapter

It begins *here*.
A second line of the same paragraph.

- one item
- two items

## The Second Chapter

It goes on.

### A subsection

Still chapter two.

## The Third Chapter

It ends.
"""


def test_markdown_front_matter_title_and_h2_chapters(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text(MD)
    book = read_book(tmp_path / "b.md")
    assert book.format == "markdown"
    assert book.metadata.title == "A Small Book"
    assert book.metadata.authors == ("Ada Author", "Bo Writer")
    assert book.metadata.language == "en"
    assert [c.title for c in book.chapters] == ["The First Chapter", "The Second Chapter", "The Third Chapter"]
    assert book.chapters[0].text == (
        "The First Chapter\n\nIt begins here. A second line of the same paragraph.\n\none item\n\ntwo items"
    )
    assert book.chapters[1].text == "The Second Chapter\n\nIt goes on.\n\nA subsection\n\nStill chapter two."


def test_markdown_repeated_top_level_headings_are_the_chapters(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("Opening words.\n\n# One\n\nA.\n\n# Two\n\nB.\n")
    book = read_book(tmp_path / "notes.md")
    assert book.metadata.title == "notes"
    assert [(c.title, c.text) for c in book.chapters] == [
        ("notes", "Opening words."),
        ("One", "One\n\nA."),
        ("Two", "Two\n\nB."),
    ]


def test_markdown_without_headings_is_one_chapter(tmp_path: Path) -> None:
    (tmp_path / "plain.md").write_text("Just text.\n\nMore text.\n")
    book = read_book(tmp_path / "plain.md")
    assert [(c.title, c.text) for c in book.chapters] == [("plain", "Just text.\n\nMore text.")]


def test_html_title_author_language_and_chapters(tmp_path: Path) -> None:
    html = (
        '<!DOCTYPE html><html lang="de"><head><title>Das Buch</title><meta name="author" content="A. Autor">'
        "<style>p { color: red }</style><script>var x = 1;</script></head><body>"
        "<h1>Eins</h1><p>Erster&nbsp;Absatz.<p>Zweiter.<h1>Zwei</h1><blockquote>Zitat.</blockquote>"
        "<table><tr><td>a</td><td>b</td></tr></table></body></html>"
    )
    (tmp_path / "b.html").write_text(html)
    book = read_book(tmp_path / "b.html")
    assert book.format == "html"
    assert (book.metadata.title, book.metadata.authors, book.metadata.language) == ("Das Buch", ("A. Autor",), "de")
    assert [(c.title, c.text) for c in book.chapters] == [
        ("Eins", "Eins\n\nErster\u00a0Absatz.\n\nZweiter."),
        ("Zwei", "Zwei\n\nZitat.\n\na b"),
    ]


def test_xhtml_footnotes_skipped_unless_kept(tmp_path: Path) -> None:
    xhtml = (
        '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml" '
        'xmlns:epub="http://www.idpf.org/2007/ops"><body><h1>One</h1>'
        '<p>Text<a role="doc-noteref" href="#f">*</a>.</p><aside role="doc-footnote" id="f">Note.</aside>'
        "<h1>Two</h1><p>More.</p></body></html>"
    )
    (tmp_path / "b.xhtml").write_text(xhtml)
    assert read_book(tmp_path / "b.xhtml").chapters[0].text == "One\n\nText."
    assert read_book(tmp_path / "b.xhtml", ReadOptions(keep_notes=True)).chapters[0].text == "One\n\nText*.\n\nNote."


def test_html_entity_declaration_refused(tmp_path: Path) -> None:
    (tmp_path / "b.xhtml").write_text('<?xml version="1.0"?><!DOCTYPE html [<!ENTITY a "aaaa">]><html><body><p>&a;</p></body></html>')
    with pytest.raises(BookError) as e:
        read_book(tmp_path / "b.xhtml")
    assert e.value.problem is BookProblem.ENTITIES and e.value.exit_code == 3


def test_markdown_not_utf8_refused(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_bytes("# Caf\u00e9\n\nText.\n".encode("latin-1"))
    with pytest.raises(BookError) as e:
        read_book(tmp_path / "b.md")
    assert e.value.problem is BookProblem.ENCODING and "\n" not in str(e.value)


def test_empty_markdown_refused(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("<!-- nothing -->\n")
    with pytest.raises(BookError) as e:
        read_book(tmp_path / "b.md")
    assert e.value.problem is BookProblem.MALFORMED


def test_html_without_end_tags_keeps_its_blocks(tmp_path: Path) -> None:
    html = "<html><body><h1>One<p>First <b>bold<p>Second<ul><li>a<li>b <i>c</ul><p>Last</body></html>"
    (tmp_path / "b.html").write_text(html)
    assert read_book(tmp_path / "b.html").chapters[0].text == "One\n\nFirst bold\n\nSecond\n\na\n\nb c\n\nLast"


def test_markdown_tables_read_row_by_row(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("# Prices\n\n| fruit | price |\n| --- | --- |\n| apple | 3 |\n| pear | 4 |\n")
    assert read_book(tmp_path / "t.md").chapters[0].text == "Prices\n\nfruit price\n\napple 3\n\npear 4"


def test_bom_then_invalid_utf8_refused(tmp_path: Path) -> None:
    (tmp_path / "b.html").write_bytes(b"\xef\xbb\xbf<html><body><p>caf\xe9</p></body></html>")
    with pytest.raises(BookError) as e:
        read_book(tmp_path / "b.html")
    assert e.value.problem is BookProblem.ENCODING and "byte offset" in str(e.value)
