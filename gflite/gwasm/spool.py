"""Results as files: a guest's output travels as a file on disk, never as
Python bytes, from the guest's directory to the requestor's output.

An :class:`OutputFile` names ``size`` bytes at ``offset`` in ``path`` whose
sha256 is ``sha256``. Where the digest comes from decides whether the bytes
must be checked again when they are read:

- a :class:`Spool` file was hashed as it was made, by this machine (the
  sandbox's worker, or :meth:`Spool.adopt_bytes` as a remote answer
  arrives), and lives in a private directory nobody else writes:
  ``verified=True``, copied by the kernel (:func:`copy_range`);
- a result-cache entry's digest is what the entry says about itself:
  ``verified=False``, hashed as it is copied, in bounded blocks, never read
  whole into memory: into the cache (:func:`copy_checked`) and by the
  stitcher (a :class:`Checker` hashes each entry from the same open file
  while the kernel copies it and the next ones, on both cores, and settles
  before anything is published).

Spool files are removed with their spool (the executor's), or one by one
with :func:`release` once the output has taken them.

A remote executor (Dask) keeps one ``Spool()`` for its lifetime (closed in
its ``close()``, honouring ``files``) and turns each answer's output into a
file as it arrives: ``spool.adopt_bytes(rel, data)`` for an output already
decoded (drop ``data`` right after), or ``w = spool.writer(rel)``,
``w.write(block)`` per received block, ``w.finish()`` for one read in pieces
(``w.abort()`` on a bad answer). The resulting ``OutputFile`` goes into
``SubtaskResult.outputs`` in place of the bytes; its sha256 is this
machine's, computed as the bytes were written, so the dispatcher's digest
check still holds the provider to what it sent.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gflite.gwasm import leftovers

# What one read or copy call moves: memory held at once by the checked copy.
BLOCK = 1 << 20

_serial = 0
_serial_lock = threading.Lock()


@dataclass(frozen=True)
class OutputFile:
    """One output of a result, on disk: ``size`` bytes at ``offset`` in ``path``.

    ``owned``: a spool file of this run (removed by :func:`release`), not a
    cache entry, which outlives the run."""

    rel: str
    path: str
    size: int
    sha256: str
    offset: int = 0
    verified: bool = True
    owned: bool = True
    # A cache entry's inode when it was read: an entry rewritten since (more
    # trust recorded for it) has other offsets, so its reader looks it up again.
    inode: int = 0

    def __len__(self) -> int:
        """The output's length, as for the bytes it stands for."""
        return self.size

    def read(self) -> bytes:
        """The whole output in memory: for small outputs and tests only."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.path} is shorter than its record")
        if not self.verified and hashlib.sha256(data).hexdigest() != self.sha256:
            raise DamagedError(f"{self.path} does not match its recorded sha256")
        return data


class DamagedError(OSError):
    """Bytes read back did not match their recorded sha256 (a damaged cache entry).
    ``tag``: what the entry was handed to a :class:`Checker` with (which chunk)."""

    tag: object = None


class StaleError(OSError):
    """A cache entry was replaced since it was looked up (nothing was copied yet)."""


def release(outputs: object) -> None:
    """Remove the spool files among a result's ``outputs`` (cache entries stay)."""
    if not isinstance(outputs, tuple):
        return
    for _, item in outputs:
        if isinstance(item, OutputFile) and item.owned:
            with contextlib.suppress(OSError):
                os.unlink(item.path)


def hash_fd(fd: int, size: int) -> str:
    """sha256 of the first ``size`` bytes of ``fd`` from offset 0, in bounded blocks."""
    h = hashlib.sha256()
    pos = 0
    while pos < size:
        block = os.pread(fd, min(BLOCK, size - pos), pos)
        if not block:
            raise OSError(f"file shrank while it was hashed ({pos} of {size} bytes)")
        h.update(block)
        pos += len(block)
    return h.hexdigest()


