"""Per-chunk timing files → word and sentence times in the whole book, to the sample.

Each chunk's flite.wasm writes a timing file (``gflite.timings_file``): per
utterance its sample count, per token its byte offset in the chunk and its
start and end in seconds from the utterance's first sample. A
:class:`Timeline` is fed the chunks in book order, each with the sample at
which the stitcher starts it (after any pause inserted before it), so:

- an utterance starts at its chunk's start plus the samples of the
  utterances before it in that chunk (flite's counts, as written);
- a word's start and end are that plus flite's time, rounded to a sample;
- a token's ``file_pos`` (bytes into the chunk) plus the chunk's offset is
  its offset in the normalised text gflite gave flite.

``span`` points into that normalised text (the read-along EPUB maps it to
the book's documents). Given the normalised text's :class:`~gflite.text.Origins`
(plain text, ``-t``, a book), each word and sentence also knows its
``source_span``, in the decoded input (a book: its chapters' own texts,
joined), and its ``text`` is the source's own characters ("café", not
"cafe"). A sentence is one flite utterance that has words.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gflite.chunking import Chunk
from gflite.gwasm.spool import OutputFile
from gflite.timings_file import TimingsError, UtteranceTimes, parse

if TYPE_CHECKING:
    from gflite.pauses import Cut
    from gflite.text import Origins

# flite splits tokens at these characters; a token's span in the text runs to the next one.
_WHITESPACE = " \t\r\n"
# A sentence's text has its line breaks made single spaces; other spaces (no-break) are its own.
_BREAKS = re.compile("[ \t\r\n\f\v\x85\u2028\u2029]+")


@dataclass(frozen=True)
class WordTime:
    sentence: int  # index of its sentence in the book, from 0
    start: int  # first sample, in the whole audio
    end: int  # sample after its last
    text: str  # as in the source (with its punctuation); flite's token name if it has no position
    span: tuple[int, int] | None  # [start, end) in the normalised text, None if flite gave no position
    chapter: int | None = None  # index of its chapter, from 0, in a book
    source_span: tuple[int, int] | None = None  # [start, end) in the source, when its origins are known


@dataclass(frozen=True)
class SentenceTime:
    index: int
    start: int  # its first word's start sample
    end: int  # its last word's end sample
    text: str  # from its first word to its last, as in the source, line breaks made single spaces
    span: tuple[int, int] | None
    words: tuple[WordTime, ...]
    chapter: int | None = None
    # Its utterance's samples as flite wrote them, [first, end): a read-along
    # clip (gflite.readalong), equal to flite's audio of this sentence alone.
    audio: tuple[int, int] = (0, 0)
    source_span: tuple[int, int] | None = None


def one_line(text: str, *, strip: bool = True) -> str:
    """``text`` with each run of white space that holds a line break (or only
    ASCII spaces and tabs) made one space, and no space at either end unless
    ``strip`` is False; a no-break space stays the source's own."""
    text = _BREAKS.sub(" ", text)
    return text.strip(" ") if strip else text


