"""gflite.gwasm.digests: a program's sha256 remembered while the file stays the same."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from gflite.gwasm import digests


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _memos(cache: Path) -> list[Path]:
    return sorted((cache / "modules").glob("*.sha256"))


def test_a_digest_is_remembered_and_reused(fresh_cache: Path, tmp_path: Path) -> None:
    wasm = tmp_path / "p.wasm"
    wasm.write_bytes(b"\0asm" + b"x" * 5000)
    assert digests.file_sha256(wasm) == _sha(wasm.read_bytes())
    [memo] = _memos(fresh_cache)
    assert memo.stat().st_mode & 0o777 == 0o600
    # The memo, not the file, answers now: a memo naming another digest for
    # this very identity is believed (the cache directory is ours alone).
    identity, _, _ = memo.read_text().rstrip("\n").rpartition(" ")
    memo.write_text(f"{identity} {'ab' * 32}\n")
    assert digests.file_sha256(wasm) == "ab" * 32


def test_a_file_rewritten_in_place_with_its_old_mtime_is_hashed_again(fresh_cache: Path, tmp_path: Path) -> None:
    # Same size, same path, same inode, mtime set back: only ctime tells.
    wasm = tmp_path / "p.wasm"
    wasm.write_bytes(b"\0asm-first")
    before = wasm.stat()
    assert digests.file_sha256(wasm) == _sha(b"\0asm-first")
    with wasm.open("r+b") as f:
        f.write(b"\0asm-other")
    os.utime(wasm, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = wasm.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert digests.file_sha256(wasm) == _sha(b"\0asm-other")


def test_a_copy_elsewhere_has_its_own_memo(fresh_cache: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert (digests.file_sha256(a), digests.file_sha256(b)) == (_sha(b"one"), _sha(b"two"))
    assert len(_memos(fresh_cache)) == 2


def test_a_memo_others_can_write_is_ignored(fresh_cache: Path, tmp_path: Path) -> None:
    wasm = tmp_path / "p.wasm"
    wasm.write_bytes(b"program")
    digests.file_sha256(wasm)
    [memo] = _memos(fresh_cache)
    identity, _, _ = memo.read_text().rstrip("\n").rpartition(" ")
    memo.write_text(f"{identity} {'cd' * 32}\n")
    memo.chmod(0o666)
    assert digests.file_sha256(wasm) == _sha(b"program")
    # A memo that is a symlink, or too large to be one, is not read either.
    memo.unlink()
    (tmp_path / "elsewhere").write_text(f"{identity} {'cd' * 32}\n")
    memo.symlink_to(tmp_path / "elsewhere")
    assert digests.file_sha256(wasm) == _sha(b"program")
    memo.unlink()
    memo.write_text(f"{identity} {'cd' * 32}\n" + " " * 1000)
    memo.chmod(0o600)
    assert digests.file_sha256(wasm) == _sha(b"program")


def test_without_a_usable_cache_directory_every_call_hashes(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # writable by anyone: the cache is not used
    monkeypatch.setenv("GFLITE_CACHE_DIR", str(shared))
    wasm = tmp_path / "p.wasm"
    wasm.write_bytes(b"program")
    assert digests.file_sha256(wasm) == _sha(b"program")
    assert not (shared / "modules").exists()