class Spool:
    """A private (0700) directory of result files on the filesystem of ``parent``
    (default: the temporary directory, where the local executor's attempt
    directories are, so a guest's output is renamed, not copied, into it).
    Thread-safe; :meth:`close` removes it with every file left in it."""

    def __init__(self, parent: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=leftovers.prefix("spool"), dir=parent))

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> Spool:
        """The spool already made at ``root`` (by another process: a worker
        writes into its executor's spool)."""
        self = cls.__new__(cls)
        self.root = Path(root)
        return self

    def _fresh(self, rel: str) -> Path:
        # One counter per process, not per Spool object: a worker opens its
        # executor's spool anew for every attempt.
        with _serial_lock:
            global _serial
            _serial += 1
            n = _serial
        # The guest's name is not used as a path: only a serial and a safe tail.
        tail = "".join(c for c in rel.rsplit("/", 1)[-1][-32:] if c.isalnum() or c in "._-")
        # Several worker processes share one spool: the pid keeps names apart.
        return self.root / f"{os.getpid()}-{n:08d}-{tail or 'out'}"

    def adopt_bytes(self, rel: str, data: bytes | bytearray | memoryview) -> OutputFile:
        """Write ``data`` (e.g. a remote answer's output, as it arrives) to a
        new spool file; the caller can drop ``data`` afterwards."""
        writer = self.writer(rel)
        try:
            writer.write(data)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    def writer(self, rel: str) -> SpoolWriter:
        """A spool file written piece by piece (a network answer read in
        blocks), hashed as it is written: ``finish()`` gives its OutputFile."""
        return SpoolWriter(rel, self._fresh(rel))

    def adopt_file(self, rel: str, dir_fd: int, name: str, size: int, sha256: str) -> OutputFile:
        """Move the regular file ``name`` in the directory ``dir_fd`` (already
        checked and hashed by the caller, and written by nobody any more) into
        the spool: a rename on one filesystem, else a kernel copy."""
        dest = self._fresh(rel)
        try:
            os.rename(name, dest, src_dir_fd=dir_fd)
        except OSError:
            src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    copy_range(src, 0, size, out)
                finally:
                    os.close(out)
            finally:
                os.close(src)
        os.chmod(dest, 0o600)
        return OutputFile(rel=rel, path=str(dest), size=size, sha256=sha256)

    def close(self) -> None:
        from gflite.gwasm import guestfs

        with contextlib.suppress(OSError):
            guestfs.remove_tree(self.root)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpoolWriter:
    """One spool file being written; see :meth:`Spool.writer`."""

    def __init__(self, rel: str, path: Path) -> None:
        self.rel = rel
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        while view:
            view = view[os.write(self._fd, view) :]
        self.size += len(data)

    def finish(self) -> OutputFile:
        os.close(self._fd)
        self._fd = -1
        return OutputFile(rel=self.rel, path=str(self.path), size=self.size, sha256=self._hash.hexdigest())

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.path)


# --- copying -------------------------------------------------------------------


def copy_range(src: int, offset: int, size: int, dst: int) -> None:
    """Copy ``size`` bytes at ``offset`` of ``src`` to ``dst``'s current position
    without bringing them into Python: ``copy_file_range`` (file to file),
    else ``sendfile`` (file to pipe or socket), else a plain bounded loop."""
    pos, end = offset, offset + size
    try:
        regular = stat.S_ISREG(os.fstat(dst).st_mode)
    except OSError:
        regular = False
    if regular and hasattr(os, "copy_file_range"):
        try:
            while pos < end:
                n = os.copy_file_range(src, dst, end - pos, pos)
                if n == 0:
                    raise OSError(f"source ended {end - pos} bytes early")
                pos += n
            return
        except OSError as exc:
            if pos != offset or exc.errno is None:  # partly copied, or a short source
                raise
    if hasattr(os, "sendfile"):
        try:
            while pos < end:
                n = os.sendfile(dst, src, pos, min(end - pos, 1 << 30))
                if n == 0:
                    raise OSError(f"source ended {end - pos} bytes early")
                pos += n
            return
        except OSError as exc:
            if pos != offset or exc.errno is None:
                raise
    while pos < end:
        block = os.pread(src, min(BLOCK, end - pos), pos)
        if not block:
            raise OSError(f"source ended {end - pos} bytes early")
        view = memoryview(block)
        while view:
            view = view[os.write(dst, view) :]
        pos += len(block)


