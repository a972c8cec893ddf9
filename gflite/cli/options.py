"""``gflite``'s flags, as flite spells them, parsed by typer into the namespace :mod:`.job` reads."""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import List, Optional

import typer

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
    from gflite.cli.job import run_args

    try:
        run_args(SimpleNamespace(
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
        raise Carry(exc) from None


class Carry(Exception):
    """Ctrl-C or a closed pipe, carried past typer to the caller."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.exc = exc

