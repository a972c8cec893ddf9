"""Where chunks must be cut, and how much silence goes there.

A pause is exact digital silence (zero samples) that the stitcher writes
between two chunks, so a pause can only go where a chunk starts. Every place
a pause is asked for therefore becomes a forced chunk cut:

- a chapter start (always a cut for a book: its chapter mark is that chunk's
  first sample), with ``chapter`` seconds before it;
- a paragraph start (a blank line, where flite always ends an utterance), with
  ``paragraph`` seconds, when that is more than zero;
- a sentence start (flite's utterance break at a sentence end, per Punkt), with
  ``sentence`` seconds, when that is more than zero.

Where kinds coincide, the strongest boundary's silence is used (a chapter
start is also a paragraph start). Cutting at every paragraph or sentence
makes many small chunks (each a subtask); the audio of each equals native
flite's on that text, so the whole is flite's audio with the stated silences
inserted, and nothing else changed. Plain text has no pauses by default, so
its chunks, and its audio, stay exactly flite's.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gflite.errors import UsageError

# Longest pause accepted: a typo (--chapter-silence 150) should not add hours of silence.
MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Pauses:
    """Seconds of silence before each sentence, paragraph and chapter."""

    sentence: float = 0.0
    paragraph: float = 0.0
    chapter: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sentence", "paragraph", "chapter"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
                raise UsageError(f"--{name}-silence takes 0 to {MAX_SECONDS:g} seconds, not {value}")

    @property
    def any(self) -> bool:
        return bool(self.sentence or self.paragraph or self.chapter)


# For books (EPUB, Markdown, HTML). flite already ends each utterance with a
# short pause (about 0.1-0.2 s of its own silence segment), which is right
# between sentences; a paragraph, heading included, reads better with 0.4 s
# more (a narrator's breath), and a chapter with 1.5 s, long enough to hear
# that a new one begins, short enough not to seem like the end.
BOOK_PAUSES = Pauses(sentence=0.0, paragraph=0.4, chapter=1.5)


@dataclass(frozen=True)
class Cut:
    """A forced chunk start."""

    offset: int  # in the text flite reads
    silence: float  # seconds of silence before it (0 at the very start)
    chapter: str | None = None  # the title of the chapter it starts, if it does


_BLANK_LINE = re.compile(r"\n[ \t\r]*\n[ \t\r\n]*")


def cuts(text: str, pauses: Pauses, chapters: tuple[tuple[int, str], ...] = ()) -> tuple[Cut, ...]:
    """The forced cuts for ``text``: chapter starts ``(offset, title)`` (each an
    utterance start), and paragraph or sentence starts when their pause is on."""
    from gflite import chunking

    at: dict[int, Cut] = {}
    if pauses.sentence > 0:
        for s in chunking.sentence_starts(text):
            at[s] = Cut(s, pauses.sentence)
    if pauses.paragraph > 0:
        starts = set(chunking.utterance_starts(text))
        for m in _BLANK_LINE.finditer(text):
            if m.end() in starts:
                at[m.end()] = Cut(m.end(), pauses.paragraph)
    for offset, title in chapters:
        at[offset] = Cut(offset, pauses.chapter if offset else 0.0, title)
    return tuple(at[k] for k in sorted(at))
