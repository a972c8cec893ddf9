"""Input text: decode a book's bytes and map it to the ASCII flite can say.

flite reads bytes and knows only ASCII letters, digits and punctuation; curly
quotes, dashes, accented letters and other non-ASCII characters are either
skipped or read out as garbage. So everything is mapped to ASCII here, once,
and the chunker and flite both see exactly this normalised text. Line endings
are never touched: flite's utterance breaks depend on the whitespace bytes
(``"\\r\\n"`` is two characters of whitespace, ``"\\n"`` one), and every chunk
must be a byte-exact substring of what a whole-file run would read.
"""
from __future__ import annotations

import codecs
import contextlib
import re
import unicodedata
from collections import Counter
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from gflite.errors import InputError

# Characters with an ASCII spelling flite pronounces sensibly. Anything not here
# goes through NFKD (accents, ligatures, full-width forms), and is dropped only
# if that leaves nothing ASCII.
_ASCII_FOR: dict[str, str] = {
    # quotes and primes
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u2039": "'", "\u203a": "'", "\u00b4": "'", "\u02bc": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    # dashes and hyphens (em dashes are handled with their spacing, see _dash)
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2212": "-", "\u00ad": "",
    # spaces and invisible marks
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u200b": "", "\u200c": "",
    "\u200d": "", "\u2060": "", "\ufeff": "",
    # line and page separators: flite's whitespace set is only " \t\n\r"
    "\u2028": "\n", "\u2029": "\n\n", "\u0085": "\n", "\f": " ", "\v": " ",
    # punctuation and symbols
    "\u2026": "...", "\u2022": "*", "\u00b7": "*", "\u2027": "-",
    "\u00d7": "x", "\u00f7": "/", "\u2044": "/",
    "\u00a9": "(c)", "\u00ae": "(R)", "\u2122": "TM", "\u00a7": "section",
    "\u00b0": " degrees", "\u20ac": "EUR", "\u00a3": "GBP",
    # letters NFKD does not decompose
    "\u00df": "ss", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE",
    "\u00f8": "o", "\u00d8": "O", "\u0142": "l", "\u0141": "L", "\u0111": "d",
    "\u0110": "D", "\u00fe": "th", "\u00de": "Th", "\u00f0": "d", "\u00d0": "D",
    "\u0131": "i",
}

_EM_DASHES = "\u2014\u2015\u2013\u2e3a\u2e3b"
_NON_ASCII = re.compile(r"[^\x00-\x7f]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WS = " \t\r\n"

# A text file has at most a few stray control characters; a share above this
# (or any NUL) means the input is not text.
_MAX_CONTROL_SHARE = 0.02


@dataclass(frozen=True)
class Origins:
    """Where each character of a normalised text came from: read-along spans and
    words in the source's own characters (``gflite.timings``)."""

    source: str  # the text before normalisation (decoded; undecodable bytes removed)
    index: array = field(repr=False)  # per normalised character, its offset in ``source``

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The normalised characters [start, end) as [first, end) of ``source``:
        from the first one's origin to past the last one's (a character spelled
        as several, "\u2026" as "...", is taken whole)."""
        if end <= start:
            at = self.index[start] if start < len(self.index) else len(self.source)
            return at, at
        return self.index[start], self.index[end - 1] + 1


@dataclass(frozen=True)
class Text:
    """Normalised input. ``text`` is pure ASCII with the original line endings."""

    text: str
    encoding: str
    replaced: int = 0
    """Characters mapped to an ASCII spelling (curly quotes, dashes, accents...)."""
    dropped: tuple[tuple[str, int], ...] = ()
    """(character, count) for characters flite cannot say, most frequent first."""
    spelled: tuple[tuple[str, str, int], ...] = ()
    """(symbol, its spelling, count) for symbols flite now says as a word ("£" is "GBP"), most frequent first."""
    invalid_bytes: int = 0
    """Bytes skipped because they were not valid in a text that is otherwise UTF-8."""
    origins: Origins | None = field(default=None, repr=False, compare=False)
    """``text``'s characters in the decoded input; only when asked (read-along timings)."""

    @property
    def dropped_count(self) -> int:
        return sum(n for _, n in self.dropped)

    @property
    def data(self) -> bytes:
        """The bytes flite reads."""
        return self.text.encode("ascii")


def read_text(path: str | Path, *, origins: bool = False) -> Text:
    """Read and normalise a text file; raise InputError if it is not usable text.
    ``origins``: keep the decoded text and where each character came from."""
    p = Path(path)
    with reading_input(p, "a text file"):
        data = p.read_bytes()
    return decode(data, name=str(p), origins=origins)


@contextlib.contextmanager
def reading_input(path: Path, kind: str) -> Iterator[None]:
    """Turn the OS's errors while reading the input ``path`` (a text file, a book)
    into one-line InputErrors."""
    try:
        yield
    except FileNotFoundError:
        raise InputError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"input is a directory, not {kind}: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read input {path}: {e.strerror or e}") from None


