"""Split normalised text into chunks that flite synthesises independently.

A chunk may only end where flite itself ends an utterance when it reads the
whole file (``flite_ts_to_speech`` in flite 2.2's ``src/synth/flite.c``): flite
synthesises each utterance on its own and appends the waves, so if every chunk
starts exactly at an utterance start, the chunks' audio put end to end is the
whole file's audio, sample for sample. :func:`utterance_starts` replays flite's
tokenizer and break rules in Python to find those places.

Among flite's breaks we prefer real sentence ends, found with nltk's Punkt, so
a chunk never stops inside a sentence (e.g. after a colon or at flite's
500-token limit). Only a "sentence" longer than twice the chunk size (text with
no punctuation) may be cut at a flite break inside it.

Run each chunk as ``flite -f chunk.txt`` with the chunk's exact bytes: ``-t``
makes one utterance of the whole string and would not match.

nltk is imported only when the text is long enough to need more than one chunk:
importing it costs about a second.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Iterable, Iterator, NamedTuple

from gflite.errors import UsageError

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktParameters

# What the usenglish front end gives flite's tokenizer (lang/usenglish/usenglish.c):
# no single-character symbols, so a token is a maximal run of non-whitespace.
_WHITESPACE = " \t\n\r"
_PREPUNCT = "\"'`({["
_POSTPUNCT = "\"'`.,:;!?(){}[]"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_WORD = re.compile(r"[^ \t\n\r]+")
_MAX_UTT_TOKENS = 500  # flite breaks when an utterance already holds more than this
# The post-punctuation flite's break rule looks at (default_utt_break).
_MARKS = frozenset(".:?!")

# split()'s default; gflite sizes chunks by voice (voices.chunk_chars).
DEFAULT_TARGET_CHARS = 2000
# The first chunk is this much smaller than the target (and the next ones grow
# by doubling), so streamed output (-o -) starts after a short synthesis.
FIRST_CHUNK_DIVISOR = 8
# Near the end a chunk aims at this fraction of the text left (never below the
# first chunk's size), so the last chunks are short and the workers finish
# together instead of one idling while another speaks a full-size chunk
# (measured: up to 8 % of a 2-core slt run). A quarter suits up to about four
# workers; cuts cannot depend on the worker count, or -j would change slt's audio.
TAPER_DIVISOR = 4
# Punkt learns abbreviations from the input; a bigger prefix costs time before
# the first chunk can start and teaches little more. Training time grows faster
# than the prefix: the 450k-character benchmark book is chunked in 2.4 s with
# 1 MiB, 1.1 s with 128 KiB and 0.8-0.9 s with 64 KiB (training 0.25-0.34 s
# instead of 0.57-0.61 s), and 64 KiB changes 6 of its 2,842 sentence ends at
# flite's breaks: 133 of 134 kal16 chunks keep their bytes (and cached audio).
_TRAIN_CHARS = 1 << 16
# How much text before a candidate cut decides whether it is taken.
_WINDOW = 64


@dataclass(frozen=True)
class Chunk:
    """One subtask's text: ``text == whole[start:end]``, contiguous, in order."""

    index: int
    start: int
    end: int
    text: str
    sha256: str

    @property
    def data(self) -> bytes:
        """The bytes to hand to ``flite -f``."""
        return self.text.encode("utf-8")


def split(
    text: str,
    *,
    subtasks: int | None = None,
    target_chars: int = DEFAULT_TARGET_CHARS,
    forced: tuple[int, ...] = (),
) -> tuple[Chunk, ...]:
    """Cut ``text`` into chunks whose flite audio, concatenated, equals the whole's.

    By default the cuts depend on the text (and ``target_chars``) alone: the
    first chunk is about ``target_chars / 8`` long, each next one doubles up
    to ``target_chars``, and near the end they shrink again to a quarter of
    what is left. ``subtasks=N`` asks for N roughly equal chunks instead;
    fewer come back if the text has fewer places to cut.

    ``forced`` are offsets where a chunk must start (a book's chapters, or
    where a pause goes); each must be an utterance start (:func:`utterance_starts`).
    The text between forced cuts is split as a text of its own; with none,
    the cuts are exactly those of a plain text.
    """
    if subtasks is not None and subtasks < 1:
        raise UsageError(f"--subtasks must be at least 1, not {subtasks}")
    if target_chars < 1:
        raise UsageError(f"chunk size must be at least 1 character, not {target_chars}")
    edges = sorted({c for c in forced if 0 < c < len(text)})
    if edges:
        return _split_forced(text, edges, subtasks, target_chars)
    return _split(text, subtasks, target_chars)


