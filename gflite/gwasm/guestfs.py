"""The guest's private directory on the host: filling it, measuring it, reading
outputs back from it and removing it, all through directory file descriptors.

A guest controls the tree it leaves behind: names up to 255 bytes, any depth,
tens of thousands of entries. So nothing here builds a path from the guest's
names (a path past PATH_MAX cannot be opened, and a tree counted by path hides
whatever lies below that point), nothing follows a symlink the guest made, and
nothing recurses (Python < 3.12's ``shutil.rmtree`` and ``os.fwalk`` recurse,
and a 1,500-deep tree raises RecursionError in them, gh-89727).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gflite.gwasm.subtask import Limits, Subtask

if TYPE_CHECKING:
    from gflite.gwasm.spool import OutputFile, Spool

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

# What the guest's clock says its input files were written at (see sandbox's
# virtual clock): inputs look the same on every provider.
FIXED_MTIME_NS = 1_546_300_800 * 10**9  # 2019-01-01T00:00:00Z, the year gWASM shipped

# The usage walk never holds more directory fds than this; a deeper tree is
# reported as this deep, which is past every sane depth limit.
_WALK_DEPTH = 1024


def check_relpath(rel: str) -> str:
    """Return ``rel`` if it is a plain relative path inside a directory, else raise ValueError."""
    if not isinstance(rel, str) or not rel or "\0" in rel or "\\" in rel:
        raise ValueError(f"bad path {rel!r}")
    if rel.startswith("/") or any(part in ("", ".", "..") for part in rel.split("/")):
        raise ValueError(f"path {rel!r} must be relative, without '..', '.' or empty parts")
    return rel


def materialise(subtask: Subtask, workdir: Path) -> None:
    """Write the subtask's inputs into ``workdir`` (read-only, with a fixed
    mtime) and create the parents of its outputs. Raises ValueError for a bad
    path, OSError if the files cannot be made."""
    for rel, data in subtask.inputs:
        path = workdir / check_relpath(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.utime(f.fileno(), ns=(FIXED_MTIME_NS, FIXED_MTIME_NS))
    for rel in subtask.outputs:
        (workdir / check_relpath(rel)).parent.mkdir(parents=True, exist_ok=True)


# --- measuring ---------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """What a directory tree costs the disk: bytes (a file's size or its
    allocated blocks, whichever is larger; a directory's blocks), entries
    (files, directories, links: inodes) and depth (1 = entries at the top)."""

    bytes: int = 0
    entries: int = 0
    depth: int = 0

    def over(self, baseline: Usage, limits: Limits) -> str:
        """The limit this usage breaks, beyond ``baseline`` (the inputs), or ''."""
        if self.bytes - baseline.bytes > limits.output_bytes:
            return f"output limit of {format_bytes(limits.output_bytes)} exceeded"
        if self.entries - baseline.entries > limits.output_entries:
            return f"output limit of {limits.output_entries} files and directories exceeded"
        if self.depth > max(baseline.depth, limits.output_depth):
            return f"output limit of {limits.output_depth} directory levels exceeded"
        return ""


def _cost(st: os.stat_result) -> int:
    blocks = st.st_blocks * 512
    return max(st.st_size, blocks) if stat.S_ISREG(st.st_mode) else blocks


def usage(root: Path | str, baseline: Usage | None = None, limits: Limits | None = None) -> Usage:
    """Walk ``root`` through directory fds, never following a symlink.

    Given ``baseline`` and ``limits``, stops as soon as a limit is broken, so
    the cost of a walk is bounded by the limits, not by what the guest made.
    Tolerates the tree changing underneath (the guest may be writing)."""
    total = entries = deepest = 0
    max_bytes = max_entries = max_depth = None
    if baseline is not None and limits is not None:
        max_bytes = baseline.bytes + limits.output_bytes
        max_entries = baseline.entries + limits.output_entries
        max_depth = max(baseline.depth, limits.output_depth)
    try:
        top = os.open(root, _DIR_FLAGS)
    except OSError:
        return Usage()
    stack: list[tuple[int, list[str]]] = []
    try:
        stack.append((top, _names(top)))
        while stack:
            fd, names = stack[-1]
            if not names:
                os.close(fd)
                stack.pop()
                continue
            name = names.pop()
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            entries += 1
            total += _cost(st)
            deepest = max(deepest, len(stack))
            if (
                max_bytes is not None
                and (total > max_bytes or entries > max_entries or deepest > max_depth)  # type: ignore[operator]
            ):
                break
            if stat.S_ISDIR(st.st_mode):
                if len(stack) >= _WALK_DEPTH:
                    deepest = _WALK_DEPTH + 1
                    continue
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                try:
                    stack.append((sub, _names(sub)))
                except OSError:
                    os.close(sub)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return Usage(total, entries, deepest)


def _names(fd: int) -> list[str]:
    try:
        return os.listdir(fd)
    except OSError:
        return []


def format_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


# --- reading outputs ---------------------------------------------------------


def _open_output(workdir: Path, rel: str, budget: int) -> tuple[int, int, os.stat_result] | str:
    """Open output ``rel`` under ``workdir`` for reading: (its directory's fd, its
    fd, its stat), both fds the caller's to close; or a reason string. Walks
    down with O_NOFOLLOW at every level, so no symlink is ever followed, and
    refuses anything but a regular file of at most ``budget`` bytes."""
    parts = rel.split("/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(workdir, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            sub = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        # O_NONBLOCK: were it a FIFO, opening must not hang the host.
        file_fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
    except OSError as exc:
        os.close(fd)
        if isinstance(exc, FileNotFoundError):
            return f"missing output file {rel}"
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return f"output file {rel} is a symlink or not a file"
        return f"cannot read output file {rel}: {exc.strerror}"
    try:
        st = os.fstat(file_fd)
    except OSError as exc:
        os.close(file_fd)
        os.close(fd)
        return f"cannot read output file {rel}: {exc.strerror}"
    why = ("" if stat.S_ISREG(st.st_mode) and st.st_size <= budget
           else "output limit exceeded" if stat.S_ISREG(st.st_mode)
           else f"output file {rel} is not a regular file")
    if why:
        os.close(file_fd)
        os.close(fd)
        return why
    return fd, file_fd, st


def read_output(workdir: Path, rel: str, budget: int) -> bytes | str:
    """The bytes of output ``rel``, or a reason string (see :func:`_open_output`)."""
    opened = _open_output(workdir, rel, budget)
    if isinstance(opened, str):
        return opened
    fd, file_fd, st = opened
    os.close(fd)
    try:
        with os.fdopen(file_fd, "rb", closefd=False) as f:
            # Ask for what fstat saw (plus one byte, to see a file still
            # growing): read(n) allocates n bytes up front.
            data = f.read(min(budget, st.st_size) + 1)
        return "output limit exceeded" if len(data) > budget else data
    finally:
        os.close(file_fd)


def take_output(workdir: Path, rel: str, budget: int, spool: Spool) -> OutputFile | str:
    """Move output ``rel`` out of ``workdir`` into ``spool`` (hashed on the
    way, in bounded blocks), or a reason string, with the checks of
    :func:`read_output`. Only once the guest has ended: nobody writes the tree."""
    from gflite.gwasm.spool import hash_fd

    opened = _open_output(workdir, rel, budget)
    if isinstance(opened, str):
        return opened
    fd, file_fd, st = opened
    try:
        try:
            digest = hash_fd(file_fd, st.st_size)
            if os.fstat(file_fd).st_size != st.st_size:
                return "output limit exceeded"  # still growing: nothing may write it now
        finally:
            os.close(file_fd)
        return spool.adopt_file(rel, fd, rel.split("/")[-1], st.st_size, digest)
    finally:
        os.close(fd)


# --- removing ----------------------------------------------------------------


def remove_tree(path: Path | str) -> None:
    """Remove the directory ``path`` and everything in it, however deep or wide;
    raise OSError if something cannot be removed.

    Iterative and depth-free: a non-empty subdirectory has its children renamed
    up into ``path`` and is then removed, so no more than two directory fds are
    ever open and no path longer than two names is ever used. Call it only on
    a tree nobody is still writing (the guest's process has ended)."""
    try:
        top = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        os.unlink(path)  # a symlink or a file where the directory was: remove just it
        return
    serial = 0
    try:
        while names := os.listdir(top):
            progress = False
            for name in names:
                try:
                    st = os.stat(name, dir_fd=top, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=top)
                    progress = True
                    continue
                if not st.st_mode & stat.S_IWUSR or not st.st_mode & stat.S_IXUSR:
                    # A directory (just seen by lstat, and nobody writes the tree now).
                    os.chmod(name, 0o700, dir_fd=top)
                try:
                    os.rmdir(name, dir_fd=top)
                    progress = True
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                sub = os.open(name, _DIR_FLAGS, dir_fd=top)
                try:
                    for child in os.listdir(sub):
                        serial = _hoist(sub, child, top, serial)
                        progress = True
                finally:
                    os.close(sub)
            if not progress:
                raise OSError(errno.ENOTEMPTY, "cannot empty the directory", os.fspath(path))
    finally:
        os.close(top)
    os.rmdir(path)


def _hoist(src_fd: int, name: str, top_fd: int, serial: int) -> int:
    """Rename ``name`` from the directory ``src_fd`` into ``top_fd`` under a
    fresh name; returns the next serial. Everything in the tree is being
    removed, so replacing an entry that happens to have the fresh name
    (a file, an empty directory) loses nothing."""
    for _ in range(1000):
        serial += 1
        try:
            os.rename(name, f".gwasm-rm-{serial}", src_dir_fd=src_fd, dst_dir_fd=top_fd)
            return serial
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise
    raise OSError(errno.EEXIST, "no free name to move an entry to", name)
