"""On-disk caches: compiled modules (so a rerun never recompiles) and subtask
results (so a rerun resumes).

Both live in private 0700 directories owned by the current user and are written
atomically (temporary file, fsync, rename), so a crash never leaves a torn
entry under a real name. A compiled module is native code that
``Module.deserialize_file`` maps and runs without any check, so a module file is
only loaded if it and every cache directory above it belong to us and nobody
else can write them; otherwise the cache is bypassed and the module compiled in
memory.

wasmtime is imported lazily: the requestor process uses ``ResultCache`` and
``cache_dir`` without paying for the runtime.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gflite.errors import GfliteError
from gflite.gwasm.outcomes import MAX_NAME, MAX_OPERATORS, Accepted, Provenance, Trust
from gflite.gwasm import spool
from gflite.gwasm.spool import OutputFile
from gflite.gwasm.subtask import Program, Subtask, SubtaskResult, sha256_bytes

if TYPE_CHECKING:
    import wasmtime


def cache_dir() -> Path:
    """``$GFLITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/gflite``, else ``~/.cache/gflite``."""
    explicit = os.environ.get("GFLITE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "gflite"
    return Path.home() / ".cache" / "gflite"


class UntrustedCacheError(GfliteError):
    """A cache directory exists but is not private to us; the cache is bypassed."""


def _check_private(path: Path, *, fix_mode: bool, follow: bool = False) -> None:
    """Raise UntrustedCacheError unless ``path`` is a real directory that we own
    and that nobody else can write to."""
    st = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedCacheError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise UntrustedCacheError(f"{path} is owned by uid {st.st_uid}, not by us")
    if st.st_mode & 0o022:
        if not fix_mode:
            raise UntrustedCacheError(f"{path} is writable by others")
        os.chmod(path, 0o700)


def private_dir(root: Path, *parts: str) -> Path:
    """Create (0700) and check ``root/parts...``; raise UntrustedCacheError if
    any level is not private to us.

    ``root`` itself may be a directory the user chose; it only has to be ours and
    not writable by others. The levels we create are tightened to 0700.
    """
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The root may be a symlink the user chose; the levels below may not.
        _check_private(root, fix_mode=False, follow=True)
        path = root
        for part in parts:
            path = path / part
            with contextlib.suppress(FileExistsError):
                path.mkdir(mode=0o700)
            _check_private(path, fix_mode=True)
    except OSError as exc:
        raise UntrustedCacheError(f"cannot use cache directory {root}: {exc}") from None
    return path


def _trusted_file(path: Path) -> bool:
    """True if ``path`` is a regular file of ours that nobody else can write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return trusted_stat(st)


def trusted_stat(st: os.stat_result) -> bool:
    """True if ``st`` is a regular file of ours that nobody else can write."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def atomic_write(path: Path, chunks: Iterable[bytes | OutputFile], mode: int = 0o600, *,
                 durable: bool = True) -> None:
    """Write ``chunks`` to ``path`` so that readers see the old file or the whole new one.
    An OutputFile chunk is copied from its file by the kernel (checked on the
    way if it is not yet verified), never read whole into memory. ``durable``:
    on disk before it is renamed into place (fsync), so a crash of the machine
    cannot leave it short or empty under its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                if isinstance(chunk, OutputFile):
                    f.flush()
                    _copy_in(chunk, f)
                else:
                    f.write(chunk)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _copy_in(item: OutputFile, f: BinaryIO) -> None:
    src = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if item.verified:
            spool.copy_range(src, item.offset, item.size, f.fileno())
        else:
            spool.copy_checked(src, item.offset, item.size, item.sha256, f.write)
            f.flush()
    finally:
        os.close(src)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so N workers missing the cache compile once, not N times."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_wasmtime_id_value: str | None = None


