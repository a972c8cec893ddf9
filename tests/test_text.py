"""Decoding and normalising input text to what flite can say."""
from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from conftest_chunking import flite_pcm
from gflite.errors import InputError
from gflite.text import Text, decode, from_string, normalise, read_text


def test_ascii_passes_through_untouched() -> None:
    data = b"Hello there.\r\nSecond line.\n\nThird.\rOld Mac line.\n"
    t = decode(data)
    assert t.text == data.decode()
    assert (t.encoding, t.replaced, t.dropped) == ("ascii", 0, ())
    assert t.data == data


def test_utf8_with_and_without_bom() -> None:
    body = "Caf\u00e9 \u201cnoir\u201d\r\n".encode()
    plain, bom = decode(body), decode(b"\xef\xbb\xbf" + body)
    assert plain.text == bom.text == 'Cafe "noir"\r\n'
    assert (plain.encoding, bom.encoding) == ("utf-8", "utf-8-sig")
    assert plain.replaced == 3


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom(codec: str) -> None:
    bom = b"\xff\xfe" if codec.endswith("le") else b"\xfe\xff"
    t = decode(bom + "Na\u00efve \u2014 yes.\r\n".encode(codec))
    assert t.text == "Naive -- yes.\r\n"
    assert t.encoding == "utf-16"


def test_cp1252_punctuation_and_latin1_letters() -> None:
    # 0x93/0x94 curly quotes, 0x97 em dash, 0x85 ellipsis, 0xe9 e-acute
    t = decode(b"\x93Caf\xe9\x94\x97she said\x85\r\n")
    assert t.text == '"Cafe" -- she said...\r\n'
    assert t.encoding == "cp1252"
    assert decode(b"Caf\xe9 cr\xe8me.\n") == Text("Cafe creme.\n", "latin-1", 2)


def test_mostly_utf8_with_a_bad_byte_stays_utf8() -> None:
    t = decode("\u201cOne\u201d, \u201ctwo\u201d and ".encode() + b"\xff three.\n")
    assert t.encoding == "utf-8"
    assert t.text == '"One", "two" and  three.\n'
    assert (t.dropped, t.invalid_bytes) == ((), 1)


def test_a_few_stray_bytes_do_not_make_utf8_cp1252() -> None:
    """One accented word and three stray bytes: still UTF-8 (it was read as cp1252: "cafA(c)")."""
    t = decode("Un caf\u00e9, s'il vous pla\u00eet.".encode() + b" \xff\xfe oops \x81.\n")
    assert t.encoding == "utf-8"
    assert t.text == "Un cafe, s'il vous plait.  oops .\n"
    assert (t.invalid_bytes, t.dropped) == (3, ())
    # ...while cp1252 whose bytes happen to form one valid sequence (a CJK character) stays cp1252.
    assert decode(b"\x93Caf\xe9\x94\x97she said\x85 \x93Oui\x94.\r\n").encoding == "cp1252"
    # An emoji (which flite cannot say) is still evidence of UTF-8.
    assert decode("Hi \U0001f600!".encode() + b" \xff\n").encoding == "utf-8"


def test_symbols_said_as_words_are_reported() -> None:
    t = decode("It cost \u00a35, or \u00a34 \u00a9 Acme\u2122 \u2014 \u201cso\u201d.\n".encode())
    assert t.spelled == (("\u00a3", "GBP", 2), ("\u00a9", "(c)", 1), ("\u2122", "TM", 1))


@pytest.mark.parametrize(
    "src, out",
    [
        ("\u2018single\u2019 \u201cdouble\u201d \u00abguillemets\u00bb", "'single' \"double\" \"guillemets\""),
        ("word\u2014word", "word -- word"),
        ("word \u2014 word", "word -- word"),
        ("end\u2014\nnext", "end --\nnext"),
        ("1914\u20131918", "1914-1918"),
        ("this \u2013 that", "this -- that"),
        ("wait\u2026", "wait..."),
        ("na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m", "naive resume Angstrom"),
        ("\u00e6on \u0153uvre stra\u00dfe \u00f8re", "aeon oeuvre strasse ore"),
        ("\ufb01ne \uff21\uff22 \u00bd x\u00b2", "fine AB 1/2 x2"),
        ("a\u00a0b\u200bc\u00add", "a bcd"),
        ("page\fbreak", "page break"),
        ("tab\tkept", "tab\tkept"),
    ],
)
def test_mapping_to_ascii(src: str, out: str) -> None:
    text, replaced, dropped = normalise(src)
    assert text == out
    assert replaced > 0 or src == out
    assert dropped == ()


def test_unsayable_characters_are_dropped_and_counted() -> None:
    t = from_string("Snow \u2603\u2603 and \u4e2d, bell\x07.\n")
    assert t.text == "Snow  and , bell.\n"
    assert t.dropped == (("\u2603", 2), ("\x07", 1), ("\u4e2d", 1))
    assert t.dropped_count == 4


