"""Results as files (gflite.gwasm.spool): from the guest's directory to the
output without the audio passing through the requestor's memory."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from memory import traced_peak

from gflite import pipeline, synth
from gflite.gwasm import spool
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.executors.local import LocalExecutor
from gflite.gwasm.spool import DamagedError, OutputFile, Spool
from gflite.gwasm.subtask import Limits, Subtask, SubtaskResult

ROOT = Path(__file__).resolve().parent.parent
LONG = (ROOT / "sample_texts" / "long.txt").read_text("ascii")


def make_job(book: Path, out: Path | str, voice: str = "kal16", **kw: object) -> pipeline.Job:
    options = synth.SynthOptions(synth.resolve_voice(voice))
    return pipeline.Job(source=pipeline.Source("file", str(book)), output=str(out), options=options, **kw)


# --- the spool ---------------------------------------------------------------------


def test_adopted_bytes_are_a_file_with_the_digest_of_those_bytes(tmp_path: Path) -> None:
    with Spool(tmp_path) as s:
        item = s.adopt_bytes("out/a.wav", b"RIFF" * 1000)
        assert item.size == 4000 and item.sha256 == hashlib.sha256(b"RIFF" * 1000).hexdigest()
        assert Path(item.path).parent == s.root and item.read() == b"RIFF" * 1000
        # Same digest as the bytes would give a result: verification and cache keys are unchanged.
        as_bytes = SubtaskResult(0, "x", ok=True, outputs=(("out/a.wav", b"RIFF" * 1000),))
        as_file = SubtaskResult(0, "x", ok=True, outputs=(("out/a.wav", item),))
        assert as_file.digest == as_bytes.digest
        spool.release(as_file.outputs)
        assert not Path(item.path).exists()
    assert not s.root.exists()


def test_a_damaged_cache_entry_is_caught_while_it_is_copied(tmp_path: Path) -> None:
    src = tmp_path / "entry"
    src.write_bytes(b"head" + b"x" * 3_000_000)
    item = OutputFile("a", str(src), 3_000_000, hashlib.sha256(b"y" * 3_000_000).hexdigest(), offset=4,
                      verified=False, owned=False)
    got = bytearray()
    fd = os.open(src, os.O_RDONLY)
    try:
        with pytest.raises(DamagedError):
            spool.stream_checked(fd, item.offset, item.size, item.sha256, 4, 3_000_000, got.extend)
    finally:
        os.close(fd)
    assert len(got) == 3_000_000  # one pass: the check comes with the copy, not before it


@pytest.mark.parametrize("size", [3_000_000, spool.THREADED_HASH_BYTES + 3_000_000])
def test_copy_hashing_copies_a_good_piece_and_catches_a_damaged_one(tmp_path: Path, size: int) -> None:
    """The stitcher's copy of a cache entry: the data part goes out by the
    kernel while every byte of the entry is hashed (beside it, on a thread, for
    a large one); a damaged byte anywhere is caught."""
    body = os.urandom(size)
    src = tmp_path / "entry"
    src.write_bytes(b"head" + body)
    good = hashlib.sha256(body).hexdigest()
    for where in (None, 10, size - 1):  # undamaged; in the copied part; past it (still the entry's)
        data = bytearray(body)
        if where is not None:
            data[where] ^= 1
        src.write_bytes(b"head" + bytes(data))
        out = tmp_path / "out"
        fd = os.open(src, os.O_RDONLY)
        try:
            with open(out, "wb") as dst:
                def copy(s: int, start: int, length: int) -> None:
                    spool.copy_range(s, start, length, dst.fileno())

                if where is None:
                    spool.copy_hashing(fd, 4, size, good, 8, size - 100, copy)
                else:
                    with pytest.raises(DamagedError):
                        spool.copy_hashing(fd, 4, size, good, 8, size - 100, copy)
        finally:
            os.close(fd)
        if where is None:
            assert out.read_bytes() == body[4:size - 96]


def test_copy_range_copies_a_slice_file_to_file_and_into_a_pipe(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(bytes(range(256)) * 4096)
    dst = tmp_path / "dst"
    with open(src, "rb") as s, open(dst, "wb") as d:
        spool.copy_range(s.fileno(), 100, 500_000, d.fileno())
    assert dst.read_bytes() == (bytes(range(256)) * 4096)[100:500_100]
    r, w = os.pipe()
    try:
        with open(src, "rb") as s:
            spool.copy_range(s.fileno(), 7, 1000, w)
        assert os.read(r, 2000) == (bytes(range(256)) * 4096)[7:1007]
    finally:
        os.close(r)
        os.close(w)


def test_local_results_come_back_as_spool_files_with_the_same_digest(wat_program) -> None:  # type: ignore[no-untyped-def]
    program = wat_program("upper")
    task = Subtask(index=0, name="s0", args=("in.txt", "out.txt"), inputs=(("in.txt", b"text number 1\n"),),
                   outputs=("out.txt",))
    with LocalExecutor(1) as plain:
        as_bytes = plain.submit(program, task, Limits()).result(timeout=120)
    with LocalExecutor(1, files=True) as ex:
        result = ex.submit(program, task, Limits()).result(timeout=120)
        (rel, item), = result.outputs
        assert isinstance(item, OutputFile) and item.verified and Path(item.path).parent == ex.spool.root
        assert item.read() == as_bytes.outputs[0][1] and result.digest == as_bytes.digest
        root = ex.spool.root
    assert not root.exists()  # the spool goes with its executor


# --- the whole pipeline: flat memory ------------------------------------------------


def _book(tmp_path: Path) -> Path:
    book = tmp_path / "book.txt"
    book.write_bytes((LONG[:6000] + "\n\n").encode("ascii") * 3)
    return book


def test_a_resumed_book_never_holds_more_than_a_few_chunks_audio(tmp_path: Path) -> None:
    """Rerun from a warm cache: every chunk is a hit, and no more than a few
    chunks' audio is ever in the requestor's memory at once (today's code read
    every cached chunk before writing the first)."""
    book = _book(tmp_path)
    cache = ResultCache(tmp_path / "cache")
    job = make_job(book, tmp_path / "cold.wav", target_chars=600, workers=2)
    pipeline.render(job, cache=cache)
    cold = (tmp_path / "cold.wav").read_bytes()
    chunks = cache.info().entries
    largest = max(size for _, size, _ in cache._entries())
    assert chunks >= 20  # distinct chunks (the book repeats itself: repeated chunks share an entry)

    with traced_peak() as traced:
        summary = pipeline.render(make_job(book, tmp_path / "warm.wav", target_chars=600, workers=2), cache=cache)
    peak = traced.bytes
    assert summary.from_cache == summary.chunks >= chunks
    assert (tmp_path / "warm.wav").read_bytes() == cold
    assert peak < 3 * largest, f"peak {peak} bytes, a chunk is up to {largest}, {chunks} chunks"


def test_a_cold_book_never_holds_a_chunks_audio(tmp_path: Path) -> None:
    """Cold: the workers' outputs are files in the spool; what crosses the pipe and
    reaches the writer is their names and digests."""
    book = _book(tmp_path)
    with traced_peak() as traced:
        pipeline.render(make_job(book, tmp_path / "cold.wav", target_chars=600, workers=2),
                        cache=ResultCache(tmp_path / "cache"))
    peak = traced.bytes
    largest = max(size for _, size, _ in ResultCache(tmp_path / "cache")._entries())
    assert peak < largest, f"peak {peak} bytes, a chunk is up to {largest}"


def test_a_damaged_cached_chunk_fails_the_run_and_is_removed(tmp_path: Path) -> None:
    from gflite.errors import OutputError

    book = tmp_path / "book.txt"
    book.write_bytes(LONG[:3000].encode("ascii"))
    cache = ResultCache(tmp_path / "cache")
    pipeline.render(make_job(book, tmp_path / "a.wav", subtasks=3, workers=1), cache=cache)
    _, size, victim = sorted(cache._entries(), key=lambda e: str(e[2]))[0]
    data = bytearray(victim.read_bytes())
    data[-5000] ^= 0xFF  # inside the audio, not the header
    victim.write_bytes(bytes(data))
    with pytest.raises(OutputError, match="damaged"):
        pipeline.render(make_job(book, tmp_path / "b.wav", subtasks=3, workers=1), cache=cache)
    assert not victim.exists() and not (tmp_path / "b.wav").exists()
    pipeline.render(make_job(book, tmp_path / "c.wav", subtasks=3, workers=1), cache=cache)
    assert (tmp_path / "c.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()