def _split_forced(text: str, edges: list[int], subtasks: int | None, target_chars: int) -> tuple[Chunk, ...]:
    cuts: list[int] = []
    bounds = [0, *edges, len(text)]
    for a, b in zip(bounds, bounds[1:]):
        # --subtasks N is shared out by length (at least one chunk per segment).
        share = None if subtasks is None else max(1, round(subtasks * (b - a) / len(text)))
        if a:
            cuts.append(a)
        cuts.extend(a + c.start for c in _split(text[a:b], share, target_chars)[1:])
    return _chunks(text, cuts)


def _split(text: str, subtasks: int | None, target_chars: int) -> tuple[Chunk, ...]:
    n = len(text)
    first = max(1, target_chars // FIRST_CHUNK_DIVISOR)
    if subtasks == 1 or (subtasks is None and n <= first * 1.5):
        return _chunks(text, [])
    breaks = _utterance_breaks(text)
    if not breaks:
        return _chunks(text, [])
    if subtasks:
        # There are never more chunks than places to cut plus one: clamp before any
        # loop runs to N (--subtasks 99999999999999999999 would spin for hours).
        subtasks = min(subtasks, len(breaks) + 1)
    size = n / subtasks if subtasks else target_chars
    candidates = _candidates(text, breaks, max_gap=2 * size)
    if subtasks:
        cuts = _even_cuts(candidates, n, subtasks)
    else:
        cuts = _growing_cuts(text, candidates, first, target_chars)
    return _chunks(text, cuts)


def at(text: str, cuts: list[int]) -> tuple[Chunk, ...]:
    """Chunks cut exactly at ``cuts`` (sorted offsets) and nowhere else: for text
    whose pieces are cut already (SSML documents, see ``gflite.ssml``)."""
    return _chunks(text, sorted({c for c in cuts if 0 < c < len(text)}))


def _chunks(text: str, cuts: list[int]) -> tuple[Chunk, ...]:
    edges = [0, *cuts, len(text)]
    out = []
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        part = text[a:b]
        out.append(Chunk(i, a, b, part, hashlib.sha256(part.encode("utf-8")).hexdigest()))
    return tuple(out)


def _nearest(cands: list[int], want: float, lo: int, hi: int) -> int | None:
    """The candidate in (lo, hi) closest to ``want`` (the earlier one on a tie)."""
    first, stop = bisect_right(cands, lo), bisect_left(cands, hi)
    if first >= stop:
        return None
    k = bisect_right(cands, want, first, stop)
    options = [cands[x] for x in (k - 1, k) if first <= x < stop]
    return min(options, key=lambda c: (abs(c - want), c))


def _growing_cuts(text: str, cands: list[int], first: int, target: int) -> list[int]:
    """Content-defined cuts: whether a candidate becomes a cut depends on the
    text just before it, not on its offset, so an edit moves only the cuts
    next to it and the chunks after keep their bytes (and their cached audio).

    Chunk k aims at ``aim = min(target, first * 2**k, max(first, left / 4))``
    where ``left`` is the text after the chunk's start: no cut before
    ``aim / 4``; past that a candidate is taken with a probability
    proportional to the sentence it ends (mean length about ``aim``); a chunk
    never grows past ``3/2 aim`` if a candidate allows. The small minimum
    keeps the decision almost free of where the chunk started, so after an
    edit the cuts fall back in step within a chunk or two. ``left`` does not
    change with an edit before the chunk, so the taper keeps that property.
    """
    n = len(text)
    cuts: list[int] = []
    pos, size, prev = 0, first, 0
    for i, c in enumerate(cands):
        aim = min(size, max(first, (n - pos) / TAPER_DIVISOR))
        if n - pos <= aim * 1.5:
            break
        if c - pos >= aim / 4:
            overshoot = i + 1 == len(cands) or cands[i + 1] - pos > 1.5 * aim
            if overshoot or _score(text[max(0, c - _WINDOW) : c]) * (aim * 0.75) < c - prev:
                cuts.append(c)
                pos, size = c, min(target, size * 2)
        prev = c
    return cuts


def _score(window: str) -> float:
    """A uniform number in [0, 1) that depends only on ``window``'s text."""
    digest = hashlib.blake2b(window.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _even_cuts(cands: list[int], n: int, parts: int) -> list[int]:
    cuts: list[int] = []
    pos = 0
    for k in range(1, parts):
        want = n * k / parts
        if want <= pos:
            continue  # an earlier cut had to go past this one
        c = _nearest(cands, want, pos, n)
        if c is None:
            break
        cuts.append(c)
        pos = c
    return cuts


def _candidates(text: str, breaks: list[tuple[int, int]], max_gap: float) -> list[int]:
    """flite's breaks that are also sentence or paragraph ends, plus all of flite's
    breaks inside any stretch longer than ``max_gap`` that has no such end."""
    ends = sentence_ends(text)
    starts = [start for _, start in breaks]
    good = [
        start
        for prev_end, start in breaks
        if prev_end in ends or text.count("\n", prev_end, start) >= 2
    ]
    out = list(good)
    edges = [0, *good, len(text)]
    for a, b in zip(edges, edges[1:]):
        if b - a > max_gap:
            out.extend(starts[bisect_right(starts, a) : bisect_left(starts, b)])
    return sorted(set(out))


# --- flite's tokenizer and utterance breaks -------------------------------------


class _Token(NamedTuple):
    ws_start: int  # where the whitespace before this token starts
    start: int  # where the token (with its pre-punctuation) starts
    name: str  # the token without pre/post punctuation ("" for a lone quote)
    punc: str  # post-punctuation
    ws: str  # the whitespace before it, exactly as flite keeps it
    eof: bool  # flite hit end of file while reading this token


def _name_punc(word: str) -> tuple[str, str]:
    """A token's name and post-punctuation, as flite splits them."""
    rest = word.lstrip(_PREPUNCT)
    if not rest:
        return "", ""  # only pre-punctuation: flite returns an empty token
    # Post-punctuation never includes the token's first character.
    name = rest[0] + rest[1:].rstrip(_POSTPUNCT)
    return name, rest[len(name) :]


def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


def _breaks(prev: _Token, tok: _Token) -> bool:
    """``default_utt_break`` (src/synth/cst_synth.c): does ``tok`` start a new utterance?"""
    ws, punc, last, first = tok.ws, prev.punc, prev.name, tok.name[0]
    if ws.count("\n") >= 2:
        return True
    if last in ("Yahoo", "YAHOO", "yahoo") and "!" in punc and first in _LOWER:
        return False
    if ":" in punc or "?" in punc or "!" in punc:
        return True
    if "." in punc and first in _UPPER:
        if len(ws) > 1:
            return True
        # "Mr. Smith", "U.S. Army": a short capitalised word or one ending in a
        # capital is taken as an abbreviation.
        return not (last[-1] in _UPPER or (_utf8_len(last) < 4 and last[0] in _UPPER))
    return False


def utterance_starts(text: str) -> tuple[int, ...]:
    """Offsets where ``flite -f`` on ``text`` starts a new utterance and a chunk may start."""
    return tuple(start for _, start in _utterance_breaks(text))


def valid_cuts(text: str, cuts: Iterable[int]) -> bool:
    """True if every offset in ``cuts`` (strictly rising, inside the text) is an
    utterance start (:func:`utterance_starts`): chunks cut there, synthesised
    apart, put end to end make the whole text's audio.

    Most cuts are checked where they are, by flite's break rule on the token
    before and the token at the cut; the first one that rule does not prove
    (a break after 500 tokens) makes the whole text be tokenised once."""
    starts: frozenset[int] | None = None
    prev = 0
    for c in cuts:
        if isinstance(c, bool) or not isinstance(c, int) or not prev < c < len(text):
            return False
        prev = c
        if _breaks_at(text, c):
            continue
        if starts is None:
            starts = frozenset(utterance_starts(text))
        if c not in starts:
            return False
    return True


def _breaks_at(text: str, c: int) -> bool:
    """True if flite's rule between the token before ``c`` and the token at ``c``
    starts an utterance there (never true at a break it makes for another reason)."""
    if c <= 0 or text[c] in _WHITESPACE or text[c - 1] not in _WHITESPACE:
        return False
    m = _WORD.match(text, c)
    if m is None or m.end() == len(text):  # flite drops a break on the last token
        return False
    name, _ = _name_punc(m.group())
    prev_end = c
    while prev_end > 0 and text[prev_end - 1] in _WHITESPACE:
        prev_end -= 1
    if not name or prev_end == 0:
        return False
    prev_start = prev_end
    while prev_start > 0 and text[prev_start - 1] not in _WHITESPACE:
        prev_start -= 1
    last, punc = _name_punc(text[prev_start:prev_end])
    tail = _Token(0, prev_start, last, punc, "", False)
    return _breaks(tail, _Token(prev_end, c, name, "", text[prev_end:c], False))


def sentence_starts(text: str) -> tuple[int, ...]:
    """Utterance starts that also start a sentence (per Punkt) or a paragraph:
    where a sentence pause may go."""
    ends = sentence_ends(text)
    return tuple(
        start for prev_end, start in _utterance_breaks(text)
        if prev_end in ends or text.count("\n", prev_end, start) >= 2
    )


def _utterance_breaks(text: str) -> list[tuple[int, int]]:
    """(end of the previous token, start of the first token) of each new utterance.

    Mirrors the loop in ``flite_ts_to_speech`` (src/synth/flite.c), quirks
    included: a break on an empty token (a lone quote), a break when an
    utterance already holds more than 500 tokens, and a last token that flite
    silently drops when it triggers a break right at end of file.

    A chunk starts at the token itself and the whitespace before it ends the
    previous chunk. That whitespace only matters to the break rules, which a
    chunk's first token never meets, and a chunk ending in whitespace makes
    flite read its last token before end of file, so the drop quirk above
    cannot strike a single-word utterance at a chunk's end. Breaks before an
    empty token are left out: a chunk starting there would make flite
    synthesise an extra, empty utterance.
    """
    return list(iter_utterance_breaks(text))


def iter_utterance_breaks(text: str) -> Iterator[tuple[int, int]]:
    """:func:`_utterance_breaks` as they are found (see :mod:`gflite.chunkstream`).

    flite's loop, token by token, with the break rule (:func:`_breaks`) asked
    only where it could say yes: after a token holding ``.``, ``:``, ``?`` or
    ``!`` (the only post-punctuation it looks at), or across whitespace with
    two newlines. Anywhere else a token just joins the utterance, and the loop
    costs a few comparisons instead of a token object and a rule call: a book
    is cut in a third of the time. ``tests/test_chunking.py`` checks it against
    the plain mirror of flite's loop, token for token."""
    n = len(text)
    if not text:
        return
    count = 0  # tokens in the current utterance
    prev_end = 0  # end of the previous token: the whitespace before this one starts there
    tail: tuple[int, int] | None = None  # the previous token's span, once it may matter
    tail_marked = False  # the previous token holds a character the rule looks at
    for m in _WORD.finditer(text):
        start, end = m.span()
        first = text[start]
        empty = first in _PREPUNCT and not m.group().lstrip(_PREPUNCT)
        if empty or count > _MAX_UTT_TOKENS:
            breaks = True
        elif tail is None or not (tail_marked or (start - prev_end > 1 and text.count("\n", prev_end, start) >= 2)):
            breaks = False
        else:
            last, punc = _name_punc(text[tail[0]:tail[1]])
            name, _ = _name_punc(m.group())
            before = _Token(0, tail[0], last, punc, "", False)
            breaks = _breaks(before, _Token(prev_end, start, name, "", text[prev_end:start], False))
        if breaks:
            if end == n:
                return  # flite drops a break on the token that ends the file
            count = 0
            if not empty and start > 0:
                yield prev_end, start
        count += 1
        tail = (start, end)
        tail_marked = not _MARKS.isdisjoint(m.group())
        prev_end = end


# --- sentences (nltk Punkt) -----------------------------------------------------


def punkt() -> ModuleType:
    """``nltk.tokenize.punkt``, without nltk's package ``__init__`` when nltk is
    not imported yet.

    ``import nltk.tokenize.punkt`` runs ``nltk/__init__.py``, which imports
    corpus readers, translate, parse, sem... (0.3-0.4 s, more than Punkt's
    training, on the path to the first chunk); Punkt itself needs a handful of
    nltk's modules (0.13 s). So ``nltk`` and ``nltk.tokenize`` are stood in
    for by bare packages while Punkt is imported, and every ``nltk`` module
    this made is then taken out of ``sys.modules`` again: the module returned
    keeps working, and a later ``import nltk`` anywhere in the process
    imports the real package from scratch. On any failure, the normal import.
    """
    global _punkt
    if _punkt is None:
        if "nltk" in sys.modules:  # the real package is there: use it
            _punkt = importlib.import_module("nltk.tokenize.punkt")
        else:
            try:
                _punkt = _punkt_alone()
            except Exception:  # whatever went wrong, the normal way works
                _punkt = importlib.import_module("nltk.tokenize.punkt")
    return _punkt


_punkt: ModuleType | None = None


def _punkt_alone() -> ModuleType:
    spec = importlib.util.find_spec("nltk")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("nltk is not installed")
    root = list(spec.submodule_search_locations)
    before = set(sys.modules)
    try:
        for name, path in (("nltk", root), ("nltk.tokenize", [os.path.join(p, "tokenize") for p in root])):
            stand_in = ModuleType(name)
            stand_in.__path__ = path  # a package: its submodules are found under it
            stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            stand_in.__spec__.submodule_search_locations = path
            sys.modules[name] = stand_in
        return importlib.import_module("nltk.tokenize.punkt")
    finally:
        for name in set(sys.modules) - before:
            if name == "nltk" or name.startswith("nltk."):
                del sys.modules[name]


def sentence_ends(text: str) -> frozenset[int]:
    """Offsets just after each sentence's last non-space character, per Punkt."""
    from gflite.chunkstream import untimed

    tokenizer = untimed(punkt().PunktSentenceTokenizer(_params_for(text)))
    ends = set()
    for _, e in tokenizer.span_tokenize(text):
        m = _WORD.match(text, e)  # Punkt may end inside a run flite reads as one token
        ends.add(m.end() if m else e)
    return frozenset(ends)


def _params_for(text: str) -> PunktParameters:
    """Punkt trained on the input itself, plus the abbreviations we ship."""
    trainer = punkt().PunktTrainer()
    trainer.train(text[:_TRAIN_CHARS], finalize=True)
    params = trainer.get_params()
    shipped = shipped_params()
    params.abbrev_types |= shipped.abbrev_types
    params.collocations |= shipped.collocations
    params.sent_starters |= shipped.sent_starters
    for word, flags in shipped.ortho_context.items():
        params.ortho_context[word] |= flags
    return params


PARAMS_PATH = Path(__file__).parent / "data" / "punkt_en.json"


@lru_cache(maxsize=1)
def _shipped_json() -> dict:
    return json.loads(PARAMS_PATH.read_text("utf-8"))


def shipped_params() -> PunktParameters:
    """The Punkt parameters in gflite/data (made by scripts/make_punkt_params.py)."""
    raw = _shipped_json()
    params = punkt().PunktParameters()
    params.abbrev_types = set(raw["abbrev_types"])
    params.collocations = {tuple(c) for c in raw["collocations"]}
    params.sent_starters = set(raw["sent_starters"])
    for word, flags in raw["ortho_context"].items():
        params.ortho_context[word] = flags
    return params
