"""Results as files (gflite.gwasm.spool): from the guest's directory to the
output without the audio passing through the requestor's memory."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from memory import traced_peak

from gflite import pipeline, synth
from gflite.errors import OutputError
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


def _entries(tmp_path: Path, sizes: list[int]) -> list[tuple[Path, bytes, str]]:
    """Cache-entry-like files: a 4-byte head, then a body whose sha256 is recorded."""
    made = []
    for i, size in enumerate(sizes):
        body = os.urandom(size)
        path = tmp_path / f"entry{i}"
        path.write_bytes(b"head" + body)
        made.append((path, body, hashlib.sha256(body).hexdigest()))
    return made


def _copy_all(checker: spool.Checker, entries: list[tuple[Path, bytes, str]], out: Path) -> None:
    """What the stitcher does per piece: submit the entry's check, copy its data part, catch up."""
    with open(out, "wb") as dst:
        for i, (path, body, digest) in enumerate(entries):
            fd = os.open(path, os.O_RDONLY)
            try:
                checker.submit(os.dup(fd), 4, len(body), digest, tag=i)
                spool.copy_range(fd, 8, len(body) - 100, dst.fileno())
                checker.catch_up()
            finally:
                os.close(fd)


@pytest.mark.parametrize("backlog", [0, 2, 100])
def test_the_checker_passes_good_entries_and_catches_a_damaged_one_by_its_tag(tmp_path: Path,
                                                                                backlog: int) -> None:
    """The stitcher's copies of cache entries: each data part goes out by the
    kernel while the entries are hashed beside the copies (a thread, and the
    caller whenever more than ``backlog`` wait); a damaged byte anywhere in an
    entry is caught by settle() at the latest, and names its entry."""
    sizes = [3_000_000, 100_000, 5_000_000, 2_000_000, 700_000, 1_500_000]
    entries = _entries(tmp_path, sizes)
    checker = spool.Checker(backlog)
    _copy_all(checker, entries, tmp_path / "out")
    checker.settle()
    checker.close()
    assert (tmp_path / "out").read_bytes() == b"".join(body[4:len(body) - 96] for _, body, _ in entries)
    for victim, where in ((0, 10), (2, 4_999_999), (5, 0)):  # in the copied part; past it (still the entry's)
        path, body, _ = entries[victim]
        data = bytearray(body)
        data[where] ^= 1
        path.write_bytes(b"head" + bytes(data))
        checker = spool.Checker(backlog)
        with pytest.raises(DamagedError) as caught:
            _copy_all(checker, entries, tmp_path / "out")
            checker.settle()
        assert caught.value.tag == victim
        checker.close()
        path.write_bytes(b"head" + body)


def test_a_short_entry_is_damaged_and_a_closed_checker_leaves_no_descriptor(tmp_path: Path) -> None:
    (path, body, digest), = _entries(tmp_path, [2_000_000])
    checker = spool.Checker()
    fd = os.open(path, os.O_RDONLY)
    checker.submit(fd, 4, len(body) + 10, digest, tag="short")  # the entry ends before its record says
    with pytest.raises(DamagedError) as caught:
        checker.settle()
    assert caught.value.tag == "short"
    checker.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # the checker closed it
    # Checks still waiting when the output is abandoned: closed, never hashed.
    checker = spool.Checker(backlog=100)
    fds = [os.open(path, os.O_RDONLY) for _ in range(5)]
    for i, f in enumerate(fds):
        checker.submit(f, 4, len(body), digest, tag=i)
    checker.close()
    for f in fds:
        with pytest.raises(OSError):
            os.fstat(f)


def test_reserve_is_a_hint_that_changes_no_byte_and_no_length(tmp_path: Path) -> None:
    """Blocks reserved ahead of a large copy: the file's length and bytes stay
    what was written; on what cannot reserve (a pipe) nothing happens."""
    path = tmp_path / "out"
    path.write_bytes(b"head")
    with open(path, "r+b") as f:
        spool.reserve(f.fileno(), 4, 8 << 20)
        assert os.fstat(f.fileno()).st_size == 4
        f.seek(0, os.SEEK_END)
        f.write(b"tail")
    assert path.read_bytes() == b"headtail"
    r, w = os.pipe()
    try:
        spool.reserve(w, 0, 8 << 20)
    finally:
        os.close(r)
        os.close(w)


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


def _children() -> set[int]:
    """This process's child processes now (every thread's)."""
    pids: set[int] = set()
    for listed in Path("/proc/self/task").glob("*/children"):
        pids.update(int(p) for p in listed.read_text().split())
    return pids


def test_a_fully_cached_run_starts_no_worker_and_a_damaged_chunk_is_named(tmp_path: Path) -> None:
    """A rerun of a cached book forks no worker (none is alive while its
    chunks are handed over; the cold run's are, which shows the probe sees
    them). Its cached pieces are checked a few chunks behind the copies: a
    chunk damaged in the middle of the book still fails the run, names that
    chunk and removes exactly its entry, and the next run makes it anew."""
    book = tmp_path / "book.txt"
    book.write_bytes(LONG.encode("ascii"))
    cache = ResultCache(tmp_path / "cache")
    seen: list[set[int]] = []
    entries: dict[int, tuple[str, str]] = {}

    def watch(p: pipeline.Progress) -> None:
        seen.append(_children())
        piece = dict(p.result.outputs)[synth.OUT_NAME]
        if p.from_cache:
            entries[p.result.index] = (p.result.name, piece.path)

    pipeline.render(make_job(book, tmp_path / "cold.wav", target_chars=600, workers=2), cache=cache,
                    on_progress=watch)
    assert any(seen), "the cold run's workers were not seen"
    seen.clear()
    summary = pipeline.render(make_job(book, tmp_path / "warm.wav", target_chars=600, workers=2), cache=cache,
                              on_progress=watch)
    assert summary.from_cache == summary.chunks == len(entries) >= 12
    assert seen and not any(seen), f"a fully cached run had child processes {seen}"
    assert (tmp_path / "warm.wav").read_bytes() == (tmp_path / "cold.wav").read_bytes()

    middle = len(entries) // 2
    name, victim = entries[middle]
    data = bytearray(Path(victim).read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the audio
    Path(victim).write_bytes(bytes(data))
    before = {str(path) for _, _, path in cache._entries()}
    with pytest.raises(OutputError, match=f"cached audio of {name} was damaged"):
        pipeline.render(make_job(book, tmp_path / "bad.wav", target_chars=600, workers=2), cache=cache)
    assert not (tmp_path / "bad.wav").exists()
    assert before - {str(path) for _, _, path in cache._entries()} == {victim}
    summary = pipeline.render(make_job(book, tmp_path / "again.wav", target_chars=600, workers=2), cache=cache)
    assert summary.from_cache == summary.chunks - 1
    assert (tmp_path / "again.wav").read_bytes() == (tmp_path / "cold.wav").read_bytes()
