"""What ``gflite`` says on stderr: errors, notes, and the end-of-run lines."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from gflite.cli_shared import for_terminal

if TYPE_CHECKING:
    from gflite import pipeline

PROG = "gflite"


def error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {for_terminal(message, 2000)}\n")
    sys.stderr.flush()


def note(message: str) -> None:
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def clock(seconds: float) -> str:
    """m:ss, or h:mm:ss past an hour."""
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def hms(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def length(seconds: float) -> str:
    """Seconds under a minute ("42.3 s"), else h:mm:ss."""
    return f"{seconds:.1f} s" if seconds < 60 else hms(seconds)


def _some(items: list[str], total: int, shown: int = 5) -> str:
    """Up to ``shown`` items, then "and N more"."""
    more = total - min(len(items), shown)
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def text_notes(text: pipeline.Text, name: str) -> list[str]:
    """What normalising the input did that a listener would notice."""
    notes = []
    if text.invalid_bytes:
        notes.append(f"{name} is UTF-8 with {plural(text.invalid_bytes, 'invalid byte')}, skipped")
    if text.spelled:
        said = [f"{for_terminal(repr(ch))} as {word!r}" + (f" x{n}" if n > 1 else "") for ch, word, n in text.spelled]
        notes.append(f"said {_some(said, len(said))}")
    if text.dropped:
        shown = [f"{for_terminal(repr(ch))} x{n}" for ch, n in text.dropped]
        notes.append(f"dropped {plural(text.dropped_count, 'character')} flite cannot say: "
                     f"{_some(shown, len(shown))}")
    return notes


def plan_notes(job: pipeline.Job, plan: pipeline.Plan, name: str, verbose: bool) -> None:
    """The notes before any work: how the output is written, what the text lost, the workers."""
    from gflite import outputs, pipeline, stitching
    from gflite.book_suffixes import audiobook_format

    if (job.output not in (pipeline.STDOUT, pipeline.DISCARD) and stitching.wav_by_default(job.output)
            and not job.split and audiobook_format(job.output) is None
            and (job.book is None or job.book.anchors is None)  # -o book.epub: a read-along EPUB
            and not outputs.resolve(job.output).stream):  # /dev/null, a FIFO: no file name to mislead
        note(f"writing {for_terminal(job.output)} as WAV, as flite does (.mp3, .ogg and .flac are encoded)")
    for line in text_notes(plan.text, for_terminal(name)):
        note(line)
    if plan.workers_asked is not None:
        note(f"-j {plan.workers_asked}: using {plural(plan.workers, 'worker')} "
             f"(at most {pipeline.WORKERS_PER_CORE} per core, and no more than the chunks)")


def verbose_plan(plan: pipeline.Plan) -> None:
    note(f"{plan.characters} characters ({plan.text.encoding}) in {plural(plan.chunks, 'chunk')} "
         f"on {plural(plan.workers, 'worker')}, at most {plan.subtask_timeout:g} s a chunk")


def summary_lines(job: pipeline.Job, summary: pipeline.Summary, name: str, quiet: bool, verbose: bool) -> None:
    """The end-of-run lines: what was written and how fast, warnings, and the bill."""
    from gflite import pipeline

    if verbose or (not quiet and job.output not in (pipeline.STDOUT, pipeline.DISCARD)):
        speed = summary.audio_seconds / summary.elapsed if summary.elapsed > 0 else 0.0
        where = {pipeline.STDOUT: "stdout", pipeline.DISCARD: "nothing (-o none)"}.get(job.output, job.output)
        if summary.files:
            where = f"{plural(len(summary.files), 'file')} in {job.output}"
        extra = "".join(f", {plural(n, what)}" for n, what in (
            (summary.chapters, "chapter"), (summary.pauses, "pause")) if n)
        if job.replacements is not None:  # --replace: say how many, none included
            extra += f", {summary.replaced_words} word{'' if summary.replaced_words == 1 else 's'} replaced"
        note(f"wrote {for_terminal(where)}: {length(summary.audio_seconds)} of audio{extra}, "
             f"{plural(summary.chunks, 'chunk')} ({summary.from_cache} from cache), "
             f"{length(summary.elapsed)} ({speed:.1f}x real time)")
    if quiet:
        return
    if summary.audio_seconds == 0:
        note(f"warning: {for_terminal(name)} has nothing flite can say (only punctuation or symbols): "
             f"the audio is empty")
    if summary.unknown_length:
        note(f"{job.output} is over the 4 GiB that WAV sizes can state, so its header says 'length unknown' "
             f"(ffmpeg and sox read it to the end); .flac is lossless and about half the size")
    if summary.report is not None:
        from gflite.cli_shared import market_in_play

        # The bill and verdicts when a cluster or market terms are in play; who was
        # excluded for lying, always.
        full = market_in_play(job.cluster, job.redundancy, job.bid, job.budget)
        for line in summary.report.lines():
            if full or line.startswith("excluded "):
                note(for_terminal(line, 400))  # names and verdicts come from providers


def benchmark(summary: pipeline.Summary) -> None:
    """flite -b's two lines (flite_main.c's format), for the whole gflite run."""
    took = max(summary.elapsed, 1e-6)
    sys.stdout.write(f"times faster than real-time: {summary.audio_seconds / took:f}\n"
                     f"({summary.audio_seconds:f} seconds of speech synthesized in {took:f})\n")