# Pieces at least this long get their blocks reserved before they are copied (see reserve).
RESERVE_BYTES = 1 << 20
_FALLOC_FL_KEEP_SIZE = 1
_fallocate: Callable[[int, int, int, int], int] | None = None
_no_fallocate = False


def reserve(fd: int, offset: int, length: int) -> None:
    """Have the filesystem allocate ``length`` bytes at ``offset`` of the file
    ``fd`` before they are written (``fallocate`` keeping its size): ext4 then
    copies a cached book's 840 MB with a fifth less CPU than allocating block
    by block as it writes. A hint only: never an error, nothing below
    :data:`RESERVE_BYTES` (ctypes is imported on the first large piece)."""
    global _fallocate, _no_fallocate
    if length < RESERVE_BYTES or _no_fallocate:
        return
    if _fallocate is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            call = getattr(libc, "fallocate64", None) or libc.fallocate
            call.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            call.restype = ctypes.c_int
            _fallocate = call
        except (ImportError, OSError, AttributeError):  # no libc fallocate here: copy as is
            _no_fallocate = True
            return
    _fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)  # -1 (unsupported, full...): the copy will say


def stream_checked(src: int, offset: int, size: int, sha256: str, start: int, length: int,
                   write) -> None:  # type: ignore[no-untyped-def]
    """Read the ``size`` bytes at ``offset`` of ``src`` once, in bounded blocks,
    hashing all of them and handing ``write`` those in ``[start, start+length)``
    (absolute offsets); DamagedError at the end if the hash is not ``sha256``."""
    h = hashlib.sha256()
    pos, end = offset, offset + size
    stop = start + length
    while pos < end:
        block = os.pread(src, min(BLOCK, end - pos), pos)
        if not block:
            raise DamagedError(f"source ended {end - pos} bytes early")
        h.update(block)
        lo, hi = max(pos, start), min(pos + len(block), stop)
        if lo < hi:
            write(memoryview(block)[lo - pos : hi - pos])
        pos += len(block)
    if h.hexdigest() != sha256:
        raise DamagedError("bytes do not match their recorded sha256")


def digest_range(src: int, offset: int, size: int, buf: memoryview | None = None) -> str:
    """sha256 of the ``size`` bytes at ``offset`` of ``src``, read into one
    reused buffer (a fresh 1 MiB ``bytes`` per block costs its page faults):
    ``buf``, else this thread's (see :func:`_buffer`)."""
    h = hashlib.sha256()
    buf = buf if buf is not None else _buffer()
    pos, end = offset, offset + size
    while pos < end:
        n = os.preadv(src, [buf[: min(len(buf), end - pos)]], pos)
        if not n:
            raise DamagedError(f"source ended {end - pos} bytes early")
        h.update(buf[:n])  # releases the GIL: the copy beside it runs meanwhile
        pos += n
    return h.hexdigest()


_buffers = threading.local()


def _buffer() -> memoryview:
    """This thread's hashing buffer, made once: 144 chunks hashed into fresh
    1 MiB buffers cost 37,000 page faults."""
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = memoryview(bytearray(BLOCK))
    return buf


@dataclass(frozen=True)
class _Check:
    fd: int  # the checker's own descriptor (a dup), closed once hashed
    offset: int
    size: int
    sha256: str
    tag: object