def test_line_endings_are_kept_exactly() -> None:
    src = "a\r\nb\nc\rd\r\n\r\ne\u2019s\r\n"
    assert decode(src.encode()).text == src.replace("\u2019", "'")


def test_very_long_line() -> None:
    line = ("word \u201cquoted\u201d " * 200_000).encode()
    t = decode(line)
    assert len(t.text) == len(line) - 200_000 * 4  # each curly quote: 3 bytes -> 1 char
    assert t.replaced == 400_000


@pytest.mark.parametrize("data", [b"", b"   \r\n\n\t", "\u200b\u00a0\n".encode(), b"\xef\xbb\xbf"])
def test_empty_input_is_refused(data: bytes) -> None:
    with pytest.raises(InputError, match="empty"):
        decode(data)


def test_binary_input_is_refused() -> None:
    with pytest.raises(InputError, match="binary"):
        decode(b"\x7fELF\x02\x01\x01\x00\x00\x00text")
    with pytest.raises(InputError, match="binary"):
        decode(bytes(range(1, 32)) * 40)
    with pytest.raises(InputError, match="binary"):
        from_string("a\0b")


def test_random_bytes_are_refused_or_become_ascii() -> None:
    rng = random.Random(5)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 400)))
        try:
            t = decode(data)
        except InputError:
            continue
        assert t.text.isascii() and t.text.strip()


def test_random_unicode_becomes_ascii() -> None:
    rng = random.Random(9)
    for _ in range(200):
        s = "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0x3000)])) for _ in range(50))
        text, replaced, dropped = normalise(s + "\r\n")
        assert text.isascii() and text.endswith("\r\n")
        assert all(c in "\t\n\r" or " " <= c <= "~" for c in text)


def test_read_text_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="directory"):
        read_text(tmp_path)
    (tmp_path / "book.txt").write_bytes("It\u2019s fine.\n".encode())
    t = read_text(tmp_path / "book.txt")
    assert t.text == "It's fine.\n"
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.text = "x"  # type: ignore[misc]


def test_normalised_text_speaks_like_its_ascii_spelling(tmp_path) -> None:
    # What flite hears from a typeset book equals what it hears from the ASCII text.
    typeset = from_string("\u201cIs it na\u00efve?\u201d she asked \u2014 twice\u2026\n").text
    assert flite_pcm(typeset, "kal16", tmp_path, "a") == flite_pcm(
        '"Is it naive?" she asked -- twice...\n', "kal16", tmp_path, "b"
    )


# Every kind of mapping: several characters for one ("…", "£"), one for a dash
# with its spacing added, dropped characters (zero-width space, BOM), CRLF.
MIXED = "\ufeff\u201cWait,\u201d she said\u2014the caf\u00e9\u2019s \u00a35\u2026\r\nStra\u00dfe!\u200b Ok.\n"


@pytest.mark.parametrize("read", ["decode", "from_string", "read_text"])
def test_origins_map_each_normalised_character_to_the_source(read: str, tmp_path: Path) -> None:
    if read == "decode":
        # Its first bytes are a UTF-8 byte-order mark: an encoding mark, not text.
        t, source = decode(MIXED.encode("utf-8"), origins=True), MIXED[1:]
    elif read == "from_string":
        t, source = from_string(MIXED, origins=True), MIXED
    else:
        (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbf" + MIXED.encode("utf-8"))
        # The first mark is the encoding's; the second is a character, which normalise skips.
        t, source = read_text(tmp_path / "in.txt", origins=True), MIXED
    assert t.origins is not None
    assert t.origins.source == source
    assert t.text == normalise(source)[0]
    assert len(t.origins.index) == len(t.text)
    assert list(t.origins.index) == sorted(t.origins.index)
    # Each word of the normalised text spans the source's own spelling of it.
    words = {}
    pos = 0
    for w in t.text.split():
        start = t.text.index(w, pos)
        pos = start + len(w)
        a, b = t.origins.span(start, pos)
        words[w] = source[a:b]
    assert words == {'"Wait,"': "\u201cWait,\u201d", "she": "she", "said": "said", "--": "\u2014",
                     "the": "the", "cafe's": "caf\u00e9\u2019s", "GBP5...": "\u00a35\u2026",
                     "Strasse!": "Stra\u00dfe!", "Ok.": "Ok."}
    # Without origins asked for, none are kept (they cost time and a copy of the text).
    assert from_string(MIXED).origins is None


def test_origins_of_ascii_are_the_identity() -> None:
    t = decode(b"Hello there.\r\nAgain.\n", origins=True)
    assert t.origins is not None and list(t.origins.index) == list(range(len(t.text)))
    assert t.origins.span(0, 5) == (0, 5) and t.origins.span(3, 3) == (3, 3)
