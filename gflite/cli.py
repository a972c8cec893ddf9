"""``gflite``: flite's command line, run as parallel sandboxed subtasks.

Existing flite commands keep working with a ``g`` in front: ``-f``, ``-t``,
``-o``, ``-voice``, ``-lv``, ``--setf``/``--seti``/``--sets``/``-s``, ``-ssml``,
``-v``, ``--version``, ``-pw``/``-ps``/``-psdur``/``-pr``, ``-add_lex``,
``-voicedir``, ``-b``, and flite's positional ``TEXT_OR_FILE [OUTFILE]`` (a
file if one exists by that name, else text to say); flite's ``-p``, ``-l`` and
``-voicedump`` are refused by name. Books (``.epub``, ``.md``, ``.html``)
become audiobooks: ``--list-chapters``, ``--chapters``, ``--split chapters``,
the ``--*-silence`` pauses, ``--replace`` and the ``--keep-*`` flags. This module turns flags into a frozen
:class:`gflite.pipeline.Job`, draws progress on stderr, and chooses exit codes
(listed in README.md). stdout carries only what was asked for: WAV with ``-o
-``, flite's printouts, or the ``-lv``/``--version``/``-b`` listings.

Exit codes: 0 ok · 1 other error · 2 bad usage · 3 bad input text or voice ·
5 a chunk failed or the job timed out · 6 providers disagreed · 7 bid/budget ·
8 cluster · 9 output · 130 interrupted (Ctrl-C). Every error is one line,
``gflite: error: ...``, on stderr.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, BinaryIO, List, Optional

import typer

from gflite import __version__, voices
from gflite.cli_shared import for_terminal
from gflite.errors import GfliteError, Interrupted, OutputError, ReaderGone, UsageError
from gflite.pauses import BOOK_PAUSES, Pauses

if TYPE_CHECKING:
    from gflite import pipeline
    from gflite.books.selection import ChapterInfo
    from gflite.replacements import Replacements

PROG = "gflite"
INTERRUPTED = "interrupted; finished chunks are cached, rerun the same command to resume"
# A positional that names no file is text to say, as in flite; but one word
# ending like a text file's name is almost surely a mistyped path.
_FILE_LIKE = re.compile(r"^\S+\.(txt|text|md|ssml|xml|html?|rst)$", re.I)


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {for_terminal(message, 2000)}\n")
    sys.stderr.flush()


def _note(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def _duration(value: Optional[str], flag: str) -> Optional[float]:
    """Seconds (``90``, ``1.5``) or g-flite's ``HH:MM:SS``; must be positive."""
    if value is None:
        return None
    from gflite.gwasm.task import parse_duration

    bad = UsageError(f"{flag} takes seconds or HH:MM:SS (more than zero), not {value!r}")
    try:
        seconds = parse_duration(value, flag) if ":" in value else float(value)
    except Exception:  # ValueError from float(), the task parser's own error type
        raise bad from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise bad
    return seconds


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
# flite's flags gflite does not take, refused by name (not as "No such option").
UNSUPPORTED = {"-p": "PHONES", "-voicedump": "FILENAME", "-l": None}
# flite's -b speaks this sentence (flite_main.c) and reports the speed.
BENCHMARK_TEXT = "A whole joy was reaping, but they've gone south, you should fetch azure mike."


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(
    context_settings={"help_option_names": ["-h", "--help", "-?"]},
    epilog=EPILOG,
    no_args_is_help=False,
)
def _command(
    positional: Optional[List[str]] = typer.Argument(
        None, metavar="[TEXT_OR_FILE [OUTFILE]]", show_default=False,
        help="A file to read if one exists by that name (- is stdin), else text to say; then the output.",
    ),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    text: Optional[str] = typer.Option(None, "-t", metavar="TEXT", help="Say TEXT (as one utterance, as flite does)."),
    file: Optional[str] = typer.Option(None, "-f", metavar="FILE", help="Read the text from FILE (- is stdin)."),
    output: Optional[str] = typer.Option(
        None, "-o", metavar="OUTFILE",
        help="Write audio here: .wav, .mp3, .ogg, .flac; - is WAV on stdout; none discards it; "
        "play (the default) plays it.",
    ),
    voice: str = typer.Option(voices.DEFAULT, "-voice", "--voice", metavar="NAME",
                              help="kal (default), kal16, awb, rms, slt (or flite's cmu_us_* names), "
                              "or a .flitevox file."),
    voicedir: Optional[str] = typer.Option(None, "-voicedir", metavar="DIR",
                                           help="As flite: where clunit voices live (flite.wasm has none)."),
    add_lex: Optional[str] = typer.Option(None, "-add_lex", "--add-lex", metavar="FILE",
                                          help="Add flite lexicon entries ('word : phones' lines) from FILE."),
    pw: bool = typer.Option(False, "-pw", help="Print the words of each utterance on stdout, as flite."),
    ps: bool = typer.Option(False, "-ps", help="Print the segments, as flite."),
    psdur: bool = typer.Option(False, "-psdur", help="Print the segments and their end times, as flite."),
    pr: Optional[str] = typer.Option(None, "-pr", metavar="REL", help="Print relation REL, as flite."),
    bench: bool = typer.Option(False, "-b", help="Benchmark mode, as flite: say flite's test sentence, "
                               "print the speed."),
    phones: Optional[str] = typer.Option(None, "-p", hidden=True),
    loop: bool = typer.Option(False, "-l", hidden=True),
    voicedump: Optional[str] = typer.Option(None, "-voicedump", hidden=True),
    list_voices: bool = typer.Option(False, "-lv", help="List the voices and exit."),
    setf: List[str] = typer.Option([], "--setf", metavar="F=V", help="Set a float feature."),
    seti: List[str] = typer.Option([], "--seti", metavar="F=V", help="Set an int feature."),
    sets: List[str] = typer.Option([], "--sets", metavar="F=V", help="Set a string feature."),
    setany: List[str] = typer.Option([], "-s", "--set", metavar="F=V", help="Set a feature (type guessed)."),
    ssml: bool = typer.Option(False, "-ssml",
                              help="Read the input as SSML (breaks become exact silence; long SSML runs in pieces)."),
    list_chapters: bool = typer.Option(False, "--list-chapters",
                                       help="List a book's chapters (number, title, words, time) and exit."),
    chapters: Optional[str] = typer.Option(None, "--chapters", metavar="LIST",
                                           help="Only these chapters of a book, e.g. 3-7,9."),
    split: Optional[str] = typer.Option(None, "--split", metavar="chapters",
                                        help="--split chapters -o DIR/: one file per chapter, numbered and titled."),
    split_format: str = typer.Option("m4a", "--split-format", metavar="FMT",
                                     help="Format of --split's files: m4a (default), m4b or mp3."),
    sentence_silence: Optional[float] = typer.Option(None, "--sentence-silence", metavar="S",
                                                     help="Seconds of silence between sentences (default 0)."),
    paragraph_silence: Optional[float] = typer.Option(
        None, "--paragraph-silence", metavar="S",
        help=f"Seconds of silence between paragraphs (books: {BOOK_PAUSES.paragraph:g}, text: 0)."),
    chapter_silence: Optional[float] = typer.Option(
        None, "--chapter-silence", metavar="S",
        help=f"Seconds of silence before each chapter (books: {BOOK_PAUSES.chapter:g})."),
    replace_file: Optional[str] = typer.Option(None, "--replace", metavar="FILE",
                                               help="Say words as written in FILE ('word → spoken form' lines)."),
    keep_notes: bool = typer.Option(False, "--keep-notes", help="Books: read footnotes and endnotes too."),
    keep_toc: bool = typer.Option(False, "--keep-toc", help="Books: read the table of contents too."),
    keep_front: bool = typer.Option(False, "--keep-front-matter", help="Books: read the title and copyright pages."),
    keep_back: bool = typer.Option(False, "--keep-back-matter", help="Books: read index, colophon, bibliography."),
    keep_nonlinear: bool = typer.Option(False, "--keep-nonlinear",
                                        help="EPUB: read spine items marked linear=\"no\" too."),
    subtitles: Optional[str] = typer.Option(None, "--subtitles", metavar="FILE",
                                            help="Also write subtitles, a cue per sentence: FILE.srt or FILE.vtt."),
    subtitle_words: bool = typer.Option(False, "--subtitles-words", help="--subtitles with a cue per word."),
    timings_json: Optional[str] = typer.Option(None, "--timings", metavar="FILE",
                                               help="Also write each word's times and text position as JSON."),
    verbose: bool = typer.Option(False, "-v", help="Say what is being done and how fast."),
    subtasks: Optional[int] = typer.Option(None, "--subtasks", min=1, metavar="N",
                                           help="Split into N chunks (default: by text length and voice)."),
    workers: Optional[int] = typer.Option(None, "-j", "--workers", min=1, metavar="N",
                                          help="Local worker processes (default: all cores)."),
    timeout: Optional[str] = typer.Option(None, "--timeout", metavar="T",
                                          help="For the whole job, in seconds or HH:MM:SS."),
    subtask_timeout: Optional[str] = typer.Option(
        None, "--subtask-timeout", metavar="T",
        help="For each chunk, in seconds or HH:MM:SS (default: 20x its expected CPU time, at least 30 s)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", envvar="GFLITE_CLUSTER", metavar="ADDRESS",
                                          help="Run on a Dask scheduler, tcp://host:8786 or tls://..."),
    redundancy: int = typer.Option(1, "--redundancy", min=1, metavar="K",
                                   help="Run each chunk on K distinct providers and compare."),
    bid: Optional[float] = typer.Option(None, "--bid", min=0, metavar="PRICE", help="Most you pay per CPU-second."),
    budget: Optional[float] = typer.Option(None, "--budget", min=0, metavar="AMOUNT",
                                           help="Most you pay for the whole job."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar or notes, only errors."),
    audit: float = typer.Option(0.0, "--audit", min=0.0, max=1.0, metavar="P",
                                help="Run a fraction P of the chunks a cluster returned again on this "
                                     "machine; a provider caught forging one is excluded."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither replay nor store finished chunks."),
    cache_info: bool = typer.Option(False, "--cache-info", help="Show the result cache and exit."),
    cache_clear: bool = typer.Option(False, "--cache-clear", help="Empty the result cache and exit."),
) -> None:
    """Convert text to speech with flite, in parallel, as sandboxed subtasks.
    Existing flite commands work with a g in front."""
    for name, value in (("--bid", bid), ("--budget", budget)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{name} must be a finite number, not {value}")
    for flag, given in (("-p", phones is not None), ("-l", loop), ("-voicedump", voicedump is not None)):
        if given:
            raise UsageError(f"{flag} is not supported by gflite (use flite itself for it)")
    prints: list[str] = [flag for flag, on in (("-pw", pw), ("-ps", ps), ("-psdur", psdur)) if on]
    if pr is not None:
        prints += ["-pr", pr]
    try:
        _run(SimpleNamespace(
            positional=positional, version=version, text=text, file=file, output=output, voice=voice,
            list_voices=list_voices, setf=setf, seti=seti, sets=sets, setany=setany, ssml=ssml,
            verbose=verbose, subtasks=subtasks, workers=workers, timeout=timeout,
            subtask_timeout=subtask_timeout, cluster=cluster or None, redundancy=redundancy, bid=bid,
            budget=budget, quiet=quiet, audit=audit, no_cache=no_cache, cache_info=cache_info,
            cache_clear=cache_clear, prints=tuple(prints), add_lex=add_lex, voicedir=voicedir,
            bench=bench, list_chapters=list_chapters, chapters=chapters, split=split, split_format=split_format,
            silences=(sentence_silence, paragraph_silence, chapter_silence), replace=replace_file,
            keep=(keep_notes, keep_toc, keep_front, keep_back, keep_nonlinear),
            read_along=(subtitles, subtitle_words, timings_json),
        ))
    except (KeyboardInterrupt, BrokenPipeError) as exc:
        # typer would turn these into exit codes of its own (130 returned, or 1
        # for a closed pipe); carry them past it to main(), which decides.
        raise _Carry(exc) from None


class _Carry(Exception):
    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc


def run(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` (flite's flags via typer) and do what it asks; raises GfliteError subclasses."""
    import click  # already loaded by typer

    try:
        code = app(args=argv, prog_name=PROG, standalone_mode=False)
    except _Carry as carried:
        raise carried.exc from None
    except click.UsageError as exc:
        raise UsageError(f"{exc.format_message()} (see {PROG} --help)") from None
    except click.exceptions.Abort as exc:  # click's Ctrl-C
        raise KeyboardInterrupt from exc
    if code == Interrupted.exit_code:  # Ctrl-C while typer itself was parsing
        raise KeyboardInterrupt


def _run(args: SimpleNamespace) -> None:
    if args.version:
        _print_version()
        return
    if args.list_voices:
        _list_voices()
        return
    if args.cache_info or args.cache_clear:
        # Flags, not a `gflite cache` subcommand: flite's positional form would
        # read `gflite cache info` as "say cache, write it to info".
        from gflite.gwasm.cli import cache_action

        for line in cache_action("clear" if args.cache_clear else "info"):
            sys.stdout.write(line + "\n")
        return
    text, file, output, voice = args.text, args.file, args.output, args.voice
    positional, quiet, verbose = args.positional, args.quiet, args.verbose

    from gflite import pipeline, synth

    if text is not None and file is not None:
        raise UsageError("give -t TEXT or -f FILE, not both")
    pos = list(positional or [])
    if args.bench:
        # As flite: -b says its own sentence, writes nothing and reports the speed.
        text, file, output, pos = BENCHMARK_TEXT, None, pipeline.DISCARD, []
    if text is not None:
        source = pipeline.Source("text", text)
    elif file is not None:
        source = pipeline.Source("stdin", "-") if file == "-" else pipeline.Source("file", file)
    elif pos:
        source = _positional_source(pos.pop(0))
    else:
        if sys.stdin.isatty():
            raise UsageError(f"no text to say: give TEXT, -t TEXT, -f FILE, or pipe text in (see {PROG} --help)")
        source = pipeline.Source("stdin", "-")  # as flite: no input means stdin
    if pos:
        if output is not None:
            raise UsageError(f"two outputs: -o {output} and {pos[0]}")
        output = pos.pop(0)
    if pos:
        raise UsageError(f"unexpected extra argument {pos[0]!r}")
    output = output or "play"
    if output == pipeline.STDOUT and sys.stdout.isatty():
        raise OutputError("refusing to write WAV audio to a terminal: redirect it (-o - > out.wav) or give -o FILE")
    if (source.kind == "file" and output not in ("play", pipeline.STDOUT, pipeline.DISCARD)
            and os.path.exists(output) and os.path.exists(source.value) and os.path.samefile(source.value, output)):
        # flite would write WAV over its own input; a book is worth more than the convenience.
        raise UsageError(f"the output {for_terminal(output)} is the input file: give another output name")
    if args.prints and output == pipeline.STDOUT:
        raise UsageError(f"{args.prints[0]} prints on stdout, where -o - writes WAV: give -o FILE or -o none")

    try:
        book, pauses, replacements = _structure(args, source, output)
    except _Listed:
        return

    subtitles, subtitle_words, timings_json = _read_along(args)
    features = tuple(
        synth.parse_feature(flag, fv)
        for flag, values in (("--setf", args.setf), ("--seti", args.seti), ("--sets", args.sets), ("-s", args.setany))
        for fv in values
    )
    job = pipeline.Job(
        source=source,
        output=pipeline.STDOUT if output == "play" else output,
        options=synth.SynthOptions(
            voice=synth.resolve_voice(voice), features=features, ssml=args.ssml, prints=args.prints,
            lex_addenda=synth.read_lex_addenda(args.add_lex) if args.add_lex is not None else None,
            timings=(subtitles is not None or timings_json is not None
                     or (book is not None and book.anchors is not None)),  # -o book.epub
        ),
        subtasks=args.subtasks,
        workers=args.workers,
        cluster=args.cluster,
        redundancy=args.redundancy,
        bid=args.bid,
        budget=args.budget,
        timeout=_duration(args.timeout, "--timeout"),
        subtask_timeout=_duration(args.subtask_timeout, "--subtask-timeout"),
        audit=args.audit,
        use_cache=not args.no_cache,
        book=book,
        pauses=pauses,
        replacements=replacements,
        split=args.split is not None,
        split_format=args.split_format,
        subtitles=subtitles,
        subtitle_words=subtitle_words,
        timings=timings_json,
    )
    if verbose and args.voicedir is not None:
        _note(f"-voicedir {for_terminal(args.voicedir)}: no effect, as in flite: it is for clunit voices, "
              "and flite.wasm has none")
    if args.bench:
        summary = _render(job, True, False)
        _print_benchmark(summary)
    elif output == "play":
        _play(job, quiet, verbose)
    else:
        _render(job, quiet, verbose)


def _read_along(args: SimpleNamespace) -> tuple[Optional[str], bool, Optional[str]]:
    """--subtitles, --subtitles-words and --timings, checked before any work starts."""
    from gflite.subtitles import check_writable, subtitle_format

    subtitles, words, timings_json = args.read_along
    if subtitles is not None:
        subtitle_format(subtitles)
    elif words:
        raise UsageError("--subtitles-words needs --subtitles FILE.srt or FILE.vtt")
    if (subtitles or timings_json) and args.split is not None:
        # Times are in the whole book's audio; each chapter file starts again at 0.
        raise UsageError("--subtitles and --timings are for one audio file, not --split chapters")
    for path in (subtitles, timings_json):
        if path is not None:
            check_writable(path)
    return subtitles, words, timings_json


# Speaking rate for --list-chapters' estimates: characters of text per second
# of audio, measured with native flite on the benchmark book (kal 12.5, slt 13.1).
CHARS_PER_SECOND = 12.8


def _structure(
    args: SimpleNamespace, source: pipeline.Source, output: str
) -> tuple[Optional[pipeline.BookText], Pauses, Optional[Replacements]]:
    """The book (read, chapters chosen, composed), the pauses and the replacements
    for this run. A book's listing (--list-chapters) is printed here, and ends the run."""
    from gflite import pipeline, replacements
    from gflite.books import ReadOptions, is_book

    rules = replacements.read(args.replace) if args.replace is not None else None
    is_structured = source.kind == "file" and is_book(source.value) and not args.ssml
    read_along = output.lower().endswith(".epub")
    if read_along:  # -o book.epub: a read-along EPUB 3 (gflite.readalong)
        from gflite.readalong import check_request

        check_request(source.value if source.kind == "file" else None, split=args.split is not None,
                      replace=args.replace is not None, ssml=args.ssml)
    if args.split is not None:
        if args.split != "chapters":
            raise UsageError(f"--split takes 'chapters', not {args.split!r}")
        from gflite.audiobook import AUDIOBOOK_FORMATS

        if args.split_format not in AUDIOBOOK_FORMATS:
            raise UsageError(f"--split-format takes {', '.join(AUDIOBOOK_FORMATS)}, not {args.split_format!r}")
        if not is_structured:
            raise UsageError("--split chapters needs a book (.epub, .md, .html, .xhtml): plain text has no chapters")
        if output in ("play", pipeline.STDOUT, pipeline.DISCARD):
            raise UsageError("--split chapters writes files: give -o DIR/")
        if not os.path.isdir(output):
            try:
                os.mkdir(output)
            except OSError as e:
                raise OutputError(f"cannot make the folder {for_terminal(output)}: {e.strerror or e}") from None
    if not is_structured:
        for flag, given in (("--list-chapters", args.list_chapters), ("--chapters", args.chapters is not None)):
            if given:
                raise UsageError(f"{flag} needs a book (.epub, .md, .html, .xhtml): plain text has no chapters")
    base = BOOK_PAUSES if is_structured else Pauses()
    s, p, c = args.silences
    pauses = Pauses(sentence=base.sentence if s is None else s, paragraph=base.paragraph if p is None else p,
                    chapter=base.chapter if c is None else c)
    if not is_structured:
        return None, pauses, rules
    from gflite.audiobook import Tags
    from gflite.books import read_book
    from gflite.books.compose import compose
    from gflite.books.model import Chapter
    from gflite.books.selection import list_chapters, parse_chapters, select

    notes, toc, front, back, nonlinear = args.keep
    book = read_book(source.value, ReadOptions(keep_notes=notes, keep_toc=toc, keep_front_matter=front,
                                               keep_back_matter=back, keep_nonlinear=nonlinear), origins=read_along)
    if args.list_chapters:
        _print_chapters(list_chapters(book, CHARS_PER_SECOND))
        raise _Listed
    if args.chapters is not None:
        book = select(book, parse_chapters(args.chapters, len(book.chapters)))
    replaced = 0
    if rules is not None:
        chapters = []
        for ch in book.chapters:
            text, n = rules.apply(ch.text)
            replaced += n
            chapters.append(Chapter(title=ch.title, text=text, source=ch.source))
        book = dataclasses.replace(book, chapters=tuple(chapters))
    composed = compose(book)
    meta = book.metadata
    tags = Tags(title=meta.title or os.path.splitext(os.path.basename(source.value))[0], author=meta.author,
                language=meta.language, cover=meta.cover)
    anchors = None
    if read_along:
        from gflite.books.anchors import BookMap

        anchors = BookMap.of(book, composed)
    return (pipeline.BookText(text=composed.text, chapters=tuple(zip(composed.starts, composed.titles)),
                              tags=tags, replaced_words=replaced, anchors=anchors), pauses, rules)


class _Listed(Exception):
    """--list-chapters printed its listing: the run is done."""


def _print_chapters(rows: tuple[ChapterInfo, ...]) -> None:
    width = max((len(str(r.number)) for r in rows), default=1)
    total_words = total_seconds = 0.0
    for r in rows:
        s = int(r.seconds + 0.5)
        sys.stdout.write(f"{r.number:>{width}}  {for_terminal(r.title, 120)}  {r.words} words  "
                         f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}\n")
        total_words += r.words
        total_seconds += r.seconds
    s = int(total_seconds + 0.5)
    sys.stdout.write(f"{_plural(len(rows), 'chapter')}, {int(total_words)} words, about "
                     f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}\n")


def _print_benchmark(summary: pipeline.Summary) -> None:
    """flite -b's two lines (flite_main.c's format), for the whole gflite run."""
    took = max(summary.elapsed, 1e-6)
    sys.stdout.write(f"times faster than real-time: {summary.audio_seconds / took:f}\n"
                     f"({summary.audio_seconds:f} seconds of speech synthesized in {took:f})\n")


def _positional_source(first: str) -> pipeline.Source:
    from gflite import pipeline

    if first == "-":
        return pipeline.Source("stdin", "-")
    if os.path.exists(first):
        return pipeline.Source("file", first)
    if _FILE_LIKE.match(first):
        from gflite.errors import InputError

        raise InputError(f"input file not found: {first} (to say it, use -t {first!r})")
    return pipeline.Source("text", first)


class _Bar:
    """tqdm on stderr: chunks done, seconds of audio made, and an ETA by characters.

    The ETA counts characters, not chunks (chunks grow from small to full
    size), and only those synthesised in this run (cached chunks are instant).
    """

    def __init__(self, plan: pipeline.Plan) -> None:
        import tqdm

        # tqdm's monitor thread would keep the local executor from forking its workers cheaply.
        tqdm.tqdm.monitor_interval = 0
        self.plan = plan
        self.started = time.monotonic()
        self.fresh = 0
        try:
            known = os.get_terminal_size(sys.stderr.fileno()).columns > 0
        except (OSError, ValueError):
            known = False
        # A terminal that does not know its size (a bare pty) says 0x0, and tqdm would draw nothing.
        size = {"dynamic_ncols": True} if known else {"ncols": 80, "nrows": 24}
        # Redrawn on every chunk (a few a second at most), so the last state is always shown.
        self.bar = tqdm.tqdm(total=plan.characters, file=sys.stderr, leave=False, mininterval=0, miniters=1,
                             desc=self._text(0, 0.0, None), bar_format="{percentage:3.0f}%|{bar}| {desc}", **size)

    def _text(self, chunks: int, audio: float, eta: Optional[float]) -> str:
        left = "?" if eta is None else _clock(eta)
        return (f"{chunks}/{self.plan.chunks} chunks, {_length(audio)} audio, "
                f"{_clock(time.monotonic() - self.started)} elapsed, ETA {left}")

    def update(self, p: pipeline.Progress) -> None:
        if not p.from_cache:
            self.fresh += p.characters
        eta = None
        spent = time.monotonic() - self.started
        if self.fresh and spent > 0:
            eta = (self.plan.characters - p.characters_done) * spent / self.fresh
        self.bar.set_description_str(self._text(p.chunks_done, p.audio_seconds, eta), refresh=False)
        self.bar.update(p.characters)

    def close(self) -> None:
        self.bar.close()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _some(items: list[str], total: int, shown: int = 5) -> str:
    """Up to ``shown`` items, then "and N more"."""
    more = total - min(len(items), shown)
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def _text_notes(text: pipeline.Text, name: str) -> list[str]:
    """What normalising the input did that a listener would notice."""
    notes = []
    if text.invalid_bytes:
        notes.append(f"{name} is UTF-8 with {_plural(text.invalid_bytes, 'invalid byte')}, skipped")
    if text.spelled:
        said = [f"{for_terminal(repr(ch))} as {word!r}" + (f" x{n}" if n > 1 else "") for ch, word, n in text.spelled]
        notes.append(f"said {_some(said, len(said))}")
    if text.dropped:
        shown = [f"{for_terminal(repr(ch))} x{n}" for ch, n in text.dropped]
        notes.append(f"dropped {_plural(text.dropped_count, 'character')} flite cannot say: "
                     f"{_some(shown, len(shown))}")
    return notes


def _length(seconds: float) -> str:
    """Seconds under a minute ("42.3 s"), else h:mm:ss."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


# Set once the output is complete: a Ctrl-C after that does not make the run a failure.
_completed = False


def _render(job: pipeline.Job, quiet: bool, verbose: bool, stdout: Optional[BinaryIO] = None) -> pipeline.Summary:
    global _completed
    from gflite import outputs, pipeline, stitching
    from gflite.audiobook import audiobook_format

    show_bar = not quiet and sys.stderr.isatty()
    bar: Optional[_Bar] = None
    name = {"file": job.source.value, "stdin": "stdin", "text": "the text"}[job.source.kind]

    def on_plan(plan: pipeline.Plan) -> None:
        nonlocal bar
        if not quiet:
            if (job.output not in (pipeline.STDOUT, pipeline.DISCARD) and stitching.wav_by_default(job.output)
                    and not job.split and audiobook_format(job.output) is None
                    and (job.book is None or job.book.anchors is None)  # -o book.epub: a read-along EPUB
                    and not outputs.resolve(job.output).stream):  # /dev/null, a FIFO: no file name to mislead
                _note(f"writing {for_terminal(job.output)} as WAV, as flite does (.mp3, .ogg and .flac are encoded)")
            for line in _text_notes(plan.text, for_terminal(name)):
                _note(line)
            if plan.workers_asked is not None:
                _note(f"-j {plan.workers_asked}: using {_plural(plan.workers, 'worker')} "
                      f"(at most {pipeline.WORKERS_PER_CORE} per core, and no more than the chunks)")
        if verbose:
            _note(f"{plan.characters} characters ({plan.text.encoding}) in {_plural(plan.chunks, 'chunk')} "
                  f"on {_plural(plan.workers, 'worker')}, at most {plan.subtask_timeout:g} s a chunk")
        if show_bar:
            bar = _Bar(plan)

    def on_progress(p: pipeline.Progress) -> None:
        if bar is not None:
            bar.update(p)

    def on_printout(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    if job.cluster:
        from gflite.cli_shared import quiet_cluster_logs

        quiet_cluster_logs()
    try:
        summary = pipeline.render(job, on_plan=on_plan, on_progress=on_progress, stdout=stdout,
                                  on_printout=on_printout)
    finally:
        if bar is not None:
            bar.close()
    # Everything is written (a player, given stdout, may still be playing it).
    _completed = stdout is None
    if verbose or (not quiet and job.output not in (pipeline.STDOUT, pipeline.DISCARD)):
        speed = summary.audio_seconds / summary.elapsed if summary.elapsed > 0 else 0.0
        where = {pipeline.STDOUT: "stdout", pipeline.DISCARD: "nothing (-o none)"}.get(job.output, job.output)
        if summary.files:
            where = f"{_plural(len(summary.files), 'file')} in {job.output}"
        extra = "".join(f", {_plural(n, what)}" for n, what in (
            (summary.chapters, "chapter"), (summary.pauses, "pause")) if n)
        if job.replacements is not None:  # --replace: say how many, none included
            extra += f", {summary.replaced_words} word{'' if summary.replaced_words == 1 else 's'} replaced"
        _note(f"wrote {for_terminal(where)}: {_length(summary.audio_seconds)} of audio{extra}, "
              f"{_plural(summary.chunks, 'chunk')} ({summary.from_cache} from cache), "
              f"{_length(summary.elapsed)} ({speed:.1f}x real time)")
    if summary.audio_seconds == 0 and not quiet:
        _note(f"warning: {for_terminal(name)} has nothing flite can say (only punctuation or symbols): "
              f"the audio is empty")
    if summary.unknown_length and not quiet:
        _note(f"{job.output} is over the 4 GiB that WAV sizes can state, so its header says 'length unknown' "
              f"(ffmpeg and sox read it to the end); .flac is lossless and about half the size")
    if summary.report is not None and not quiet:
        from gflite.cli_shared import market_in_play

        # The bill and verdicts when a cluster or market terms are in play; who was
        # excluded for lying, always.
        full = market_in_play(job.cluster, job.redundancy, job.bid, job.budget)
        for line in summary.report.lines():
            if full or line.startswith("excluded "):
                _note(for_terminal(line, 400))  # names and verdicts come from providers
    return summary


def _play(job: pipeline.Job, quiet: bool, verbose: bool) -> None:
    """flite's default output: play it. We stream WAV into a local player."""
    player = None
    if shutil.which("aplay"):
        player = ["aplay", "-q", "-"]
    elif shutil.which("play"):
        # The streamed header cannot know the length: without --ignore-length sox warns at the end.
        player = ["play", "-q", "--ignore-length", "-t", "wav", "-"]
    if player is None:
        raise OutputError("no audio player (aplay or sox's play) to play to; give -o FILE, or -o - for stdout")
    proc = subprocess.Popen(player, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        _render(job, quiet, verbose, stdout=proc.stdin)
    except ReaderGone:
        pass  # the player quit early: its exit code says why, below
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        code = proc.wait()
    if code != 0:
        raise OutputError(f"the audio player {player[0]} failed (exit code {code}); give -o FILE to write a file")


def _flite_stdout(*args: str, exit_code: int = 0) -> str:
    """Run flite.wasm itself (in-process) and return what it printed."""
    from gflite.flitewasm import program
    from gflite.gwasm.sandbox import run_subtask
    from gflite.gwasm.subtask import Limits, Subtask

    result = run_subtask(program(), Subtask(0, "info", tuple(args), (), ()), Limits(subtask_timeout=30))
    if not result.ok and result.exit_code != exit_code:
        raise GfliteError(f"flite.wasm {' '.join(args)} failed: {result.reason}")
    return result.stdout.decode("ascii", "replace")


def _print_version() -> None:
    from gflite.flitewasm import PINNED_SHA256

    sys.stdout.write(f"gflite {__version__} (flite.wasm sha256 {PINNED_SHA256[:16]})\n")
    sys.stdout.write(_flite_stdout("--version", exit_code=1))  # flite exits 1 after --version


def _list_voices() -> None:
    sys.stdout.write(_flite_stdout("-lv"))


def _silence_stdout() -> None:
    """The reader of stdout is gone: stop Python's exit-time flush from complaining."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def main(argv: Optional[List[str]] = None) -> None:
    """The ``gflite`` console script: run, then exit with the documented code."""
    global _completed
    _completed = False
    code = 0
    try:
        try:
            run(argv)
        finally:
            if _completed and argv is None:
                # The output is complete: a Ctrl-C while this process exits must not
                # turn it into a failure. (Only as the console script: the process is ours.)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        if not _completed:
            # Raised wherever Ctrl-C found us; the pipeline's cleanup has run on the way out.
            _error(INTERRUPTED)
            code = Interrupted.exit_code
    except (BrokenPipeError, ReaderGone):
        # The reader of stdout (or of a FIFO) went away, e.g. `gflite ... -o - | head`:
        # not our error. A dead encoder or a full disk is an OutputError (exit 9).
        _silence_stdout()
    except GfliteError as exc:
        _error(str(exc))
        code = exc.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
