"""``gflite``: flite's command line, run as parallel sandboxed subtasks.

Existing flite commands keep working with a ``g`` in front: ``-f``, ``-t``,
``-o``, ``-voice``, ``-lv``, ``--setf``/``--seti``/``--sets``/``-s``, ``-ssml``,
``-v``, ``--version``, ``-pw``/``-ps``/``-psdur``/``-pr``, ``-add_lex``,
``-voicedir``, ``-b``, and flite's positional ``TEXT_OR_FILE [OUTFILE]`` (a
file if one exists by that name, else text to say); flite's ``-p``, ``-l`` and
``-voicedump`` are refused by name. Books (``.epub``, ``.md``, ``.html``)
become audiobooks: ``--list-chapters``, ``--chapters``, ``--split chapters``,
the ``--*-silence`` pauses, ``--replace`` and the ``--keep-*`` flags. This
package turns flags into a frozen :class:`gflite.pipeline.Job`, draws progress
on stderr, and chooses exit codes (listed in README.md). stdout carries only
what was asked for: WAV with ``-o -``, flite's printouts, or the
``-lv``/``--version``/``-b`` listings.

Its parts: :mod:`.flags` (the flags, and the parser of common command lines),
:mod:`.options` (the same flags as a click command: help, errors), :mod:`.job` (flags →
Job), :mod:`.structure` (books: chapters, pauses, replacements), :mod:`.render`
(running the Job, playing it), :mod:`.progress` (the bar), :mod:`.report` (notes
and the end-of-run lines), :mod:`.listings` (``--version``, ``-lv``, the cache).
Each imports what only some runs need when a flag asks for it, so saying
"Hello." loads no book, subtitle or cluster code.

Exit codes: 0 ok · 1 other error · 2 bad usage · 3 bad input text or voice ·
5 a chunk failed or the job timed out · 6 providers disagreed · 7 bid/budget ·
8 cluster · 9 output · 130 interrupted (Ctrl-C). Every error is one line,
``gflite: error: ...``, on stderr.
"""
from __future__ import annotations

import os
import sys

# Only what forking the spare worker needs is imported before main() has forked
# it; the rest (click, the pipeline) loads while that worker loads wasmtime.
from gflite.cli import spare

__all__ = ["main", "run"]

INTERRUPTED = "interrupted; finished chunks are cached, rerun the same command to resume"


def run(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (flite's flags) and do what it asks; raises GfliteError subclasses."""
    from gflite.cli import flags

    values = flags.parse(sys.argv[1:] if argv is None else argv)
    if values is not None:  # the common command line: no click needed
        from gflite.cli.job import run_args

        run_args(flags.to_args(values))
        return
    import click

    from gflite.cli.options import Carry, command
    from gflite.cli.report import PROG
    from gflite.errors import UsageError

    try:
        command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except Carry as carried:
        raise carried.exc from None
    except click.UsageError as exc:
        raise UsageError(f"{exc.format_message()} (see {PROG} --help)") from None
    except click.exceptions.Abort as exc:  # click's Ctrl-C
        raise KeyboardInterrupt from exc


def _silence_stdout() -> None:
    """The reader of stdout is gone: stop Python's exit-time flush from complaining."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> None:
    """The ``gflite`` console script: run, then exit with the documented code."""
    if not os.environ.get("GFLITE_CLUSTER"):
        # Most runs are local: a worker forked now loads wasmtime while the flags
        # are parsed and the job prepared. Runs that need none end it.
        spare.start()
    import signal

    from gflite.cli import render
    from gflite.cli.report import error
    from gflite.errors import GfliteError, Interrupted, ReaderGone

    render.completed = False
    code = 0
    try:
        try:
            run(argv)
        finally:
            spare.discard()
            if render.completed and argv is None:
                # The output is complete: a Ctrl-C while this process exits must not
                # turn it into a failure. (Only as the console script: the process is ours.)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        if not render.completed:
            # Raised wherever Ctrl-C found us; the pipeline's cleanup has run on the way out.
            error(INTERRUPTED)
            code = Interrupted.exit_code
    except (BrokenPipeError, ReaderGone):
        # The reader of stdout (or of a FIFO) went away, e.g. `gflite ... -o - | head`:
        # not our error. A dead encoder or a full disk is an OutputError (exit 9).
        _silence_stdout()
    except GfliteError as exc:
        error(str(exc))
        code = exc.exit_code
    if argv is None:  # the console script: nothing of the process is left to anyone
        from gflite.cli_shared import exit_now

        exit_now(code)
    sys.exit(code)