def wasmtime_id() -> str:
    """The installed wasmtime's version and native library identity.

    Read from the package's files instead of ``importlib.metadata`` (which costs
    tens of milliseconds per process): the dist-info directory name gives the
    version, the native library's size and mtime catch any rebuild.
    """
    global _wasmtime_id_value
    if _wasmtime_id_value is None:
        import wasmtime

        pkg = Path(wasmtime.__file__).parent
        version = "unknown"
        with contextlib.suppress(OSError):
            for entry in os.scandir(pkg.parent):
                if entry.name.startswith("wasmtime-") and entry.name.endswith(".dist-info"):
                    version = entry.name[len("wasmtime-") : -len(".dist-info")]
                    break
        native = []
        for lib in sorted(pkg.glob("*/_libwasmtime.*")):
            st = lib.stat()
            native.append(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}")
        _wasmtime_id_value = f"{version}/{','.join(native)}"
    return _wasmtime_id_value


class ModuleCache:
    """Compiled modules on disk, keyed by the wasm's sha256, the wasmtime
    version and the engine configuration.

    ``hits`` and ``compiles`` count this instance's loads from disk and compilations.
    """

    def __init__(self, engine: wasmtime.Engine, config_id: str, root: Path | None = None) -> None:
        self.engine = engine
        self.config_id = config_id
        self.root = root if root is not None else cache_dir()
        self.hits = 0
        self.compiles = 0
        self.disabled_reason = ""
        self._dir: Path | None = None
        self._memo: dict[str, wasmtime.Module] = {}
        self._lock = threading.Lock()

    def key(self, program: Program) -> str:
        import platform  # only workers load modules: the requestor's start-up skips it

        ident = f"{program.sha256}\0{wasmtime_id()}\0{self.config_id}\0{platform.machine()}"
        return sha256_bytes(ident.encode())

    def path(self, program: Program) -> Path | None:
        """Where ``program``'s compiled module lives, or None if the disk cache is unusable."""
        directory = self._directory()
        return None if directory is None else directory / f"{self.key(program)}.cwasm"

    def load(self, program: Program) -> wasmtime.Module:
        """The compiled module for ``program``: from memory, from disk, else compiled (and stored).

        Raises GfliteError if the program cannot be read, has changed since its
        sha256 was taken, or is not a valid module.
        """
        key = self.key(program)
        with self._lock:
            module = self._memo.get(key)
            if module is None:
                module = self._load_uncached(program)
                self._memo[key] = module
            return module

    def _directory(self) -> Path | None:
        if self._dir is None and not self.disabled_reason:
            try:
                self._dir = private_dir(self.root, "modules")
            except UntrustedCacheError as exc:
                self.disabled_reason = str(exc)
        return self._dir

    def _load_uncached(self, program: Program) -> wasmtime.Module:
        path = self.path(program)
        if path is None:
            return self._compile(program)
        module = self._deserialize(path)
        if module is not None:
            return module
        with _file_lock(path.parent / ".lock"):
            # Another worker may have compiled it while we waited for the lock.
            module = self._deserialize(path)
            if module is not None:
                return module
            module = self._compile(program)
            with contextlib.suppress(OSError):
                atomic_write(path, [bytes(module.serialize())])
            return module

    def _deserialize(self, path: Path) -> wasmtime.Module | None:
        import wasmtime

        if not _trusted_file(path):
            return None
        try:
            module = wasmtime.Module.deserialize_file(self.engine, str(path))
        except wasmtime.WasmtimeError:
            # Damaged, or from an incompatible wasmtime: recompile over it.
            return None
        self.hits += 1
        return module

    def _compile(self, program: Program) -> wasmtime.Module:
        import wasmtime

        try:
            wasm = Path(program.path).read_bytes()
        except OSError as exc:
            raise GfliteError(f"cannot read {program.path}: {exc.strerror or exc}") from None
        if sha256_bytes(wasm) != program.sha256:
            raise GfliteError(f"{program.path} changed since its sha256 was taken")
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
            raise GfliteError(f"{program.path} is not a valid WebAssembly module: {first}") from None
        self.compiles += 1
        return module