def from_string(text: str, *, name: str = "text", origins: bool = False) -> Text:
    """Normalise text already in memory (``gflite -t "..."``)."""
    # Bytes of a command-line argument that were not UTF-8 arrive as lone surrogates.
    text, invalid = _drop_escaped(text)
    _reject_binary(text, name)
    return _finish(text, "str", name, invalid, origins)


def decode(data: bytes, *, name: str = "input", origins: bool = False) -> Text:
    """Decode bytes (BOM if present, else UTF-8, else cp1252/Latin-1) and normalise.

    Raises InputError for binary data and for empty or whitespace-only text.
    """
    invalid = 0
    if data.startswith(codecs.BOM_UTF8):
        text, encoding = _strict(data[3:], "utf-8", name), "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, encoding = _strict(data, "utf-16", name), "utf-16"
    else:
        if b"\0" in data:
            raise InputError(f"{name} looks binary (it contains NUL bytes), not text")
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
            if text.isascii():
                encoding = "ascii"
        except UnicodeDecodeError:
            text, encoding = _mostly_utf8(data), "utf-8"
            if text is not None:
                text, invalid = _drop_escaped(text)
        if text is None:
            # Not UTF-8: treat as Windows-1252, which is Latin-1 plus printable
            # punctuation (curly quotes, dashes) in 0x80-0x9f; the five bytes
            # cp1252 leaves undefined keep their Latin-1 meaning (C1 controls).
            text = data.decode("latin-1").translate(_CP1252_HIGH)
            encoding = "cp1252" if re.search(rb"[\x80-\x9f]", data) else "latin-1"
    _reject_binary(text, name)
    return _finish(text, encoding, name, invalid, origins)


# Valid multi-byte UTF-8 is strong evidence (cp1252 text almost never forms such
# sequences), an invalid byte weak evidence (a bad copy-paste, a truncated
# download): a text is UTF-8 if it has valid non-ASCII characters and at most
# this many invalid bytes per valid character.
_STRAY_PER_VALID = 4

