"""``gflite``'s flags, as flite spells them, parsed by click into the namespace
:mod:`.job` reads.

Built from click's classes directly: typer (which ``gwasm`` uses) costs this
command about a fifth of its start-up to import and to build these options from
a signature. The help keeps typer's layout (an Arguments section before the Options).
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, List, Optional

import click

from gflite import voices
from gflite.errors import UsageError
from gflite.pauses import BOOK_PAUSES

# click rewraps help paragraphs unless they start with a \b line.
EPILOG = """\b
exit codes: 0 ok, 1 other error, 2 bad usage, 3 bad input text or voice,
  5 a chunk failed or the job timed out, 6 providers disagreed, 7 bid or budget,
  8 cluster, 9 output, 130 interrupted (finished chunks are cached: rerun to resume)

\b
cache: finished chunks are kept in $GFLITE_CACHE_DIR (default ~/.cache/gflite),
  so a rerun resumes and an edited book re-synthesises only the chunks it changed.

\b
examples:
  gflite book.txt book.mp3                   flite's positional form
  gflite -voice slt -f book.txt -o book.wav  flite's flags
  gflite book.txt -o - | aplay               starts playing after the first chunk
  gflite book.epub -o book.m4b               an audiobook: chapters, title, author, cover
  gflite book.epub --list-chapters           then --chapters 3-7,9 or --split chapters -o DIR/