# Format 2 records each entry's provenance; format-1 entries (which did not)
# are misses, so they are made again once and replaced.
_RESULT_FORMAT = 2
# A result whose one output is a spool file of this run is stored without
# copying its audio: its stdio, its header and a fixed trailer (which tells the
# header's length) are appended to that file, which is then linked into the
# cache. Such an entry starts with the output's own bytes ("RIFF" for a WAV),
# never with the "{" a header-first entry starts with.
_TAIL_FORMAT = 3
_TRAILER = struct.Struct("<8sQ")
_TRAILER_MAGIC = b"GFLTAIL1"
# An entry's header is data we wrote, but read as if it were not: its line,
# its lists and its numbers are bounded before anything is believed.
_MAX_HEADER = 64 << 10
_MAX_OUTPUTS = 1024
DEFAULT_MAX_BYTES = 2 << 30
# Plans (gflite's chunk cuts for a text) live beside the results, in a
# directory whose name no result's two-digit shard can take; they are tiny
# (a 9-hour book's is a few kB) and only their number is capped.
_PLANS = "plans"
MAX_PLAN_BYTES = 4 << 20
MAX_PLANS = 256
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``2G``, ``500M``, ``4096`` (bytes) -> bytes; ValueError if not a size."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[: len(t) - len(unit)]
    value = float(number)  # ValueError on junk
    if not (0 <= value < 1 << 60):
        raise ValueError(f"not a size: {text!r}")
    return int(value * _UNITS[unit])


def max_cache_bytes() -> int:
    """The result cache's size cap: ``$GFLITE_CACHE_MAX`` (e.g. ``500M``, ``4G``), else 2 GiB."""
    raw = os.environ.get("GFLITE_CACHE_MAX", "")
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(raw)
    except ValueError:
        raise GfliteError(f"GFLITE_CACHE_MAX must be a size such as 500M or 4G, not {raw!r}") from None


@dataclass(frozen=True)
class CacheInfo:
    """What the result cache holds."""

    path: Path
    entries: int
    bytes: int
    max_bytes: int


