"""Parse the word-timings file flite.wasm writes beside its audio.

flite.wasm writes it when run with ``--sets timings_file=NAME``
(``wasm_bin/timings.c``, format documented in ``wasm_bin/README.md``)::

    gflite-timings 1
    U <samples> <sample_rate>
    W <file_pos> <start> <end> <name>

One ``U`` line per utterance (its sample count as written to the WAV), then
one ``W`` line per token that has words: the token's byte offset in the
input (-1 if none), its first word's start and last word's end in seconds
from the utterance's start, and the token's name (the rest of the line).

The file comes from a provider, so it is data: parsed with caps on its size,
line length and counts, every field checked, nothing trusted for its length.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gflite.errors import ExecutionError

MAGIC = b"gflite-timings 1"
MAX_BYTES = 64 << 20
MAX_LINE = 4096
MAX_UTTERANCES = 1_000_000
MAX_TOKENS = 4_000_000
# A WAV's sample count fits 32 bits; rates flite uses are 8-48 kHz.
MAX_SAMPLES = (1 << 32) - 1
MAX_RATE = 192_000
# An utterance longer than a day is not flite's.
MAX_SECONDS = 86_400.0

_INT = re.compile(rb"-?[0-9]{1,12}\Z")
_FLOAT = re.compile(rb"[0-9]{1,6}\.[0-9]{1,9}\Z")


class TimingsError(ExecutionError):
    """A timings file that does not follow the format (a provider's bad answer)."""


@dataclass(frozen=True)
class TokenTime:
    file_pos: int  # byte offset of the token in flite's input, -1 if unknown
    start: float  # seconds from the utterance's first sample
    end: float
    name: str


@dataclass(frozen=True)
class UtteranceTimes:
    samples: int  # as written to the WAV
    sample_rate: int
    tokens: tuple[TokenTime, ...]


def _int(field: bytes, what: str, lineno: int) -> int:
    if not _INT.match(field):
        raise TimingsError(f"timings line {lineno}: bad {what}")
    return int(field)


def _seconds(field: bytes, what: str, lineno: int) -> float:
    if not _FLOAT.match(field):
        raise TimingsError(f"timings line {lineno}: bad {what}")
    value = float(field)
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise TimingsError(f"timings line {lineno}: {what} out of range")
    return value


def parse(data: bytes) -> tuple[UtteranceTimes, ...]:
    """The utterances of a timings file, in order; raises TimingsError."""
    if len(data) > MAX_BYTES:
        raise TimingsError(f"timings file larger than {MAX_BYTES} bytes")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines or lines[0] != MAGIC:
        raise TimingsError("not a gflite timings file (version 1)")
    utterances: list[UtteranceTimes] = []
    samples = rate = -1
    tokens: list[TokenTime] = []
    n_tokens = 0

    def close() -> None:
        if samples >= 0:
            utterances.append(UtteranceTimes(samples, rate, tuple(tokens)))

    for lineno, line in enumerate(lines[1:], start=2):
        if len(line) > MAX_LINE:
            raise TimingsError(f"timings line {lineno}: longer than {MAX_LINE} bytes")
        if line.startswith(b"U "):
            fields = line.split(b" ")
            if len(fields) != 3:
                raise TimingsError(f"timings line {lineno}: an utterance line has 2 fields")
            close()
            if len(utterances) >= MAX_UTTERANCES:
                raise TimingsError(f"more than {MAX_UTTERANCES} utterances")
            samples = _int(fields[1], "sample count", lineno)
            rate = _int(fields[2], "sample rate", lineno)
            if not 0 <= samples <= MAX_SAMPLES or not 0 < rate <= MAX_RATE:
                raise TimingsError(f"timings line {lineno}: sample count or rate out of range")
            tokens = []
        elif line.startswith(b"W "):
            fields = line.split(b" ", 4)
            if len(fields) != 5 or not fields[4]:
                raise TimingsError(f"timings line {lineno}: a word line has 4 fields")
            if samples < 0:
                raise TimingsError(f"timings line {lineno}: a word before any utterance")
            n_tokens += 1
            if n_tokens > MAX_TOKENS:
                raise TimingsError(f"more than {MAX_TOKENS} tokens")
            file_pos = _int(fields[1], "file position", lineno)
            start = _seconds(fields[2], "start", lineno)
            end = _seconds(fields[3], "end", lineno)
            if file_pos < -1 or end < start:
                raise TimingsError(f"timings line {lineno}: file position or times out of order")
            # flite splits tokens at these bytes only, so a name never holds one.
            if any(c in fields[4] for c in b" \t\r\x0b\x0c"):
                raise TimingsError(f"timings line {lineno}: white space in a token name")
            try:
                name = fields[4].decode("utf-8")
            except UnicodeDecodeError:
                # flite reads bytes; a Latin-1 input gives Latin-1 names.
                name = fields[4].decode("latin-1")
            tokens.append(TokenTime(file_pos, start, end, name))
        else:
            raise TimingsError(f"timings line {lineno}: neither an utterance nor a word")
    close()
    return tuple(utterances)
