"""What one ``gflite`` run is asked to do (:class:`Job`: where the text comes
from, where the audio goes, how it is made) and what it reports as it goes
(:class:`Plan`, :class:`Progress`, :class:`Summary`), decided before any work
starts. :mod:`gflite.pipeline` runs a Job; the CLI builds one from flags."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from gflite import synth
from gflite.pauses import Pauses
from gflite.text import Text, decode, from_string, read_text

if TYPE_CHECKING:
    from gflite.audiobook import Tags
    from gflite.books.anchors import BookMap
    from gflite.gwasm.execution import TaskReport
    from gflite.gwasm.subtask import SubtaskResult
    from gflite.replacements import Replacements
    from gflite.timings import Timeline

STDIN = "-"
STDOUT = "-"
DISCARD = "none"  # flite's "-o none": synthesise, write nothing


@dataclass(frozen=True)
class Source:
    """Where the text comes from: a file, stdin (``-``) or a literal string."""

    kind: str  # "file" | "stdin" | "text"
    value: str

    def __post_init__(self) -> None:
        if self.kind not in ("file", "stdin", "text"):
            raise ValueError(f"unknown source kind {self.kind!r}")

    def read(self, stdin: BinaryIO | None = None, *, origins: bool = False) -> Text:
        """The text, normalised; ``origins``: with the map back to the decoded input."""
        if self.kind == "text":
            return from_string(self.value, origins=origins)
        if self.kind == "stdin":
            return decode((stdin or sys.stdin.buffer).read(), name="stdin", origins=origins)
        return read_text(self.value, origins=origins)


@dataclass(frozen=True)
class BookText:
    """A book read and composed (``gflite.books``): the text flite reads, where
    each chapter starts, and the tags its audiobook carries."""

    text: Text
    chapters: tuple[tuple[int, str], ...]  # (offset in text.text, title), in order
    tags: Tags
    replaced_words: int = 0  # --replace rules applied while composing
    anchors: BookMap | None = None  # -o book.epub: where the text stands in the EPUB's documents


@dataclass(frozen=True)
class Job:
    """Everything one ``gflite`` run does, decided before any work starts."""

    source: Source
    output: str  # a path, "-" (WAV on stdout), or "none" (discard, as flite)
    options: synth.SynthOptions
    subtasks: int | None = None  # N roughly equal chunks; None: sized by voice
    workers: int | None = None  # local worker processes; None: all cores
    cluster: str | None = None
    redundancy: int = 1
    bid: float | None = None
    budget: float | None = None
    timeout: float | None = None  # whole job, seconds
    subtask_timeout: float | None = None  # per chunk, seconds; None: from the chunk's expected cost
    retries: int = 2
    target_chars: int | None = None  # chunk size; None: chunking's default for the voice
    audit: float = 0.0  # fraction of a cluster's accepted chunks run again on this machine
    use_cache: bool = True  # replay and store finished chunks in the result cache
    book: BookText | None = None  # a structured book: read instead of source, chapters marked
    pauses: Pauses = Pauses()  # silence at sentence, paragraph and chapter starts
    replacements: Replacements | None = None  # --replace (a book's are applied while composing it)
    split: bool = False  # --split chapters: output is a folder, one file per chapter
    split_format: str = "m4a"
    # Read-along (gflite.timings, gflite.subtitles); any of these sets options.timings.
    subtitles: str | None = None  # --subtitles FILE.srt|FILE.vtt
    subtitle_words: bool = False  # --subtitles-words: a cue per word
    timings: str | None = None  # --timings FILE.json

    @property
    def source_spans(self) -> bool:
        """Subtitles and timings show the source's own characters, and spans index
        it, when flite reads it mapped character by character: not with -ssml or
        --replace (gflite rewrites the text), where they are the text flite read."""
        return (self.subtitles is not None or self.timings is not None) and not self.options.ssml \
            and self.replacements is None


@dataclass(frozen=True)
class Plan:
    """What is about to run, reported before any synthesis starts."""

    text: Text
    chunks: int
    characters: int
    workers: int  # worker slots of the executor
    workers_asked: int | None = None  # -j N when it was more than the cap (see local_workers)
    subtask_timeout: float = 0.0  # seconds per chunk attempt
    chunks_estimated: bool = False  # a long text is cut while it runs: ``chunks`` is an estimate


@dataclass(frozen=True)
class Progress:
    """One finished chunk (in completion order) and the totals so far."""

    result: SubtaskResult
    from_cache: bool
    characters: int  # this chunk's
    chunks_done: int
    characters_done: int
    audio_seconds: float  # audio made so far, by every finished chunk


@dataclass(frozen=True)
class Summary:
    """What a finished run did: chunks, cache hits, audio length, time, files written."""
    chunks: int
    from_cache: int
    characters: int
    audio_seconds: float  # audio written
    elapsed: float
    output: str
    report: TaskReport | None = None  # providers' bill, verification verdicts
    unknown_length: bool = False  # a WAV past 4 GiB: its header says "length unknown"
    replaced_words: int = 0  # --replace
    chapters: int = 0  # chapter marks written
    pauses: int = 0  # silences inserted
    files: tuple[str, ...] = ()  # --split chapters: the files written
    timeline: Timeline | None = None  # word and sentence times, when the job asked for them
