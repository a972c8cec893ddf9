"""What ``gflite`` lists on stdout and then exits: ``--version``, ``-lv``,
``--cache-info``/``--cache-clear`` and a book's ``--list-chapters``."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from gflite.cli.report import hms, plural
from gflite.cli_shared import for_terminal
from gflite.errors import GfliteError

if TYPE_CHECKING:
    from gflite.books.selection import ChapterInfo


def _flite_stdout(*args: str, exit_code: int = 0) -> str:
    """Run flite.wasm itself (in-process) and return what it printed."""
    from gflite.flitewasm import program
    from gflite.gwasm.sandbox import run_subtask
    from gflite.gwasm.subtask import Limits, Subtask

    result = run_subtask(program(), Subtask(0, "info", tuple(args), (), ()), Limits(subtask_timeout=30))
    if not result.ok and result.exit_code != exit_code:
        raise GfliteError(f"flite.wasm {' '.join(args)} failed: {result.reason}")
    return result.stdout.decode("ascii", "replace")


def version() -> None:
    from gflite import __version__
    from gflite.flitewasm import PINNED_SHA256

    sys.stdout.write(f"gflite {__version__} (flite.wasm sha256 {PINNED_SHA256[:16]})\n")
    sys.stdout.write(_flite_stdout("--version", exit_code=1))  # flite exits 1 after --version


def voices() -> None:
    sys.stdout.write(_flite_stdout("-lv"))


def cache(clear: bool) -> None:
    # Flags, not a `gflite cache` subcommand: flite's positional form would
    # read `gflite cache info` as "say cache, write it to info".
    from gflite.gwasm.cli import cache_action

    for line in cache_action("clear" if clear else "info"):
        sys.stdout.write(line + "\n")


def chapters(rows: tuple[ChapterInfo, ...]) -> None:
    """--list-chapters: number, title, words and time of each, then the totals."""
    width = max((len(str(r.number)) for r in rows), default=1)
    total_words = total_seconds = 0.0
    for r in rows:
        sys.stdout.write(f"{r.number:>{width}}  {for_terminal(r.title, 120)}  {r.words} words  "
                         f"{hms(r.seconds)}\n")
        total_words += r.words
        total_seconds += r.seconds
    sys.stdout.write(f"{plural(len(rows), 'chapter')}, {int(total_words)} words, about {hms(total_seconds)}\n")
