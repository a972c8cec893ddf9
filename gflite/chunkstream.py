"""The chunks of :func:`gflite.chunking.split` (its default, growing cuts), made
one at a time: the first chunk is ready after the text up to its cut has
been read, not after the whole book has been tokenised twice (flite's
breaks, then Punkt's sentences: about 1.5 s for a 450k-character book on a
loaded 2-core machine), so its synthesis starts while the rest is still
being cut.

The cuts are exactly :func:`~gflite.chunking.split`'s: each stage below is the
eager one's loop run lazily, reading ahead only as far as the next decision
needs (one candidate, one sentence). Cached chunks and slt's noise-dependent
audio depend on that; ``tests/test_chunkstream.py`` checks it against
``split`` on books.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gflite import chunking
from gflite.chunking import Chunk

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktSentenceTokenizer


def chunks(text: str, target_chars: int = chunking.DEFAULT_TARGET_CHARS) -> Iterator[Chunk]:
    """``split(text, target_chars=target_chars)``, chunk by chunk."""
    if target_chars < 1:
        return iter(chunking.split(text, target_chars=target_chars))  # its error
    return _chunks(text, target_chars)


def _chunks(text: str, target: int) -> Iterator[Chunk]:
    n = len(text)
    first = max(1, target // chunking.FIRST_CHUNK_DIVISOR)
    if n <= first * 1.5:
        yield from chunking.split(text, target_chars=target)
        return
    start, index = 0, 0
    for cut in _growing_cuts(text, _candidates(text, 2 * target), first, target):
        yield _chunk(text, index, start, cut)
        start, index = cut, index + 1
    yield _chunk(text, index, start, n)


def lead_end(text: str, target_chars: int = chunking.DEFAULT_TARGET_CHARS) -> int | None:
    """Where a lead piece of the first chunk may end, known without Punkt: the
    first utterance start at or past a quarter of the first chunk's aim, or
    None when the text is one chunk or has no such start nearby.

    The first chunk aims at ``first = target // 8`` (its aim cannot be less,
    see :func:`_growing_cuts`), and no cut comes before ``aim / 4``; every
    cut is an utterance start. So the first chunk ends at or past the first
    utterance start past ``first / 4``: the text up to there is a whole
    number of the first chunk's utterances, and flite's audio of it is the
    first chunk's audio's beginning, sample for sample (for the clustergen
    voices too: both runs start with the same noise state). A streamed
    output can send that audio before Punkt has even cut the first chunk."""
    first = max(1, target_chars // chunking.FIRST_CHUNK_DIVISOR)
    if len(text) <= first * 1.5:
        return None
    for _, start in chunking.iter_utterance_breaks(text):
        if start >= first / 4:
            return start if start <= 2 * first else None  # longer: no sooner than the chunk itself
    return None


def _chunk(text: str, index: int, a: int, b: int) -> Chunk:
    part = text[a:b]
    return Chunk(index, a, b, part, hashlib.sha256(part.encode("utf-8")).hexdigest())


def _sentence_ends(text: str) -> Iterator[int]:
    """:func:`chunking.sentence_ends`, in rising order, as Punkt finds them."""
    tokenizer = untimed(chunking.punkt().PunktSentenceTokenizer(chunking._params_for(text)))
    for _, e in tokenizer.span_tokenize(text):
        m = chunking._WORD.match(text, e)  # Punkt may end inside a run flite reads as one token
        yield m.end() if m else e


def untimed(tokenizer: PunktSentenceTokenizer) -> PunktSentenceTokenizer:
    """``tokenizer`` without nltk's wall-clock limit on its sentence-end pattern.

    nltk 3.9.3+ (``nltk.redos``) runs every regular expression under a 5 s
    wall-clock limit, counted over a whole ``finditer``. Punkt's own pattern is
    linear, but over a long book, read lazily while the workers take both
    cores, its wall time passes 5 s (the benchmark book repeated 3 times failed
    with TimeoutError). Our input is not a pattern: the limit guards nothing here."""
    # Punkt's own redos (see chunking.punkt: nltk may not be in sys.modules).
    redos = vars(chunking.punkt()).get("redos")
    if redos is None:  # an nltk without the limit
        return tokenizer
    lang = tokenizer._lang_vars
    lang._re_period_context = redos.compile(lang.period_context_re(), timeout=None)
    return tokenizer


def _candidates(text: str, max_gap: float) -> Iterator[int]:
    """:func:`chunking._candidates`, in rising order: flite's breaks that end a
    sentence or a paragraph, and every flite break inside a stretch longer than
    ``max_gap`` without one (known once the stretch's end is found)."""
    ends = _sentence_ends(text)
    seen: set[int] = set()
    last_end = -1
    pending: list[int] = []  # flite's other breaks since the last good one
    a = 0
    for prev_end, start in chunking.iter_utterance_breaks(text):
        while last_end < prev_end:  # read sentences up to this break
            e = next(ends, None)
            if e is None:
                last_end = len(text) + 1
                break
            seen.add(e)
            last_end = e
        good = prev_end in seen or text.count("\n", prev_end, start) >= 2
        seen = {e for e in seen if e >= prev_end}  # ends behind us are never asked again
        if not good:
            pending.append(start)
            continue
        if start - a > max_gap:
            yield from (p for p in pending if a < p < start)
        pending.clear()
        yield start
        a = start
    if len(text) - a > max_gap:
        yield from (p for p in pending if a < p < len(text))


def _growing_cuts(text: str, cands: Iterator[int], first: int, target: int) -> Iterator[int]:
    """:func:`chunking._growing_cuts` over an iterator, one candidate ahead."""
    n = len(text)
    pos, size, prev = 0, first, 0
    c = next(cands, None)
    while c is not None:
        after = next(cands, None)
        aim = min(size, max(first, (n - pos) / chunking.TAPER_DIVISOR))
        if n - pos <= aim * 1.5:
            return
        if c - pos >= aim / 4:
            overshoot = after is None or after - pos > 1.5 * aim
            if overshoot or chunking._score(text[max(0, c - chunking._WINDOW) : c]) * (aim * 0.75) < c - prev:
                yield c
                pos, size = c, min(target, size * 2)
        prev = c
        c = after
