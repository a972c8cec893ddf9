"""Running a :class:`gflite.pipeline.Job`: notes and the bar while it runs, the
end-of-run lines after, or the audio played (flite's default output)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, BinaryIO, Optional

from gflite.cli import report
from gflite.errors import OutputError, ReaderGone

if TYPE_CHECKING:
    from gflite import pipeline
    from gflite.cli.progress import Bar

# Set once the output is complete: a Ctrl-C after that does not make the run a failure.
completed = False


def render(job: pipeline.Job, quiet: bool, verbose: bool, stdout: Optional[BinaryIO] = None) -> pipeline.Summary:
    global completed
    from gflite import pipeline

    show_bar = not quiet and sys.stderr.isatty()
    bar: Optional[Bar] = None
    name = {"file": job.source.value, "stdin": "stdin", "text": "the text"}[job.source.kind]

    def on_plan(plan: pipeline.Plan) -> None:
        nonlocal bar
        if not quiet:
            report.plan_notes(job, plan, name, verbose)
        if verbose:
            report.verbose_plan(plan)
        if show_bar:
            from gflite.cli.progress import Bar

            bar = Bar(plan)

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
    completed = stdout is None
    report.summary_lines(job, summary, name, quiet, verbose)
    return summary


def play(job: pipeline.Job, quiet: bool, verbose: bool) -> None:
    """flite's default output: play it. We stream WAV into a local player."""
    import shutil
    import subprocess

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
        render(job, quiet, verbose, stdout=proc.stdin)
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
