"""Scratch directories a killed run left behind, found and removed by the next one.

A run removes its spool and attempt directories when it ends, Ctrl-C
included; a run killed outright (SIGKILL, the OOM killer, a lost machine)
cannot, and a book's spool can hold gigabytes of audio. So each of these
directories carries the pid of the process that made it, and the first local
executor of a later process removes the ones whose process is gone, before
it starts any work:

- only names this module makes (``gwasm-<kind>-<pid>-<random>``) directly in
  the directory given (the temporary directory by default);
- only real directories, not symlinks, owned by this user and by nobody else's
  writing (a directory another user made, or anything a symlink points to, is
  never touched);
- only when no process has that pid: a live one (ours, another user's, or one
  that reused the pid) keeps its directory.

Processes that share a temporary directory are assumed to see each other's
pids (one PID namespace), as they do on one machine; containers that share a
host's /tmp but not its PID namespace should give each its own TMPDIR.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import threading
from pathlib import Path

KINDS = ("spool", "attempt", "run")
_NAME = re.compile(r"^gwasm-(?:%s)-([1-9][0-9]{0,9})-[A-Za-z0-9_]{1,32}$" % "|".join(KINDS))

_swept = False
_swept_lock = threading.Lock()


def prefix(kind: str) -> str:
    """The ``tempfile.mkdtemp`` prefix for a scratch directory of ``kind`` made by this process."""
    if kind not in KINDS:
        raise ValueError(f"unknown scratch directory kind {kind!r}")
    return f"gwasm-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number we cannot ask about): leave it
    return True


def sweep(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the scratch directories in ``directory`` whose process is gone;
    the ones removed. Errors leave a directory where it is."""
    from gflite.gwasm import guestfs

    root = Path(directory if directory is not None else tempfile.gettempdir())
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    me = os.geteuid()
    for name in names:
        m = _NAME.match(name)
        if m is None or int(m.group(1)) == os.getpid():
            continue
        path = root / name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != me or _alive(int(m.group(1))):
            continue
        try:
            guestfs.remove_tree(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def sweep_once(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """:func:`sweep`, the first time a process asks (later calls do nothing).

    In the caller's thread, not a thread of its own: a second thread would
    make forking workers unsafe (see :func:`gflite.gwasm.workers.fork_is_safe`).
    Finding nothing, the usual case, is one directory listing; there is only
    something to remove after a run was killed."""
    global _swept
    with _swept_lock:
        if _swept:
            return []
        _swept = True
    return sweep(directory)
