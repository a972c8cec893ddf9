"""``gflite``'s flags, as flite spells them: the one table of them, and the parser
for the command lines nearly every run has.

click (:mod:`.options`, built from :data:`FLAGS`) owns everything else: the
help, every error message, and the forms this parser does not take
(``--voice=slt``, ``-tHello``, abbreviations). Importing click costs about
a sixth of saying "Hello.", so a command line made only of exact flag
names, their values and positionals is parsed here, to the very values click
would give it (``tests/test_cli_flags.py`` checks that, line by line); anything
else (an unknown or malformed flag, a bad value, ``--help``) goes to click.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from gflite import voices
from gflite.errors import UsageError
from gflite.pauses import BOOK_PAUSES

# Kinds of flag: a switch, an option taking one value (the last given wins),
# or one taking a value each time it is given.
SWITCH, VALUE, MANY = "switch", "value", "many"
# Value types, as click checks them: text, a number, a count of at least 1, a
# number at least 0, a fraction in [0, 1].
TEXT, NUMBER, COUNT, NON_NEGATIVE, FRACTION = "text", "number", "count", "non-negative", "fraction"


@dataclass(frozen=True)
class Flag:
    """One flag: its names, what it takes, its default and its help line."""
    dest: str
    names: tuple[str, ...]
    kind: str = VALUE
    type: str = TEXT
    default: Any = None
    metavar: str | None = None
    help: str | None = None
    hidden: bool = False
    show_default: bool = False
    envvar: str | None = None


def _switch(dest: str, *names: str, help: str | None = None, hidden: bool = False) -> Flag:
    return Flag(dest, names, SWITCH, default=False, help=help, hidden=hidden)


def _value(dest: str, *names: str, **kw: Any) -> Flag:
    return Flag(dest, names, VALUE, **kw)


def _many(dest: str, *names: str, **kw: Any) -> Flag:
    return Flag(dest, names, MANY, default=(), **kw)


# The positional TEXT_OR_FILE [OUTFILE]: click's Argument("positional", nargs=-1).
POSITIONAL = "positional"
POSITIONAL_METAVAR = "[TEXT_OR_FILE [OUTFILE]]"

FLAGS: tuple[Flag, ...] = (
    _switch("version", "--version", help="Print the version and exit."),
    _value("text", "-t", metavar="TEXT", help="Say TEXT (as one utterance, as flite does)."),
    _value("file", "-f", metavar="FILE", help="Read the text from FILE (- is stdin)."),
    _value("output", "-o", metavar="OUTFILE",
           help="Write audio here: .wav, .mp3, .ogg, .flac; - is WAV on stdout; none discards it; "
           "play (the default) plays it."),
    _value("voice", "-voice", "--voice", metavar="NAME", default=voices.DEFAULT, show_default=True,
           help="kal (default), kal16, awb, rms, slt (or flite's cmu_us_* names), or a .flitevox file."),
    _value("voicedir", "-voicedir", metavar="DIR",
           help="As flite: where clunit voices live (flite.wasm has none)."),
    _value("add_lex", "-add_lex", "--add-lex", metavar="FILE",
           help="Add flite lexicon entries ('word : phones' lines) from FILE."),
    _switch("pw", "-pw", help="Print the words of each utterance on stdout, as flite."),
    _switch("ps", "-ps", help="Print the segments, as flite."),
    _switch("psdur", "-psdur", help="Print the segments and their end times, as flite."),
    _value("pr", "-pr", metavar="REL", help="Print relation REL, as flite."),
    _switch("bench", "-b", help="Benchmark mode, as flite: say flite's test sentence, print the speed."),
    # flite's flags gflite does not take: refused by name (not as "No such option").
    _value("phones", "-p", hidden=True),
    _switch("loop", "-l", hidden=True),
    _value("voicedump", "-voicedump", hidden=True),
    _switch("list_voices", "-lv", help="List the voices and exit."),
    _many("setf", "--setf", metavar="F=V", help="Set a float feature."),
    _many("seti", "--seti", metavar="F=V", help="Set an int feature."),
    _many("sets", "--sets", metavar="F=V", help="Set a string feature."),
    _many("setany", "-s", "--set", metavar="F=V", help="Set a feature (type guessed)."),
    _switch("ssml", "-ssml", help="Read the input as SSML (breaks become exact silence; long SSML runs in pieces)."),
    _switch("list_chapters", "--list-chapters", help="List a book's chapters (number, title, words, time) and exit."),
    _value("chapters", "--chapters", metavar="LIST", help="Only these chapters of a book, e.g. 3-7,9."),
    _value("split", "--split", metavar="chapters",
           help="--split chapters -o DIR/: one file per chapter, numbered and titled."),
    _value("split_format", "--split-format", metavar="FMT", default="m4a", show_default=True,
           help="Format of --split's files: m4a (default), m4b or mp3."),
    _value("sentence_silence", "--sentence-silence", type=NUMBER, metavar="S",
           help="Seconds of silence between sentences (default 0)."),
    _value("paragraph_silence", "--paragraph-silence", type=NUMBER, metavar="S",
           help=f"Seconds of silence between paragraphs (books: {BOOK_PAUSES.paragraph:g}, text: 0)."),
    _value("chapter_silence", "--chapter-silence", type=NUMBER, metavar="S",
           help=f"Seconds of silence before each chapter (books: {BOOK_PAUSES.chapter:g})."),
    _value("replace_file", "--replace", metavar="FILE",
           help="Say words as written in FILE ('word \u2192 spoken form' lines)."),
    _switch("keep_notes", "--keep-notes", help="Books: read footnotes and endnotes too."),
    _switch("keep_toc", "--keep-toc", help="Books: read the table of contents too."),
    _switch("keep_front", "--keep-front-matter", help="Books: read the title and copyright pages."),
    _switch("keep_back", "--keep-back-matter", help="Books: read index, colophon, bibliography."),
    _switch("keep_nonlinear", "--keep-nonlinear", help="EPUB: read spine items marked linear=\"no\" too."),
    _value("subtitles", "--subtitles", metavar="FILE",
           help="Also write subtitles, a cue per sentence: FILE.srt or FILE.vtt."),
    _switch("subtitle_words", "--subtitles-words", help="--subtitles with a cue per word."),
    _value("timings_json", "--timings", metavar="FILE",
           help="Also write each word's times and text position as JSON."),
    _switch("verbose", "-v", help="Say what is being done and how fast."),
    _value("subtasks", "--subtasks", type=COUNT, metavar="N",
           help="Split into N chunks (default: by text length and voice)."),
    _value("workers", "-j", "--workers", type=COUNT, metavar="N",
           help="Local worker processes (default: all cores)."),
    _value("timeout", "--timeout", metavar="T", help="For the whole job, in seconds or HH:MM:SS."),
    _value("subtask_timeout", "--subtask-timeout", metavar="T",
           help="For each chunk, in seconds or HH:MM:SS (default: 20x its expected CPU time, at least 30 s)."),
    _value("cluster", "--cluster", envvar="GFLITE_CLUSTER", metavar="ADDRESS",
           help="Run on a Dask scheduler, tcp://host:8786 or tls://..."),
    _value("redundancy", "--redundancy", type=COUNT, default=1, show_default=True, metavar="K",
           help="Run each chunk on K distinct providers and compare."),
    _value("bid", "--bid", type=NON_NEGATIVE, metavar="PRICE", help="Most you pay per CPU-second."),
    _value("budget", "--budget", type=NON_NEGATIVE, metavar="AMOUNT", help="Most you pay for the whole job."),
    _switch("quiet", "-q", "--quiet", help="No progress bar or notes, only errors."),
    _value("audit", "--audit", type=FRACTION, default=0.0, show_default=True, metavar="P",
           help="Run a fraction P of the chunks a cluster returned again on this "
           "machine; a provider caught forging one is excluded."),
    _switch("no_cache", "--no-cache", help="Neither replay nor store finished chunks."),
    _switch("cache_info", "--cache-info", help="Show the result cache and exit."),
    _switch("cache_clear", "--cache-clear", help="Empty the result cache and exit."),
)

_BY_NAME = {name: flag for flag in FLAGS for name in flag.names}


def _convert(flag: Flag, raw: str) -> Any:
    """``raw`` as click's type for ``flag`` gives it; ValueError where click would refuse it."""
    if flag.type == TEXT:
        return raw
    if flag.type == COUNT:
        n = int(raw)
        if n < 1:
            raise ValueError(raw)
        return n
    x = float(raw)
    # Written as click compares, so a NaN passes as it does there.
    if flag.type == NON_NEGATIVE and x < 0 or flag.type == FRACTION and (x < 0 or x > 1):
        raise ValueError(raw)
    return x


def parse(argv: list[str]) -> dict[str, Any] | None:
    """The values click would give for ``argv``, by flag name (``positional`` a
    tuple); None if ``argv`` needs click: for help, an error, or a form this
    parser does not read."""
    values: dict[str, Any] = {flag.dest: flag.default for flag in FLAGS}
    given: set[str] = set()
    positional: list[str] = []
    i, only_positional = 0, False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if only_positional or arg == "-" or not arg.startswith("-"):
            positional.append(arg)
            continue
        if arg == "--":
            only_positional = True
            continue
        flag = _BY_NAME.get(arg)
        if flag is None:
            return None
        given.add(flag.dest)
        if flag.kind == SWITCH:
            values[flag.dest] = True
            continue
        if i >= len(argv):
            return None  # "requires an argument": click says it
        try:
            value = _convert(flag, argv[i])
        except ValueError:
            return None
        i += 1
        values[flag.dest] = values[flag.dest] + (value,) if flag.kind == MANY else value
    for flag in FLAGS:
        if flag.envvar and flag.dest not in given:
            values[flag.dest] = os.environ.get(flag.envvar) or flag.default
    values[POSITIONAL] = tuple(positional)
    return values


def to_args(values: dict[str, Any]) -> SimpleNamespace:
    """Parsed values (from :func:`parse` or click) → the namespace :mod:`.job` reads:
    flite's refused flags refused, the print flags and the read-along outputs grouped."""
    kw = dict(values)
    for name in ("bid", "budget"):
        if kw[name] is not None and not math.isfinite(kw[name]):
            raise UsageError(f"--{name} must be a finite number, not {kw[name]}")
    for flag, given in (("-p", kw.pop("phones") is not None), ("-l", kw.pop("loop")),
                        ("-voicedump", kw.pop("voicedump") is not None)):
        if given:
            raise UsageError(f"{flag} is not supported by gflite (use flite itself for it)")
    prints: list[str] = [flag for flag, on in (("-pw", kw.pop("pw")), ("-ps", kw.pop("ps")),
                                               ("-psdur", kw.pop("psdur"))) if on]
    pr = kw.pop("pr")
    if pr is not None:
        prints += ["-pr", pr]
    args = SimpleNamespace(
        prints=tuple(prints),
        silences=(kw.pop("sentence_silence"), kw.pop("paragraph_silence"), kw.pop("chapter_silence")),
        replace=kw.pop("replace_file"),
        keep=tuple(kw.pop(k) for k in ("keep_notes", "keep_toc", "keep_front", "keep_back", "keep_nonlinear")),
        read_along=(kw.pop("subtitles"), kw.pop("subtitle_words"), kw.pop("timings_json")),
        **kw,
    )
    args.cluster = args.cluster or None
    args.positional = list(args.positional) or None
    return args
