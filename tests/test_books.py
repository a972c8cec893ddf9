"""read_book's dispatch, chapter selection (--chapters) and listing (--list-chapters)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gflite.books import Book, Chapter, Metadata, is_book, read_book
from gflite.books.selection import list_chapters, parse_chapters, select
from gflite.errors import BookError, InputError, UsageError

SAMPLES = Path(__file__).parent.parent / "sample_texts"


def test_is_book_by_suffix() -> None:
    assert is_book("a.EPUB") and is_book("b.md") and is_book("c.xhtml") and is_book("d.htm")
    assert not is_book("e.txt") and not is_book("f")


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BookError):
        read_book(tmp_path / "x.txt")
    with pytest.raises(InputError) as e:
        read_book(tmp_path / "missing.md")
    assert e.value.exit_code == 3 and "not found" in str(e.value)
    with pytest.raises(InputError):
        read_book(tmp_path / "missing.epub")


@pytest.mark.parametrize(
    ("spec", "want"),
    [("3-7,9", (3, 4, 5, 6, 7, 9)), ("9,1,1", (1, 9)), ("8-", (8, 9, 10)), ("-2", (1, 2)), (" 4 ", (4,))],
)
def test_parse_chapters(spec: str, want: tuple[int, ...]) -> None:
    assert parse_chapters(spec, 10) == want


@pytest.mark.parametrize("spec", ["", "x", "3-2", "0", "1-11", "11", "1,,2", "-", "2-3-4"])
def test_parse_chapters_refuses(spec: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_chapters(spec, 10)
    assert e.value.exit_code == 2 and "--chapters" in str(e.value)


def _book() -> Book:
    return Book(
        metadata=Metadata(title="T"),
        chapters=(Chapter("One", "One\n\nTen chars."), Chapter("Two", "Two words"), Chapter("Three", "x")),
        format="markdown",
    )


def test_select_keeps_book_order() -> None:
    assert [c.title for c in select(_book(), parse_chapters("3,1", 3)).chapters] == ["One", "Three"]


def test_list_chapters_counts_words_and_estimates_time() -> None:
    rows = list_chapters(_book(), chars_per_second=2.0)
    assert [(r.number, r.title, r.words, r.characters) for r in rows] == [
        (1, "One", 3, 15), (2, "Two", 2, 9), (3, "Three", 1, 1)
    ]
    assert [r.seconds for r in rows] == [7.5, 4.5, 0.5]


@pytest.mark.parametrize("name", ["the_clockmakers_apprentice.epub", "the_lamplighter.md"])
def test_sample_books_have_three_or_more_chapters(name: str) -> None:
    book = read_book(SAMPLES / name)
    assert len(book.chapters) >= 3
    assert book.metadata.title and book.metadata.authors
    assert all(c.title and c.words > 20 for c in book.chapters)


def test_compose_starts_each_chapter_on_a_flite_utterance_start() -> None:
    from gflite.books.compose import compose
    from gflite.chunking import utterance_starts

    book = read_book(SAMPLES / "the_clockmakers_apprentice.epub")
    composed = compose(book)
    text = composed.text.text
    assert text.isascii() and composed.text.replaced > 0  # curly quotes became ASCII
    assert composed.titles == tuple(c.title for c in book.chapters)
    assert composed.starts[0] == 0 and len(composed.starts) == len(book.chapters)
    breaks = set(utterance_starts(text))
    for start, chapter in zip(composed.starts[1:], book.chapters[1:]):
        assert start in breaks
        assert text[start:].startswith(chapter.title)
    # Every block (heading, paragraph, list item) starts an utterance of its own.
    block_starts = [i + 2 for i in range(len(text)) if text.startswith("\n\n", i) and text[i + 2 : i + 3].strip()]
    assert block_starts and set(block_starts) <= breaks


def test_compose_breaks_where_no_punctuation_would() -> None:
    """A heading with no full stop, then text in lower case: only the blank line makes flite break."""
    from gflite.books.compose import compose
    from gflite.chunking import utterance_starts

    book = Book(
        metadata=Metadata(title="T"),
        chapters=(Chapter("a", "the first heading\n\nand its text"), Chapter("b", "the second heading\u2014here")),
        format="markdown",
    )
    composed = compose(book)
    assert composed.text.text == "the first heading\n\nand its text\n\nthe second heading -- here\n"
    assert set(composed.starts[1:]) | {len("the first heading\n\n")} <= set(utterance_starts(composed.text.text))
