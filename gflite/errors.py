"""The one exception root. Each subclass carries the process exit code the CLIs use.

Library code raises these; only the ``cli`` modules turn them into
``gflite: error: ...`` on stderr and an exit code (documented in README.md).
"""
from __future__ import annotations

from enum import Enum


class GfliteError(Exception):
    """Root of every error gflite and gwasm report to a user."""

    exit_code = 1


class UsageError(GfliteError):
    """Bad flags or arguments."""

    exit_code = 2


class InputError(GfliteError):
    """Unreadable, missing, empty or binary input text; unknown voice."""

    exit_code = 3


class BookProblem(Enum):
    """What is wrong with a book (EPUB, Markdown, HTML) that cannot be read."""

    NOT_A_BOOK = "not a book"  # not a zip, no container.xml, unknown file type
    MISSING = "missing part"  # OPF, spine item or manifest entry absent
    MALFORMED = "malformed"  # XML that does not parse, a spine that says nothing
    UNSAFE_PATH = "unsafe path"  # member names with ../ or absolute paths
    ZIP_BOMB = "zip bomb"  # decompressed size or ratio over the caps
    ENTITIES = "entities"  # DTD entity declarations (billion laughs) or external entities
    ENCODING = "encoding"  # text that is not valid in its declared (or default UTF-8) encoding
    DRM = "drm"  # encrypted content (META-INF/encryption.xml)
    TOO_LARGE = "too large"  # too many members, chapters or characters


class BookError(InputError):
    """A book that cannot be read safely; ``problem`` says what kind of trouble."""

    def __init__(self, message: str, problem: BookProblem) -> None:
        # Names in the message come from the book: keep it one printable line.
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))
        self.problem = problem


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
