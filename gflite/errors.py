"""The one exception root. Each subclass carries the process exit code the CLIs use.

Library code raises these; only the ``cli`` modules turn them into
``gflite: error: ...`` on stderr and an exit code (documented in README.md).
"""
from __future__ import annotations


class GfliteError(Exception):
    """Root of every error gflite and gwasm report to a user."""

    exit_code = 1


class UsageError(GfliteError):
    """Bad flags or arguments."""

    exit_code = 2


class InputError(GfliteError):
    """Unreadable, missing, empty or binary input text; unknown voice."""

    exit_code = 3


class TaskFileError(GfliteError):
    """A task.json or its input directory is malformed or missing a field."""

    exit_code = 4


class ExecutionError(GfliteError):
    """One or more subtasks failed after their retries, or the task timed out."""

    exit_code = 5

    def __init__(self, message: str, outcomes: tuple = ()) -> None:
        super().__init__(message)
        # Every subtask's final result, so a failed task still reports all of them.
        self.outcomes = outcomes


class VerificationError(ExecutionError):
    """Providers disagreed on a subtask and no majority formed within the bound."""

    exit_code = 6


class MarketError(GfliteError):
    """Too few providers at or under the bid, or the budget would be exceeded."""

    exit_code = 7


class ClusterError(GfliteError):
    """The cluster scheduler cannot be reached or refused us (e.g. TLS)."""

    exit_code = 8


class OutputError(GfliteError):
    """The output cannot be written (directory missing, format unknown, no ffmpeg, disk full)."""

    exit_code = 9


class Interrupted(GfliteError):
    """Ctrl-C: finished subtask results are kept, the output file is not left half-written."""

    exit_code = 130


class ReaderGone(GfliteError):
    """The program reading a streamed output (stdout, a FIFO) went away, e.g. ``| head``.

    Not a failure of ours: the CLI stops quietly with exit 0, as flite would
    (it dies of SIGPIPE). An encoder that dies is an OutputError instead.
    """

    exit_code = 0
