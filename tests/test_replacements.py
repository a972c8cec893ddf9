"""--replace: word → spoken form lists."""
from __future__ import annotations

from pathlib import Path

import pytest

from gflite import replacements
from gflite.errors import InputError


def test_whole_words_once_longest_first() -> None:
    rules = replacements.parse("# a comment\nNY → New York\nNYC -> New York City\nYork = Yorrk\n\n", name="r")
    text, n = rules.apply("NYC and NY, not NYX or aNY. York.")
    assert text == "New York City and New York, not NYX or aNY. Yorrk."  # never replaced twice
    assert n == 3


def test_normalised_keys_match_the_text_flite_reads() -> None:
    rules = replacements.parse("Hélène → Elen\n", name="r").normalised()
    assert rules.apply("Helene said hi.") == ("Elen said hi.", 1)


@pytest.mark.parametrize("data", ["no arrow here\n", "→ nothing\n", "a\x07b → c\n"])
def test_bad_lines_are_input_errors(data: str) -> None:
    with pytest.raises(InputError, match="line 1"):
        replacements.parse(data, name="r")


def test_binary_or_huge_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "b").write_bytes(b"a\0b")
    with pytest.raises(InputError):
        replacements.read(str(tmp_path / "b"))
    with pytest.raises(InputError, match="cannot read"):
        replacements.read(str(tmp_path / "missing"))