def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 with a few corrupt bytes (a bad copy-paste) stays UTF-8; the bad bytes
    come back as lone surrogates (surrogateescape), for _drop_escaped to skip and
    count. None if it is not UTF-8."""
    text = data.decode("utf-8", errors="surrogateescape")
    found = Counter(_NON_ASCII.findall(text))
    bad = sum(n for c, n in found.items() if "\udc80" <= c <= "\udcff")
    # Characters flite can say count for UTF-8, and 4-byte ones (emoji); cp1252
    # bytes that happen to form a valid sequence make CJK or other scripts (e.g.
    # "\xe9\x94\x97", "é”—"), which are not evidence.
    good = sum(n for c, n in found.items()
               if c in _ASCII_FOR or c >= "\U00010000" or (c >= "\x80" and _ascii_for(c)))
    if good == 0:
        return None  # ASCII and stray high bytes: a single-byte encoding
    return text if bad <= _STRAY_PER_VALID * good else None


_ESCAPED = re.compile("[\udc80-\udcff]")


def _drop_escaped(text: str) -> tuple[str, int]:
    """Remove undecodable bytes (lone surrogates); returns (text, how many)."""
    if text.isascii():
        return text, 0
    return _ESCAPED.subn("", text)


def _strict(data: bytes, encoding: str, name: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise InputError(
            f"{name} starts with a {encoding} byte-order mark but is not valid {encoding} "
            f"(byte offset {e.start})"
        ) from None


def _cp1252_high() -> dict[int, str]:
    table = {}
    for b in range(0x80, 0xA0):
        try:
            table[b] = bytes([b]).decode("cp1252")
        except UnicodeDecodeError:
            pass
    return table


_CP1252_HIGH = _cp1252_high()


def _reject_binary(text: str, name: str) -> None:
    if "\0" in text:
        raise InputError(f"{name} looks binary (it contains NUL characters), not text")
    sample = text[: 1 << 20]
    controls = sum(1 for _ in re.finditer(r"[\x01-\x08\x0e-\x1f\x7f-\x9f]", sample))
    if controls > max(8, _MAX_CONTROL_SHARE * len(sample)):
        raise InputError(
            f"{name} looks binary ({controls} control characters in {len(sample)}), not text"
        )


def _finish(text: str, encoding: str, name: str, invalid: int = 0, origins: bool = False) -> Text:
    spelled = _spelled(text)
    source = text
    text, replaced, dropped = normalise(text)
    if not text.strip(_WS):
        raise InputError(f"{name} is empty: there is no text to speak")
    mapped = Origins(source, _checked_origins(source, text)) if origins else None
    return Text(text=text, encoding=encoding, replaced=replaced, dropped=dropped, spelled=spelled,
                invalid_bytes=invalid, origins=mapped)


def _spelled(text: str) -> tuple[tuple[str, str, int], ...]:
    """Symbols (not letters, quotes or dashes) that normalise() replaces with a word."""
    if text.isascii():
        return ()
    found = Counter(c for c in _NON_ASCII.findall(text) if c in _ASCII_FOR or not c.isalpha())
    out = []
    for ch, n in found.items():
        if ch.isalpha():
            continue  # a letter spelled in ASCII ("ß" as "ss") reads as itself
        word = _ascii_for(ch).strip()
        if any(c.isalpha() for c in word):
            out.append((ch, word, n))
    return tuple(sorted(out, key=lambda t: (-t[2], t[0])))


def normalise(text: str) -> tuple[str, int, tuple[tuple[str, int], ...]]:
    """Map ``text`` to ASCII. Returns (ascii_text, replaced_count, dropped_counts).

    Line endings (``\\n``, ``\\r\\n``, lone ``\\r``) and tabs pass through untouched.
    """
    if text.startswith("\ufeff"):
        text = text[1:]  # a BOM decoded as a character is an encoding mark, not text
    if text.isascii() and not _NON_ASCII.search(text):
        return text, 0, ()
    replaced = 0
    dropped: Counter[str] = Counter()
    if any(d in text for d in _EM_DASHES):
        text, n = _dashes(text)
        replaced += n
    found = Counter(_NON_ASCII.findall(text))
    table: dict[str, str] = {}
    for ch, n in found.items():
        out = _ascii_for(ch)
        table[ch] = out
        if out or ch in _ASCII_FOR:
            replaced += n
        else:
            dropped[ch] += n
    if table:
        text = text.translate(str.maketrans(table))
    return text, replaced, tuple(sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])))


def normalise_origins(text: str) -> tuple[str, array]:
    """``normalise(text)[0]`` and, per character of it, the index in ``text`` of
    the character it came from (a read-along EPUB maps times back to the book
    with it, subtitles show the source's own characters). Slower than
    normalise: only for read-along."""
    said = normalise(text)[0]
    return said, _checked_origins(text, said)


def _checked_origins(text: str, normalised: str) -> array:
    """Per character of ``normalised`` (``normalise(text)[0]``), its index in ``text``."""
    if normalised == text:
        return array("q", range(len(text)))
    out: list[str] = []
    origins = array("q")
    skip = 1 if text.startswith("\ufeff") else 0
    s = text[skip:]
    table: dict[str, str] = {}
    for i, c in enumerate(s):
        if c in _EM_DASHES:  # as _dashes, which looks at the characters around it
            before = s[i - 1] if i > 0 else " "
            after = s[i + 1] if i + 1 < len(s) else " "
            if c == "\u2013" and before not in _WS and after not in _WS:
                said = "-"
            else:
                said = ("" if before in _WS else " ") + "--" + ("" if after in _WS else " ")
        elif not _NON_ASCII.match(c):
            said = c
        else:
            if c not in table:
                table[c] = _ascii_for(c)
            said = table[c]
        out.append(said)
        origins.extend([i + skip] * len(said))
    if "".join(out) != normalised:  # one fact in two places: never let them part silently
        raise AssertionError("normalise_origins disagrees with normalise")
    return origins


def _ascii_for(ch: str) -> str:
    if ch in _ASCII_FOR:
        return _ASCII_FOR[ch]
    if ch < "\x80" or unicodedata.category(ch) in ("Cc", "Cf"):
        return ""  # control and format characters: nothing to say
    decomposed = unicodedata.normalize("NFKD", ch)
    out = "".join(_ASCII_FOR.get(c, c) for c in decomposed if unicodedata.category(c) != "Mn")
    if out.isascii() and out.isprintable():
        return out
    return ""


def _dashes(text: str) -> tuple[str, int]:
    """Spell dashes the way flite pauses for them.

    flite pauses at a free-standing ``--`` token but reads ``a--b`` as one word,
    so a dash between words becomes `` -- `` (spaces added only where missing).
    An en dash with no space on either side (``1914–1918``) is a plain hyphen.
    """
    count = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        s, i = m.string, m.start()
        before = s[i - 1] if i > 0 else " "
        after = s[i + 1] if i + 1 < len(s) else " "
        if m.group() == "\u2013" and before not in _WS and after not in _WS:
            return "-"
        return ("" if before in _WS else " ") + "--" + ("" if after in _WS else " ")

    return re.sub(f"[{_EM_DASHES}]", repl, text), count