"""
HELP = """Convert text to speech with flite, in parallel, as sandboxed subtasks.
Existing flite commands work with a g in front."""


def _flag(name: str, *flags: str, help: Optional[str] = None, hidden: bool = False) -> click.Option:
    return click.Option([*flags, name], is_flag=True, default=False, help=help, hidden=hidden)


def _value(name: str, *flags: str, type: Any = click.STRING, **kw: Any) -> click.Option:
    """An option taking a value (None when not given, unless ``default``)."""
    return click.Option([*flags, name], type=type, **kw)


def _many(name: str, *flags: str, **kw: Any) -> click.Option:
    return click.Option([*flags, name], multiple=True, type=click.STRING, **kw)


PARAMS: List[click.Parameter] = [
    click.Argument(["positional"], nargs=-1, required=False, metavar="[TEXT_OR_FILE [OUTFILE]]"),
    _flag("version", "--version", help="Print the version and exit."),
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
    _flag("pw", "-pw", help="Print the words of each utterance on stdout, as flite."),
    _flag("ps", "-ps", help="Print the segments, as flite."),
    _flag("psdur", "-psdur", help="Print the segments and their end times, as flite."),
    _value("pr", "-pr", metavar="REL", help="Print relation REL, as flite."),
    _flag("bench", "-b", help="Benchmark mode, as flite: say flite's test sentence, print the speed."),
    # flite's flags gflite does not take: refused by name (not as "No such option").
    _value("phones", "-p", hidden=True),
    _flag("loop", "-l", hidden=True),
    _value("voicedump", "-voicedump", hidden=True),
    _flag("list_voices", "-lv", help="List the voices and exit."),
    _many("setf", "--setf", metavar="F=V", help="Set a float feature."),
    _many("seti", "--seti", metavar="F=V", help="Set an int feature."),
    _many("sets", "--sets", metavar="F=V", help="Set a string feature."),
    _many("setany", "-s", "--set", metavar="F=V", help="Set a feature (type guessed)."),
    _flag("ssml", "-ssml", help="Read the input as SSML (breaks become exact silence; long SSML runs in pieces)."),
    _flag("list_chapters", "--list-chapters", help="List a book's chapters (number, title, words, time) and exit."),
    _value("chapters", "--chapters", metavar="LIST", help="Only these chapters of a book, e.g. 3-7,9."),
    _value("split", "--split", metavar="chapters",
           help="--split chapters -o DIR/: one file per chapter, numbered and titled."),
    _value("split_format", "--split-format", metavar="FMT", default="m4a", show_default=True,
           help="Format of --split's files: m4a (default), m4b or mp3."),
    _value("sentence_silence", "--sentence-silence", type=click.FLOAT, metavar="S",
           help="Seconds of silence between sentences (default 0)."),
    _value("paragraph_silence", "--paragraph-silence", type=click.FLOAT, metavar="S",
           help=f"Seconds of silence between paragraphs (books: {BOOK_PAUSES.paragraph:g}, text: 0)."),
    _value("chapter_silence", "--chapter-silence", type=click.FLOAT, metavar="S",
           help=f"Seconds of silence before each chapter (books: {BOOK_PAUSES.chapter:g})."),
    _value("replace_file", "--replace", metavar="FILE",
           help="Say words as written in FILE ('word \u2192 spoken form' lines)."),
    _flag("keep_notes", "--keep-notes", help="Books: read footnotes and endnotes too."),
    _flag("keep_toc", "--keep-toc", help="Books: read the table of contents too."),
    _flag("keep_front", "--keep-front-matter", help="Books: read the title and copyright pages."),
    _flag("keep_back", "--keep-back-matter", help="Books: read index, colophon, bibliography."),
    _flag("keep_nonlinear", "--keep-nonlinear", help="EPUB: read spine items marked linear=\"no\" too."),
    _value("subtitles", "--subtitles", metavar="FILE",
           help="Also write subtitles, a cue per sentence: FILE.srt or FILE.vtt."),
    _flag("subtitle_words", "--subtitles-words", help="--subtitles with a cue per word."),
    _value("timings_json", "--timings", metavar="FILE",
           help="Also write each word's times and text position as JSON."),
    _flag("verbose", "-v", help="Say what is being done and how fast."),
    _value("subtasks", "--subtasks", type=click.IntRange(min=1), metavar="N",
           help="Split into N chunks (default: by text length and voice)."),
    _value("workers", "-j", "--workers", type=click.IntRange(min=1), metavar="N",
           help="Local worker processes (default: all cores)."),
    _value("timeout", "--timeout", metavar="T", help="For the whole job, in seconds or HH:MM:SS."),
    _value("subtask_timeout", "--subtask-timeout", metavar="T",
           help="For each chunk, in seconds or HH:MM:SS (default: 20x its expected CPU time, at least 30 s)."),
    _value("cluster", "--cluster", envvar="GFLITE_CLUSTER", show_envvar=True, metavar="ADDRESS",
           help="Run on a Dask scheduler, tcp://host:8786 or tls://..."),
    _value("redundancy", "--redundancy", type=click.IntRange(min=1), default=1, show_default=True, metavar="K",
           help="Run each chunk on K distinct providers and compare."),
    _value("bid", "--bid", type=click.FloatRange(min=0), metavar="PRICE", help="Most you pay per CPU-second."),
    _value("budget", "--budget", type=click.FloatRange(min=0), metavar="AMOUNT",
           help="Most you pay for the whole job."),
    _flag("quiet", "-q", "--quiet", help="No progress bar or notes, only errors."),
    _value("audit", "--audit", type=click.FloatRange(min=0.0, max=1.0), default=0.0, show_default=True,
           metavar="P", help="Run a fraction P of the chunks a cluster returned again on this "
           "machine; a provider caught forging one is excluded."),
    _flag("no_cache", "--no-cache", help="Neither replay nor store finished chunks."),
    _flag("cache_info", "--cache-info", help="Show the result cache and exit."),
    _flag("cache_clear", "--cache-clear", help="Empty the result cache and exit."),
]


class _Command(click.Command):
    """click's command with the help layout gflite has always had (typer's):
    the positional arguments in a section of their own before the options."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        args = [(p.make_metavar(ctx), "") for p in self.get_params(ctx) if isinstance(p, click.Argument)]
        opts = [rv for p in self.get_params(ctx) if isinstance(p, click.Option)
                and (rv := p.get_help_record(ctx)) is not None]
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _callback(**kw: Any) -> None:
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
    from gflite.cli.job import run_args

    try:
        run_args(args)
    except (KeyboardInterrupt, BrokenPipeError) as exc:
        # click would turn these into exit codes of its own (an Abort, or 1 for
        # a closed pipe); carry them past it to main(), which decides.
        raise Carry(exc) from None


class Carry(Exception):
    """Ctrl-C or a closed pipe, carried past click to the caller."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


command = _Command(
    "gflite", params=PARAMS, callback=_callback, help=HELP, epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help", "-?"]},
)