class ResultCache:
    """Successful subtask results, content-addressed by ``subtask.key(program)``.

    The key covers the program bytes, argv, inputs and output names, so a hit
    is exactly the bytes a rerun would produce; entries are checked against
    their recorded sha256s on read and dropped if damaged. Each entry records
    its :class:`~gflite.gwasm.outcomes.Provenance` (this machine's sandbox, or
    which operators agreed), and :meth:`get` replays only entries that meet
    the :class:`~gflite.gwasm.outcomes.Trust` the run asks for.

    The whole cache is kept under ``max_bytes`` (default :func:`max_cache_bytes`):
    a hit marks its entry used (its mtime), and storing past the cap evicts
    the least recently used entries.
    """

    def __init__(self, root: Path | None = None, max_bytes: int | None = None) -> None:
        self.root = root if root is not None else cache_dir()
        self.max_bytes = max_cache_bytes() if max_bytes is None else max_bytes
        self.disabled_reason = ""
        self._dir: Path | None = None
        self._size: int | None = None  # bytes held, learned on the first put

    def _directory(self) -> Path | None:
        if self._dir is None and not self.disabled_reason:
            try:
                self._dir = private_dir(self.root, "results")
            except UntrustedCacheError as exc:
                self.disabled_reason = str(exc)
        return self._dir

    def _path(self, key: str, create: bool) -> Path | None:
        directory = self._directory()
        if directory is None:
            return None
        if create:
            try:
                private_dir(directory, key[:2])
            except UntrustedCacheError:
                return None
        return Path(_entry_path(str(directory), key))

    def get(self, program: Program, subtask: Subtask, trust: Trust | None = None) -> Accepted | None:
        """The cached result of ``subtask`` (renamed and re-indexed to it) if it
        meets ``trust`` (None: any entry), else None."""
        def whole(fd: int, st: os.stat_result, path: str) -> Accepted | None:
            # Never larger than the whole cache may be: an entry that says otherwise is not ours.
            with open(fd, "rb", closefd=False) as f:
                data = f.read(self.max_bytes + 1)
            return _decode(data, subtask) if len(data) <= self.max_bytes else None

        return self._entry(program, subtask, trust, whole)

    def lookup(self, program: Program, subtask: Subtask, trust: Trust | None = None) -> Accepted | None:
        """Like :meth:`get`, but the outputs stay in the entry: unverified
        :class:`~gflite.gwasm.spool.OutputFile`s, whose bytes are checked
        against their sha256 as they are copied out (a mismatch raises
        :class:`~gflite.gwasm.spool.DamagedError` then; :meth:`drop` the entry).
        Only the header and the captured stdio are read now."""
        return self._entry(program, subtask, trust,
                           lambda fd, st, path: _decode_lazy(fd, st, path, subtask, self.max_bytes))

    def _entry(self, program: Program, subtask: Subtask, trust: Trust | None,
               decode: Callable[[int, os.stat_result, str], Accepted | None]) -> Accepted | None:
        """``subtask``'s entry as ``decode`` reads it from the open file; an entry
        that does not decode is removed, one that does not meet ``trust`` is
        left alone, and one returned is marked used (the last to be evicted).

        A rerun of a book looks up every chunk before the first is written:
        one open, one fstat, a read or two and a futimens each."""
        directory = self._directory()
        if directory is None:
            return None
        path = _entry_path(str(directory), subtask.key(program))
        try:
            # Not following a link, not waiting on a FIFO; fstat then says what it is.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not trusted_stat(st):
                return None
            try:
                result = decode(fd, st, path)
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                result = None
            if result is None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                return None
            if trust is not None and not result.provenance.meets(trust):
                return None
            with contextlib.suppress(OSError):
                os.utime(fd)
            return result
        finally:
            os.close(fd)

    def drop(self, program: Program, subtask: Subtask) -> None:
        """Remove ``subtask``'s entry (found damaged while it was copied)."""
        path = self._path(subtask.key(program), create=False)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def put(self, program: Program, subtask: Subtask, result: SubtaskResult,
            provenance: Provenance | None = None) -> bool:
        """Store a successful result with how it was obtained (default: an
        :class:`Accepted` result's own provenance, else one unverified
        operator); failures are never cached. Returns False if it could not be
        stored (the cache is an optimisation, never an error)."""
        if not result.ok:
            return False
        if provenance is None:
            provenance = result.provenance if isinstance(result, Accepted) else \
                Provenance(local=False, operators=(result.provider,), providers=(result.provider,))
        path = self._path(subtask.key(program), create=True)
        if path is None:
            return False
        if path.exists():
            # The same bytes obtained again: the entry keeps all it was trusted for.
            old = self.lookup(program, subtask)
            if old is not None and old.digest == result.digest:
                mine = old.provenance
                if (mine.local or not provenance.local) and set(provenance.operators) <= set(mine.operators):
                    # Nothing to add: leave the entry as it is (a reader may be copying out of it).
                    with contextlib.suppress(OSError):
                        os.utime(path)
                    return True
                provenance = Provenance(local=provenance.local or mine.local,
                                        operators=(provenance.operators + mine.operators)[:MAX_OPERATORS],
                                        providers=(provenance.providers + mine.providers)[:MAX_OPERATORS])
        chunks = _encode(result, provenance)
        size = sum(c.size if isinstance(c, OutputFile) else len(c) for c in chunks)
        if size > self.max_bytes:
            return False
        try:
            old = path.stat().st_size if path.exists() else 0
            # Not durable: an entry is checked against its digests whenever it is
            # read, so one a crash of the machine left short or empty is a miss or
            # a damaged entry (removed, made anew), never wrong audio; syncing every
            # chunk's audio to disk cost a cold run of a book about 7 % of its time.
            linked = _link_in(path, result, provenance)
            if linked:
                size = linked
            else:
                atomic_write(path, chunks, durable=False)
        except OSError:  # DamagedError included: a source that was not what it said
            return False
        if self._size is None:
            self._size = self.info().bytes
        else:
            self._size += size - old
        if self._size > self.max_bytes:
            self._evict(keep=path)
        return True

    # -- small derived data beside the results (gflite's cut plans) ------------

    def get_plan(self, key: str) -> bytes | None:
        """The plan stored under ``key`` (64 hex digits), at most
        :data:`MAX_PLAN_BYTES`, else None. The caller parses it as data it
        does not trust (see :mod:`gflite.cutplan`)."""
        path = self._plan_path(key, create=False)
        if path is None or not _trusted_file(path):
            return None
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_PLAN_BYTES + 1)
        except OSError:
            return None
        if len(data) > MAX_PLAN_BYTES:
            self.drop_plan(key)
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    def put_plan(self, key: str, data: bytes) -> bool:
        """Store a plan (replacing any under ``key``); the least recently used
        plans past :data:`MAX_PLANS` are removed. False if it could not be stored."""
        if len(data) > MAX_PLAN_BYTES:
            return False
        path = self._plan_path(key, create=True)
        if path is None:
            return False
        try:
            atomic_write(path, [data])
        except OSError:
            return False
        with contextlib.suppress(OSError):
            plans = [(e.stat(follow_symlinks=False).st_mtime, e.path) for e in os.scandir(path.parent)
                     if e.name.endswith(".plan") and e.is_file(follow_symlinks=False)]
            for _, old in sorted(plans)[: max(0, len(plans) - MAX_PLANS)]:
                if old != str(path):
                    os.unlink(old)
        return True

    def drop_plan(self, key: str) -> None:
        """Remove the plan under ``key`` (found not to fit its text)."""
        path = self._plan_path(key, create=False)
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()

    def _plan_path(self, key: str, create: bool) -> Path | None:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError("a plan key is 64 lowercase hex digits")
        directory = self._directory()
        if directory is None:
            return None
        if create:
            try:
                return private_dir(directory, _PLANS) / f"{key}.plan"
            except UntrustedCacheError:
                return None
        return directory / _PLANS / f"{key}.plan"

    def _entries(self) -> list[tuple[float, int, Path]]:
        """(last used, size, path) of every entry."""
        directory = self._directory()
        out: list[tuple[float, int, Path]] = []
        if directory is None:
            return out
        with contextlib.suppress(OSError):
            for sub in os.scandir(directory):
                if not sub.is_dir(follow_symlinks=False) or len(sub.name) != 2:
                    continue
                with contextlib.suppress(OSError):
                    for entry in os.scandir(sub.path):
                        if entry.name.endswith(".result") and entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            out.append((st.st_mtime, st.st_size, Path(entry.path)))
        return out

    def _evict(self, keep: Path | None = None) -> None:
        """Remove least recently used entries until the cache is within its cap."""
        entries = sorted(self._entries(), key=lambda e: (e[0], str(e[2])))
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
        self._size = total

    def info(self) -> CacheInfo:
        entries = self._entries()
        return CacheInfo(self.root / "results", len(entries), sum(e[1] for e in entries), self.max_bytes)

    def clear(self) -> int:
        """Remove every entry (and every plan); returns the bytes freed."""
        freed = 0
        for _, size, path in self._entries():
            with contextlib.suppress(OSError):
                path.unlink()
                freed += size
        directory = self._directory()
        if directory is not None:
            with contextlib.suppress(OSError):
                for entry in os.scandir(directory / _PLANS):
                    if entry.name.endswith(".plan") and entry.is_file(follow_symlinks=False):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
        self._size = 0
        return freed


