"""Forced cuts and their silences: chapters, paragraphs, sentences."""
from __future__ import annotations

import pytest

from gflite.errors import UsageError
from gflite.pauses import Cut, Pauses, cuts

TEXT = "Chapter One\n\nIt was late. The lamp was out.\n\nShe waited.\n\nChapter Two\n\nMorning came.\n"


def test_no_pauses_no_chapters_no_cuts() -> None:
    assert cuts(TEXT, Pauses()) == ()


def test_chapters_paragraphs_and_sentences() -> None:
    two = TEXT.index("Chapter Two")
    got = cuts(TEXT, Pauses(sentence=0.1, paragraph=0.4, chapter=1.5), ((0, "One"), (two, "Two")))
    assert got == (
        Cut(0, 0.0, "One"),
        Cut(TEXT.index("It was"), 0.4),
        Cut(TEXT.index("The lamp"), 0.1),
        Cut(TEXT.index("She"), 0.4),
        Cut(two, 1.5, "Two"),  # a chapter start is also a paragraph start: the chapter's pause wins
        Cut(TEXT.index("Morning"), 0.4),
    )
    # Paragraph pauses off: only chapters are cut.
    assert cuts(TEXT, Pauses(chapter=2.0), ((0, "One"), (two, "Two"))) == (Cut(0, 0.0, "One"), Cut(two, 2.0, "Two"))


def test_a_paragraph_starting_with_a_lone_quote_is_not_cut() -> None:
    # flite makes an extra empty utterance before a token that is only a quote:
    # a chunk may not start there, so no pause goes there.
    text = "One.\n\n\" Two.\n"
    assert cuts(text, Pauses(paragraph=0.4)) == ()


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 61.0])
def test_bad_seconds_are_usage_errors(bad: float) -> None:
    with pytest.raises(UsageError):
        Pauses(paragraph=bad)
