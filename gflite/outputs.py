"""Where an output name really writes: a file, a stream, or through a symlink.

As flite does, a FIFO or a character device (``/dev/null``, ``/dev/audio``, a
named pipe a player reads) is opened and streamed into like stdout; it is
never replaced by a file. A symlink is followed: its final target is replaced
atomically (temporary file beside the target, then a rename), and the link
itself stays a link. Anything else is a regular file, written to a temporary
``.NAME.xxxxxxxx.part`` beside it and renamed into place when complete.

A process killed with ``kill -9`` leaves its part behind. Each writer holds an
exclusive ``flock`` on its part while it writes, so when the same output is
written again, parts by our naming, owned by this user, older than this run
and not locked by a live writer are removed.
"""
from __future__ import annotations

import fcntl
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from gflite.errors import OutputError

PART_SUFFIX = ".part"
# tempfile.mkstemp's random part: 8 characters of this alphabet.
_RANDOM = r"[a-z0-9_]{8}"


@dataclass(frozen=True)
class Target:
    """An output name resolved: ``path`` is what is written (a symlink's final target)."""

    name: str  # as the user gave it
    path: Path
    stream: bool  # a FIFO or character device: open and write, never replace


# A process's own file descriptors by name: whatever they are (a pipe, a terminal,
# a file the shell opened), they are written into as flite does, never replaced.
_OWN_FDS = ("/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/self/fd/")


def resolve(name: str) -> Target:
    """Follow symlinks and classify ``name``; a missing target is a new regular file."""
    if name.startswith(_OWN_FDS):
        return Target(name, Path(name), stream=True)
    try:
        mode = os.stat(name).st_mode  # through any symlinks
    except OSError:
        mode = 0
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return Target(name, Path(name), stream=True)  # opened by its own name, as flite does
    path = Path(name)
    return Target(name, Path(os.path.realpath(path)) if path.is_symlink() else path, stream=False)


def check_file_place(path: Path, hint: str = "") -> None:
    """A new regular file can be written at ``path``: not a directory, in a folder
    that exists (``hint`` follows the directory message, e.g. a name to give)."""
    if path.is_dir():
        raise OutputError(f"output {path} is a directory{hint}")
    if not path.parent.is_dir():
        raise OutputError(f"output directory does not exist: {path.parent}")


def part_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.{_RANDOM}{re.escape(PART_SUFFIX)}$")


def lock(fd: int) -> None:
    """Mark a part as being written by this process (released when it exits, however)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # a filesystem without locks: cleanup then only trusts age


def remove_stale_parts(target: Path, *, before: float | None = None) -> list[Path]:
    """Remove our own abandoned parts of ``target``; returns what was removed.

    Only parts named as we name them, owned by this user, regular files, last
    written before ``before`` (default: now) and not locked by a live writer.
    """
    before = time.time() if before is None else before
    pattern = part_pattern(target)
    removed = []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for entry in names:
        if not pattern.match(entry):
            continue
        path = target.parent / entry
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mtime >= before:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed
