"""Flags → :class:`gflite.pipeline.Job`: where the text comes from, where the audio
goes, the synthesis options and the engine's terms, checked before any work starts."""
from __future__ import annotations

import math
import os
import re
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Optional

from gflite.cli import listings, render, spare
from gflite.cli.report import PROG, note
from gflite.cli_shared import for_terminal
from gflite.errors import OutputError, UsageError

if TYPE_CHECKING:
    from gflite import pipeline

# A positional that names no file is text to say, as in flite; but one word
# ending like a text file's name is almost surely a mistyped path.
_FILE_LIKE = re.compile(r"^\S+\.(txt|text|md|ssml|xml|html?|rst)$", re.I)
# flite's -b speaks this sentence (flite_main.c) and reports the speed.
BENCHMARK_TEXT = "A whole joy was reaping, but they've gone south, you should fetch azure mike."


def run_args(args: SimpleNamespace) -> None:
    """Do what the parsed flags ask: a listing, or a Job rendered (or played)."""
    if args.cluster is not None or args.list_chapters or args.version or args.list_voices or args.cache_info \
            or args.cache_clear:
        spare.discard()  # no local worker will run
    else:
        spare.preload()
    if args.version:
        listings.version()
        return
    if args.list_voices:
        listings.voices()
        return
    if args.cache_info or args.cache_clear:
        listings.cache(clear=args.cache_clear)
        return
    from gflite.cli.structure import Listed, structure

    text, file, output = args.text, args.file, args.output
    from gflite import pipeline, synth

    if text is not None and file is not None:
        raise UsageError("give -t TEXT or -f FILE, not both")
    pos = list(args.positional or [])
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
        book, pauses, replacements = structure(args, source, output)
    except Listed:
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
            voice=synth.resolve_voice(args.voice), features=features, ssml=args.ssml, prints=args.prints,
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
    if args.verbose and args.voicedir is not None:
        note(f"-voicedir {for_terminal(args.voicedir)}: no effect, as in flite: it is for clunit voices, "
             "and flite.wasm has none")
    if args.bench:
        from gflite.cli import report

        report.benchmark(render.render(job, True, False))
    elif output == "play":
        render.play(job, args.quiet, args.verbose)
    else:
        render.render(job, args.quiet, args.verbose)


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


def _read_along(args: SimpleNamespace) -> tuple[Optional[str], bool, Optional[str]]:
    """--subtitles, --subtitles-words and --timings, checked before any work starts."""
    subtitles, words, timings_json = args.read_along
    if subtitles is None and not words and timings_json is None:
        return None, False, None
    from gflite.subtitles import check_writable, subtitle_format

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