class Timeline:
    """Collects chunks' timings in book order; see the module docstring."""

    def __init__(self, text: str, sample_rate: int, *, positions: bool = True, ssml: bool = False,
                 origins: Origins | None = None) -> None:
        self.text = text
        # The normalised text's characters in the source; None: texts are the normalised text's.
        self.origins = origins
        # A token's span ends at white space, and in SSML also where a tag starts.
        self._stops = _WHITESPACE + "<" if ssml else _WHITESPACE
        # flite's file_pos is the token's offset for -f; for -t it is something else
        # (past the token), so there tokens are placed by their names, in order.
        self.positions = positions
        self.sample_rate = sample_rate  # until a chunk says otherwise
        self.samples = 0  # where the next chunk starts unless told
        self.sentences: list[SentenceTime] = []
        self.chapter: int | None = None
        self.chapters: list[str] = []
        self._cursor = 0  # characters into the current chunk past the last token placed

    @property
    def words(self) -> tuple[WordTime, ...]:
        return tuple(w for s in self.sentences for w in s.words)

    def pause(self, seconds: float) -> None:
        """Silence inserted before the next chunk, rounded to frames as the stitcher does."""
        self.samples += round(seconds * self.sample_rate)

    def begin_chapter(self, title: str) -> None:
        self.chapter = len(self.chapters)
        self.chapters.append(title)

    def add(self, chunk: Chunk, timings: bytes, *, frames: int, start: int | None = None) -> None:
        """One chunk's timing file; ``frames`` is its WAV's sample count and ``start``
        the stitcher's sample count before it (None: counted here)."""
        utterances = parse(timings)
        if sum(u.samples for u in utterances) != frames:
            raise TimingsError(f"chunk {chunk.index + 1}: its timing file counts other samples than its audio")
        if start is not None:
            self.samples = start
        data, self._cursor = chunk.data, 0
        at = self.samples
        for utt in utterances:
            self.sample_rate = utt.sample_rate
            self._utterance(utt, at, chunk, data)
            at += utt.samples
        self.samples = at

    def _utterance(self, utt: UtteranceTimes, at: int, chunk: Chunk, data: bytes) -> None:
        if not utt.tokens:
            return  # punctuation only: no words, no sentence
        index = len(self.sentences)
        rate = utt.sample_rate
        words = []
        for token in utt.tokens:
            start = at + round(token.start * rate)
            end = max(start, at + round(token.end * rate))
            span = self._span(token.file_pos, token.name, chunk, data)
            own, text = self._source(span)
            words.append(WordTime(index, start, end, text if text is not None else token.name, span, self.chapter,
                                  own))
        spans = [w.span for w in words if w.span is not None]
        span = (spans[0][0], spans[-1][1]) if spans else None
        own, said = self._source(span)
        if said is None:
            said = " ".join(w.text for w in words)
        self.sentences.append(SentenceTime(index, words[0].start, words[-1].end, one_line(said),
                                           span, tuple(words), self.chapter, (at, at + utt.samples), own))

    def _source(self, span: tuple[int, int] | None) -> tuple[tuple[int, int] | None, str | None]:
        """(its span in the source, the source's characters there) for a span of the normalised text."""
        if span is None:
            return None, None
        if self.origins is None:
            return None, self.text[span[0]:span[1]]
        own = self.origins.span(*span)
        return own, self.origins.source[own[0]:own[1]]

    def _span(self, file_pos: int, name: str, chunk: Chunk, data: bytes) -> tuple[int, int] | None:
        """The token's place in the text: where ``file_pos`` says if the token's
        name is there (past its leading punctuation), else the name's next
        occurrence after the previous token."""
        text, begin = chunk.text, -1
        if self.positions and 0 <= file_pos <= len(data):
            at = len(data[:file_pos].decode("utf-8", "ignore"))  # bytes → characters (SSML may be non-ASCII)
            word_end = at
            while word_end < len(text) and text[word_end] not in self._stops:
                word_end += 1
            if name in text[at:word_end]:
                begin = at
        if begin < 0:
            found = text.find(name, self._cursor)
            if found < 0:
                return None
            begin = found
            while begin > self._cursor and text[begin - 1] not in self._stops and text[begin - 1] != ">":
                begin -= 1
        end = begin
        while end < len(text) and text[end] not in self._stops:
            end += 1
        self._cursor = end
        return (chunk.start + begin, chunk.start + end)


def chunk_outputs(timeline: Timeline, chunk: Chunk, outputs: dict[str, bytes | OutputFile], cut: Cut | None,
                  start: int | None) -> None:
    """The pipeline's hook: one finished chunk, the cut (pause, chapter) before
    it, and the stitcher's sample count before its audio (None without audio out)."""
    from gflite import synth

    if cut is not None:
        if start is None and cut.silence > 0:
            timeline.pause(cut.silence)
        if cut.chapter is not None:
            timeline.begin_chapter(cut.chapter)
    if synth.TIMINGS_NAME not in outputs:
        raise TimingsError(f"chunk {chunk.index + 1} came back without its timing file")
    timing = outputs[synth.TIMINGS_NAME]
    if isinstance(timing, OutputFile):
        timing = timing.read()  # a small text file, capped by its parser
    timeline.add(chunk, timing, frames=_frames(outputs[synth.OUT_NAME], f"chunk {chunk.index + 1}"),
                 start=start)


def _frames(audio: bytes | OutputFile, name: str) -> int:
    """The frames of a chunk's WAV, from its headers alone when it is a file."""
    from gflite.wav import parse_wav, parse_wav_file

    if not isinstance(audio, OutputFile):
        fmt, pcm = parse_wav(audio, name=name)
        return len(pcm) // fmt.block_align
    fd = os.open(audio.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fmt, _, length = parse_wav_file(fd, audio.offset, audio.size, name=name)
    finally:
        os.close(fd)
    return length // fmt.block_align