class Checker:
    """The sha256 checks of cache entries copied out by the kernel, run beside
    the copies and across them (a cached rerun is two jobs of about the same
    size, 840 MB copied and 840 MB hashed for a whole book, on two cores).

    :meth:`submit` hands over an entry (a dup of the descriptor the copy
    reads, so both read the same file) before its copy starts; a thread
    hashes the submitted entries in order. :meth:`catch_up`, after each copy,
    hashes the oldest waiting entry on the calling thread too while more than
    ``backlog`` wait, so when the hashing falls behind both cores share it;
    :meth:`settle` hashes or waits for every one left and must come before
    anything copied is published. A mismatch raises :class:`DamagedError`,
    whose ``tag`` is the one its entry was submitted with, from the next of
    these calls. :meth:`close` ends the thread and drops whatever is left
    (after settle, or when the output is discarded). One thread (the
    writer's) calls these; the hashing thread starts on the first submit.
    """

    def __init__(self, backlog: int = 2) -> None:
        self.backlog = backlog
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiting: deque[_Check] = deque()
        self._running = 0  # checks being hashed now
        self._failure: DamagedError | None = None
        self._thread: threading.Thread | None = None
        self._stop = False

    def submit(self, fd: int, offset: int, size: int, sha256: str, tag: object = None) -> None:
        """Check the ``size`` bytes at ``offset`` of ``fd`` against ``sha256``;
        ``fd`` is the checker's from now on (closed once hashed)."""
        with self._lock:
            if self._stop:
                os.close(fd)
                raise ValueError("the checker is closed")
            self._waiting.append(_Check(fd, offset, size, sha256, tag))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="gflite-check", daemon=True)
                self._thread.start()
            else:
                self._changed.notify_all()

    def catch_up(self) -> None:
        """Hash waiting entries here while more than ``backlog`` wait."""
        while self._take_one(more_than=self.backlog):
            pass
        self._raise()

    def settle(self) -> None:
        """Every submitted entry checked (some here, beside the thread); raises
        DamagedError for one that did not match."""
        while self._take_one(more_than=0):
            pass
        with self._lock:
            while self._running:
                self._changed.wait()
        self._raise()

    def close(self) -> None:
        """End the thread; checks still waiting are dropped (settle first, or
        their bytes must never be published)."""
        with self._lock:
            self._stop = True
            dropped, self._waiting = list(self._waiting), deque()
            self._changed.notify_all()
            thread, self._thread = self._thread, None
        for check in dropped:
            with contextlib.suppress(OSError):
                os.close(check.fd)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _raise(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _take_one(self, more_than: int) -> bool:
        with self._lock:
            if len(self._waiting) <= more_than or self._failure is not None:
                return False
            check = self._waiting.popleft()
            self._running += 1
        self._hash(check)
        return True

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._stop:
                    self._changed.wait()
                if not self._waiting:
                    return
                check = self._waiting.popleft()
                self._running += 1
            self._hash(check)

    def _hash(self, check: _Check) -> None:
        # Anything that stops the hash (even Ctrl-C on the writer's thread) fails the check.
        failure: DamagedError | None = DamagedError("the check was interrupted")
        try:
            if self._failure is not None:  # after a mismatch the output is lost anyway
                failure = None
            else:
                try:
                    matches = digest_range(check.fd, check.offset, check.size) == check.sha256
                    failure = None if matches else DamagedError("bytes do not match their recorded sha256")
                except Exception as exc:  # a short entry (DamagedError), an I/O error
                    failure = DamagedError(f"cannot read back: {exc}")
        finally:
            with contextlib.suppress(OSError):
                os.close(check.fd)
            with self._lock:
                self._running -= 1
                if failure is not None and self._failure is None:
                    failure.tag = check.tag
                    self._failure = failure
                self._changed.notify_all()


def copy_checked(src: int, offset: int, size: int, sha256: str, write) -> None:  # type: ignore[no-untyped-def]
    """Hand ``size`` bytes at ``offset`` of ``src`` to ``write(block)`` in
    bounded blocks, hashing them on the way; DamagedError (after the last
    block) if they are not what ``sha256`` says."""
    h = hashlib.sha256()
    pos, end = offset, offset + size
    while pos < end:
        block = os.pread(src, min(BLOCK, end - pos), pos)
        if not block:
            raise DamagedError(f"source ended {end - pos} bytes early")
        h.update(block)
        write(block)
        pos += len(block)
    if h.hexdigest() != sha256:
        raise DamagedError("bytes do not match their recorded sha256")