def _described(data: bytes | OutputFile) -> tuple[int, str]:
    if isinstance(data, OutputFile):
        return data.size, data.sha256
    return len(data), sha256_bytes(data)


def _encode(result: SubtaskResult, provenance: Provenance) -> list[bytes | OutputFile]:
    blobs = [data for _, data in result.outputs] + [result.stdout, result.stderr]
    return [_header(result, provenance, _RESULT_FORMAT), *blobs]


def _link_in(path: Path, result: SubtaskResult, provenance: Provenance) -> int:
    """Store ``result`` at ``path`` without copying its output, if its one output
    is a whole spool file of this run that nothing else links to: its stdio,
    header and trailer are appended to that file (its output's bytes stay where
    its OutputFile says), and it is linked into the cache. The entry's size, or
    0 where that cannot be done (another filesystem, several outputs): the caller
    then copies."""
    if len(result.outputs) != 1:
        return 0
    item = result.outputs[0][1]
    if not isinstance(item, OutputFile) or not item.owned or not item.verified or item.offset:
        return 0
    header = _header(result, provenance, _TAIL_FORMAT)
    tail = result.stdout + result.stderr + header + _TRAILER.pack(_TRAILER_MAGIC, len(header))
    try:
        fd = os.open(item.path, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0
    tmp = path.parent / f".tmp-link-{os.urandom(8).hex()}"
    try:
        st = os.fstat(fd)
        # Exactly the output, linked nowhere else: not a file already appended to.
        if not trusted_stat(st) or st.st_size != item.size or st.st_nlink != 1:
            return 0
        # Readers tell the formats apart by the first byte: a header-first entry's is "{".
        if item.size == 0 or os.pread(fd, 1, 0) == b"{":
            return 0
        try:
            view = memoryview(tail)
            while view:
                view = view[os.write(fd, view):]
            os.link(item.path, tmp)
        except OSError:
            os.ftruncate(fd, item.size)  # the spool file as it was: the caller copies from it
            return 0
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return item.size + len(tail)


def _header(result: SubtaskResult, provenance: Provenance, fmt: int) -> bytes:
    header: dict[str, Any] = {
        "format": fmt,
        "outputs": [[rel, *_described(data)] for rel, data in result.outputs],
        "stdout": [len(result.stdout), sha256_bytes(result.stdout)],
        "stderr": [len(result.stderr), sha256_bytes(result.stderr)],
        "exit_code": result.exit_code,
        "provider": result.provider,
        "seconds": result.seconds,
        "digest": result.digest,
        "trust": {"local": provenance.local, "operators": list(provenance.operators),
                  "providers": list(provenance.providers)},
    }
    return json.dumps(header).encode() + b"\n"


def _int(value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ValueError("bad number in cache entry")
    return value


def _str(value: object, limit: int = 4096) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError("bad string in cache entry")
    return value


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_OPERATORS:
        raise ValueError("bad list in cache entry")
    return tuple(_str(v, MAX_NAME) for v in value)


@dataclass(frozen=True)
class _Header:
    """An entry's header, every field bounded and typed (sizes not yet checked
    against the entry's length)."""

    outputs: tuple[tuple[str, int, str], ...]
    stdio: tuple[tuple[int, str], tuple[int, str]]
    provenance: Provenance
    exit_code: int | None
    seconds: float
    provider: str
    digest: str


def _parse_header(head: bytes, subtask: Subtask, limit: int, fmt: int = _RESULT_FORMAT) -> _Header | None:
    """Parse an entry's header line, believing nothing it says about itself until checked."""
    header = json.loads(head)
    if not isinstance(header, dict) or header.get("format") != fmt:
        return None
    listed = header["outputs"]
    if not isinstance(listed, list) or len(listed) > _MAX_OUTPUTS:
        return None
    outputs = []
    for item in listed:
        if not isinstance(item, list) or len(item) != 3:
            return None
        rel, size, digest = item
        outputs.append((_str(rel), _int(size, limit), _str(digest, 64)))
    stdio = [header["stdout"], header["stderr"]]
    if not all(isinstance(x, list) and len(x) == 2 for x in stdio):
        return None
    if tuple(rel for rel, _, _ in outputs) != subtask.outputs:
        return None
    trust = header["trust"]
    if not isinstance(trust, dict) or not isinstance(trust.get("local"), bool):
        return None
    provenance = Provenance(local=trust["local"], operators=_strings(trust["operators"]),
                            providers=_strings(trust["providers"]))
    exit_code = header["exit_code"]
    seconds = header["seconds"]
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)):
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    return _Header(
        outputs=tuple(outputs),
        stdio=((_int(stdio[0][0], limit), _str(stdio[0][1], 64)), (_int(stdio[1][0], limit), _str(stdio[1][1], 64))),
        provenance=provenance, exit_code=exit_code, seconds=float(seconds),
        provider=_str(header["provider"], MAX_NAME), digest=_str(header["digest"], 64))


