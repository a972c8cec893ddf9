"""A program file's sha256, remembered between runs while the file stays the same.

Hashing flite.wasm (14 MB) takes about 20 ms, a tenth of saying "Hello.", and
its digest is the program's identity: the result cache and provider agreement
key on it. So the digest is kept in the cache directory beside the compiled
modules, under the file's identity as the kernel reports it: device, inode,
size, modification time and change time. Rebuilding, copying or touching the
file changes one of those, and it is hashed again. ``ctime`` cannot be set back
by anyone but the kernel, so a file rewritten in place with its old ``mtime``
restored is rehashed too.

What the memo cannot see is the disk itself changing the bytes under
unchanged metadata; then the digest names the bytes that were hashed, which is
also all a worker runs when it loads the compiled module cached under it (and a
recompilation checks the bytes against the digest first).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from gflite.gwasm.cache import UntrustedCacheError, atomic_write, cache_dir, private_dir, trusted_stat

# A memo file holds one line of a few numbers and a digest.
_MAX_MEMO = 512


def _identity(path: Path, st: os.stat_result) -> str:
    return f"{os.fsdecode(os.path.abspath(path))!r} {st.st_dev} {st.st_ino} {st.st_size} " \
           f"{st.st_mtime_ns} {st.st_ctime_ns}"


def _hash_file(path: Path) -> tuple[str, os.stat_result]:
    """The file's digest and its metadata, taken from one open file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest(), st


def _memo_path(path: Path) -> Path:
    name = hashlib.sha256(os.fsencode(os.path.abspath(path))).hexdigest()[:32]
    return private_dir(cache_dir(), "modules") / f"{name}.sha256"


def _read_memo(memo: Path) -> str | None:
    """The memo's text if it is a small regular file of ours nobody else can write."""
    try:
        fd = os.open(memo, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not trusted_stat(st) or st.st_size > _MAX_MEMO:
            return None
        return os.read(fd, _MAX_MEMO).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of the file at ``path``: from the memo if the file's identity
    is unchanged since it was hashed, else hashed now and remembered. Without a
    usable cache directory it is hashed every time. Raises OSError if ``path``
    cannot be read."""
    try:
        memo = _memo_path(path)
    except UntrustedCacheError:
        return _hash_file(path)[0]
    st = os.stat(path)
    text = _read_memo(memo)
    if text is not None:
        identity, _, digest = text.rstrip("\n").rpartition(" ")
        if identity == _identity(path, st) and len(digest) == 64 \
                and all(c in "0123456789abcdef" for c in digest):
            return digest
    digest, st = _hash_file(path)
    with contextlib.suppress(OSError):
        atomic_write(memo, [f"{_identity(path, st)} {digest}\n".encode()])
    return digest