def _accept(h: _Header, subtask: Subtask, outputs: tuple, stdout: bytes, stderr: bytes) -> Accepted | None:
    result = SubtaskResult(
        index=subtask.index,
        name=subtask.name,
        ok=True,
        outputs=outputs,
        exit_code=h.exit_code,
        stdout=stdout,
        stderr=stderr,
        provider=h.provider,
        seconds=h.seconds,
    )
    if result.digest != h.digest:
        return None
    return Accepted.of(result, h.provenance)


# An entry's header line is about 550 bytes: one read of this many takes it.
_HEAD_READ = 4096


def _tail(size: int, read: Callable[[int, int], bytes]) -> tuple[bytes, int] | None:
    """A tail-format entry's header (without its newline) and where it starts,
    from the trailer at the end of ``size`` bytes read by ``read(n, offset)``."""
    if size < _TRAILER.size:
        return None
    magic, length = _TRAILER.unpack(read(_TRAILER.size, size - _TRAILER.size))
    start = size - _TRAILER.size - length
    if magic != _TRAILER_MAGIC or not 0 < length <= _MAX_HEADER + 1 or start < 0:
        return None
    head = read(length, start)
    if len(head) != length or not head.endswith(b"\n"):
        return None
    return head[:-1], start


def _locate(size: int, read: Callable[[int, int], bytes]) -> tuple[bytes, int, int, int] | None:
    """An entry's header line (without its newline), its format, and where its
    body (the outputs, then stdout and stderr) starts and ends, from ``size``
    bytes read by ``read(n, offset)``: header first (``{...}`` then the body),
    or header last (a linked spool file: the body, the header, the trailer)."""
    first = read(_HEAD_READ, 0)
    if first[:1] == b"{":
        head, sep, _ = first.partition(b"\n")
        if not sep and len(head) == _HEAD_READ:
            head, sep, _ = read(_MAX_HEADER + 1, 0).partition(b"\n")
        if not sep:
            return None
        return head, _RESULT_FORMAT, len(head) + 1, size
    found = _tail(size, read)
    if found is None:
        return None
    head, end = found
    return head, _TAIL_FORMAT, 0, end


def _decode(data: bytes, subtask: Subtask) -> Accepted | None:
    """Parse a whole entry, believing nothing it says about itself until checked."""
    found = _locate(len(data), lambda n, at: data[at : at + n])
    if found is None:
        return None
    head, fmt, start, end = found
    body = data[start:end]
    h = _parse_header(head, subtask, len(body), fmt)
    if h is None:
        return None
    pos = 0

    def take(size: int, digest: str) -> bytes:
        nonlocal pos
        if size > len(body) - pos:
            raise ValueError("damaged cache entry")
        blob = body[pos : pos + size]
        pos += size
        if sha256_bytes(blob) != digest:
            raise ValueError("damaged cache entry")
        return blob

    outputs = tuple((rel, take(size, digest)) for rel, size, digest in h.outputs)
    stdout = take(*h.stdio[0])
    stderr = take(*h.stdio[1])
    if pos != len(body):
        return None
    return _accept(h, subtask, outputs, stdout, stderr)


def _entry_path(directory: str, key: str) -> str:
    """Where the entry under ``key`` lives: a shard of the key's first two digits."""
    return f"{directory}/{key[:2]}/{key}.result"


def _decode_lazy(fd: int, st: os.stat_result, path: str, subtask: Subtask, max_bytes: int) -> Accepted | None:
    """Parse an entry's header and its (small, checked) stdio; its outputs stay
    on disk as unverified OutputFiles, checked when they are copied."""
    size = st.st_size
    if size > max_bytes:
        return None
    found = _locate(size, lambda n, at: os.pread(fd, n, at))
    if found is None:
        return None
    head, fmt, pos, end = found
    h = _parse_header(head, subtask, end - pos, fmt)
    if h is None:
        return None
    outputs = []
    for rel, n, digest in h.outputs:
        outputs.append((rel, OutputFile(rel=rel, path=path, size=n, sha256=digest, offset=pos,
                                        verified=False, owned=False, inode=st.st_ino)))
        pos += n
    (out_n, out_digest), (err_n, err_digest) = h.stdio
    if out_n > _MAX_HEADER * 16 or err_n > _MAX_HEADER * 16 or pos + out_n + err_n != end:
        return None
    blob = os.pread(fd, out_n + err_n, pos) if out_n + err_n else b""  # both at the entry's end
    stdout, stderr = blob[:out_n], blob[out_n:]
    if len(blob) != out_n + err_n or sha256_bytes(stdout) != out_digest or sha256_bytes(stderr) != err_digest:
        raise ValueError("damaged cache entry")
    return _accept(h, subtask, tuple(outputs), stdout, stderr)
