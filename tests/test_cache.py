"""The compiled-module cache (private, checked before native code is loaded) and
the result cache (content-addressed, verified on read)."""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import replace
from collections.abc import Callable
from pathlib import Path

import pytest

from gflite.errors import GfliteError
from gflite.gwasm import sandbox
from gflite.gwasm.cache import ModuleCache, ResultCache, atomic_write, cache_dir
from gflite.gwasm.cache import parse_size
from gflite.gwasm.outcomes import Accepted, Provenance, Trust
from gflite.gwasm.spool import Spool, release
from gflite.gwasm.subtask import Program, Subtask, SubtaskResult

WatProgram = Callable[[str], Program]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def new_cache(root: Path) -> ModuleCache:
    return ModuleCache(sandbox.engine(), sandbox.CONFIG_ID, root)


# --- cache_dir ---------------------------------------------------------------


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GFLITE_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("GFLITE_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "gflite"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_dir() == tmp_path / "home" / ".cache" / "gflite"


# --- ModuleCache -------------------------------------------------------------


def test_compiles_once_then_loads_from_disk(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    first = new_cache(tmp_path)
    first.load(program)
    first.load(program)  # memoised in the process
    assert (first.compiles, first.hits) == (1, 0)
    path = first.path(program)
    assert path is not None and path.is_file()
    assert mode(tmp_path / "modules") == 0o700
    assert mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".tmp-")] == []

    second = new_cache(tmp_path)
    second.load(program)
    assert (second.compiles, second.hits) == (0, 1)


def test_key_depends_on_program_and_config(wat_program: WatProgram, tmp_path: Path) -> None:
    a, b = wat_program("upper"), wat_program("trap")
    cache = new_cache(tmp_path)
    other = ModuleCache(sandbox.engine(), sandbox.CONFIG_ID + ";other", tmp_path)
    assert cache.key(a) != cache.key(b)
    assert cache.key(a) != other.key(a)


def test_writable_by_others_is_not_trusted(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    new_cache(tmp_path).load(program)
    path = new_cache(tmp_path).path(program)
    assert path is not None
    os.chmod(path, 0o666)
    cache = new_cache(tmp_path)
    cache.load(program)
    assert (cache.compiles, cache.hits) == (1, 0)  # recompiled rather than trusted
    assert mode(path) == 0o600  # and replaced by a private file


def test_symlinked_module_is_not_trusted(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    new_cache(tmp_path).load(program)
    path = new_cache(tmp_path).path(program)
    assert path is not None
    elsewhere = tmp_path / "elsewhere.cwasm"
    os.replace(path, elsewhere)
    path.symlink_to(elsewhere)
    cache = new_cache(tmp_path)
    cache.load(program)
    assert (cache.compiles, cache.hits) == (1, 0)
    assert not path.is_symlink()


def test_damaged_module_is_recompiled(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    new_cache(tmp_path).load(program)
    path = new_cache(tmp_path).path(program)
    assert path is not None
    path.write_bytes(b"\x7fELF not really")
    cache = new_cache(tmp_path)
    cache.load(program)
    assert (cache.compiles, cache.hits) == (1, 0)
    assert new_cache(tmp_path).load(program) is not None


def test_shared_root_disables_the_disk_cache(wat_program: WatProgram, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    root.mkdir()
    os.chmod(root, 0o777)
    cache = new_cache(root)
    cache.load(wat_program("upper"))
    assert cache.compiles == 1
    assert "writable by others" in cache.disabled_reason
    assert not (root / "modules").exists()


def test_loose_modules_dir_is_tightened(wat_program: WatProgram, tmp_path: Path) -> None:
    (tmp_path / "modules").mkdir(mode=0o755)
    os.chmod(tmp_path / "modules", 0o775)
    new_cache(tmp_path).load(wat_program("upper"))
    assert mode(tmp_path / "modules") == 0o700


def test_changed_program_is_refused(tmp_path: Path, wat_program: WatProgram) -> None:
    path = tmp_path / "p.wasm"
    path.write_bytes(wat_program("upper").path.read_bytes())
    program = Program.from_path(path)
    path.write_bytes(wat_program("trap").path.read_bytes())
    with pytest.raises(GfliteError, match="changed since its sha256 was taken"):
        new_cache(tmp_path).load(program)


# --- ResultCache -------------------------------------------------------------


def subtask(index: int = 0, name: str = "s0", text: bytes = b"in") -> Subtask:
    return Subtask(index=index, name=name, args=("in.txt", "out.txt"), inputs=(("in.txt", text),), outputs=("out.txt",))


def ok_result(st: Subtask, data: bytes = b"OUT") -> SubtaskResult:
    return SubtaskResult(
        index=st.index, name=st.name, ok=True, outputs=(("out.txt", data),), exit_code=0,
        stdout=b"so", stderr=b"se", provider="local-1", seconds=0.25,
    )


def test_result_round_trip(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    st = subtask()
    assert cache.get(program, st) is None
    stored = ok_result(st)
    assert cache.put(program, st, stored)
    hit = cache.get(program, st)
    assert hit == Accepted.of(stored, Provenance(local=False, operators=("local-1",), providers=("local-1",)))
    assert mode(tmp_path / "results") == 0o700


def test_same_content_under_another_name_hits_and_is_renamed(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    cache.put(program, subtask(0, "s0"), ok_result(subtask(0, "s0")))
    hit = cache.get(program, subtask(5, "renamed"))
    assert hit is not None and (hit.index, hit.name) == (5, "renamed")
    assert hit.outputs == (("out.txt", b"OUT"),)


def test_different_inputs_or_program_miss(wat_program: WatProgram, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    st = subtask()
    cache.put(wat_program("upper"), st, ok_result(st))
    assert cache.get(wat_program("upper"), subtask(text=b"other")) is None
    assert cache.get(wat_program("trap"), st) is None


def test_failures_are_not_cached(wat_program: WatProgram, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    st = subtask()
    failed = SubtaskResult(index=0, name="s0", ok=False, reason="exit code 3")
    assert not cache.put(wat_program("upper"), st, failed)
    assert cache.get(wat_program("upper"), st) is None


def test_damaged_result_is_dropped(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    st = subtask()
    cache.put(program, st, ok_result(st, b"GOOD OUTPUT"))
    (entry,) = (tmp_path / "results").glob("*/*.result")
    entry.write_bytes(entry.read_bytes().replace(b"GOOD", b"EVIL"))
    assert cache.get(program, st) is None
    assert not entry.exists()


def test_results_are_not_synced_and_what_a_crash_leaves_of_one_is_a_miss(
    wat_program: WatProgram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A result entry skips fsync (every chunk's audio, on every cold run); a
    # machine crash can then leave it empty or short under its name, which is
    # read as a miss, never as audio. Plans and compiled modules stay synced.
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    st = subtask()
    assert cache.put(program, st, ok_result(st, b"GOOD OUTPUT" * 100))
    assert synced == []
    assert cache.put_plan("ab" * 32, b"plan")
    assert len(synced) == 1
    (entry,) = (tmp_path / "results").glob("*/*.result")
    whole = entry.read_bytes()
    for torn in (b"", whole[: len(whole) // 2], whole[:-1]):
        entry.write_bytes(torn)
        assert cache.get(program, st) is None, len(torn)
        assert cache.lookup(program, st) is None, len(torn)
        cache.put(program, st, ok_result(st, b"GOOD OUTPUT" * 100))


def _spooled(spool_root: Spool, st: Subtask, data: bytes) -> SubtaskResult:
    """A result whose output is a spool file of this run, as a local worker's is."""
    out = spool_root.adopt_bytes("out.txt", data)
    return SubtaskResult(index=st.index, name=st.name, ok=True, outputs=(("out.txt", out),), exit_code=0,
                         stdout=b"so", stderr=b"se", provider="local-0", seconds=0.5)


def _read_out(hit: Accepted) -> bytes:
    item = dict(hit.outputs)["out.txt"]
    with open(item.path, "rb") as f:
        data = os.pread(f.fileno(), item.size, item.offset)
    assert hashlib.sha256(data).hexdigest() == item.sha256
    return data


def test_a_spooled_output_is_linked_into_the_cache_not_copied(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path / "cache")
    st = subtask()
    data = b"RIFF" + bytes(range(256)) * 64
    with Spool(tmp_path) as sp:
        result = _spooled(sp, st, data)
        item = result.outputs[0][1]
        assert cache.put(program, st, result)
        (entry,) = (tmp_path / "cache" / "results").glob("*/*.result")
        assert os.stat(entry).st_ino == os.stat(item.path).st_ino  # the same file: no copy
        assert entry.read_bytes()[: len(data)] == data  # the output where its OutputFile says
        release(result.outputs)
    assert os.stat(entry).st_nlink == 1  # the run's spool is gone, the entry stays
    hit = cache.lookup(program, st)
    assert hit is not None and _read_out(hit) == data and (hit.stdout, hit.stderr) == (b"so", b"se")
    got = cache.get(program, st)
    assert got is not None and got.outputs == (("out.txt", data),)
    # Putting the same bytes again keeps the entry as it is.
    with Spool(tmp_path) as sp:
        assert cache.put(program, st, _spooled(sp, st, data))
    assert cache.get(program, st) == got


def test_what_cannot_be_linked_is_copied(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path / "cache")
    with Spool(tmp_path) as sp:
        # An output starting with "{" would read as a header-first entry: copied.
        st = subtask(0, "s0", b"a")
        assert cache.put(program, st, _spooled(sp, st, b'{"not": "a header"}'))
        # A spool file already appended to (put before under another key): copied.
        st1, st2 = subtask(1, "s1", b"b"), subtask(2, "s2", b"c")
        result = _spooled(sp, st1, b"RIFF-shared")
        assert cache.put(program, st1, result)
        assert cache.put(program, st2, replace(result, index=2, name="s2"))
    entries = {p.read_bytes()[:1] for p in (tmp_path / "cache" / "results").glob("*/*.result")}
    assert entries == {b"{", b"R"}
    assert cache.get(program, st).outputs == (("out.txt", b'{"not": "a header"}'),)
    assert cache.get(program, st1).outputs == cache.get(program, st2).outputs == (("out.txt", b"RIFF-shared"),)


def test_across_filesystems_the_spool_file_is_left_as_it_was_and_copied(
    wat_program: WatProgram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path / "cache")
    st = subtask()
    data = b"RIFF" + b"y" * 3000

    def no_link(src, dst, *a, **kw):  # type: ignore[no-untyped-def]
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    with Spool(tmp_path) as sp:
        result = _spooled(sp, st, data)
        assert cache.put(program, st, result)
        item = result.outputs[0][1]
        assert Path(item.path).read_bytes() == data  # what was appended is gone again
    (entry,) = (tmp_path / "cache" / "results").glob("*/*.result")
    assert entry.read_bytes()[:1] == b"{"
    assert cache.get(program, st).outputs == (("out.txt", data),)


@pytest.mark.parametrize("damage", ["data", "trailer", "length", "short", "header"])
def test_a_damaged_linked_entry_is_never_audio(wat_program: WatProgram, tmp_path: Path, damage: str) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path / "cache")
    st = subtask()
    data = b"RIFF" + b"x" * 5000
    with Spool(tmp_path) as sp:
        assert cache.put(program, st, _spooled(sp, st, data))
    (entry,) = (tmp_path / "cache" / "results").glob("*/*.result")
    raw = bytearray(entry.read_bytes())
    if damage == "data":
        raw[100] ^= 1
    elif damage == "trailer":
        raw[-16:-8] = b"NOTMAGIC"
    elif damage == "length":
        raw[-8:] = (1 << 40).to_bytes(8, "little")
    elif damage == "short":
        del raw[-30:]
    else:
        at = raw.rindex(b'"format": 3')
        raw[at + 10 : at + 11] = b"2"
    entry.write_bytes(bytes(raw))
    assert cache.get(program, st) is None
    if damage == "data":  # the header is intact: the lookup finds it, the copy's check does not pass it
        with Spool(tmp_path) as sp:
            assert cache.put(program, st, _spooled(sp, st, data))
        (entry,) = (tmp_path / "cache" / "results").glob("*/*.result")
        raw = bytearray(entry.read_bytes())
        raw[100] ^= 1
        entry.write_bytes(bytes(raw))
        hit = cache.lookup(program, st)
        assert hit is not None
        with pytest.raises(AssertionError):
            _read_out(hit)
    else:
        assert cache.lookup(program, st) is None


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    atomic_write(target, [b"new ", b"content"])
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


LOCAL_RUN = Trust.for_run(redundancy=1, local=True)


def test_an_entry_is_replayed_only_as_far_as_it_is_trusted(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    one, local, two = subtask(text=b"a"), subtask(text=b"b"), subtask(text=b"c")
    cache.put(program, one, ok_result(one), Provenance(local=False, operators=("mallory",)))
    cache.put(program, local, ok_result(local), Provenance(local=True, operators=("local-0",)))
    cache.put(program, two, ok_result(two), Provenance(local=False, operators=("alice", "bob")))
    cluster_k1 = Trust.for_run(redundancy=1, local=False)
    k2, k3 = Trust.for_run(redundancy=2, local=False), Trust.for_run(redundancy=3, local=False)
    # One operator's word: only a run that trusts one operator anyway replays it.
    assert cache.get(program, one, LOCAL_RUN) is None and cache.get(program, one, k2) is None
    assert cache.get(program, one, cluster_k1) is not None
    # This machine's own sandbox: a local run replays it; redundancy 2 asks for 2 operators.
    assert cache.get(program, local, LOCAL_RUN) is not None and cache.get(program, local, k2) is None
    # Two agreeing operators: enough for a local run and for redundancy 2, not 3.
    hit = cache.get(program, two, LOCAL_RUN)
    assert hit is not None and hit.provenance.operators == ("alice", "bob")
    assert cache.get(program, two, k2) is not None and cache.get(program, two, k3) is None
    # An untrusted entry is not dropped: a run that trusts it may still use it.
    assert cache.get(program, one, cluster_k1) is not None


@pytest.mark.parametrize("header", [
    b'{"format": 2, "outputs": ' + b"[" * 30000 + b"]" * 30000 + b"}",  # nested past any stack
    b'{"format": 2, "outputs": [["out.txt", -1, "x"]], "stdout": [0, ""], "stderr": [0, ""]}',
    b'{"format": 2, "outputs": [["out.txt", 99999999999, "x"]]}',
    b'{"format": 2, "outputs": [], "stdout": [0, "e3b0"], "stderr": [0, "e3b0"], "trust": {"local": 1}}',
    b"x" * (1 << 20),  # no end of header within the cap
])
@pytest.mark.parametrize("read", ["get", "lookup"])
def test_a_hostile_entry_is_a_miss_and_removed(wat_program: WatProgram, tmp_path: Path, header: bytes,
                                               read: str) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    st = subtask()
    cache.put(program, st, ok_result(st))
    (entry,) = (tmp_path / "results").glob("*/*.result")
    entry.write_bytes(header + b"\nOUTsose")
    assert getattr(cache, read)(program, st) is None
    assert not entry.exists()


def test_lookup_reads_a_header_of_any_allowed_length_and_checks_the_stdio(wat_program: WatProgram,
                                                                          tmp_path: Path) -> None:
    """lookup reads the header line in one small read when it can: a header
    past that read (many long operator names) is still read whole, and the
    stdio at the entry's end is checked against its digests."""
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    st = subtask()
    names = tuple(f"{i:02d}" + "o" * 300 for i in range(40))
    cache.put(program, st, ok_result(st, b"OUT" * 1000), Provenance(local=False, operators=names, providers=names))
    (entry,) = (tmp_path / "results").glob("*/*.result")
    assert entry.read_bytes().index(b"\n") > 8192
    hit = cache.lookup(program, st, Trust.for_run(redundancy=2, local=False))
    assert hit is not None and hit.provenance.operators == names and (hit.stdout, hit.stderr) == (b"so", b"se")
    (rel, item), = hit.outputs
    assert item.read() == b"OUT" * 1000 and not item.verified
    entry.write_bytes(entry.read_bytes()[:-4] + b"sosE")  # stderr damaged
    assert cache.lookup(program, st) is None and not entry.exists()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "writable"])
def test_an_entry_that_is_not_a_private_regular_file_is_a_miss(wat_program: WatProgram, tmp_path: Path,
                                                                kind: str) -> None:
    """Neither read nor waited on (a FIFO would block an open for reading) nor removed."""
    program = wat_program("upper")
    cache = ResultCache(tmp_path / "c")
    st = subtask()
    cache.put(program, st, ok_result(st))
    (entry,) = (tmp_path / "c" / "results").glob("*/*.result")
    if kind == "writable":
        os.chmod(entry, 0o666)
    else:
        (tmp_path / "real").write_bytes(entry.read_bytes())
        entry.unlink()
        if kind == "fifo":
            os.mkfifo(entry)
        else:
            entry.symlink_to(tmp_path / "real")
    assert cache.lookup(program, st) is None and cache.get(program, st) is None
    assert os.path.lexists(entry)


def test_a_format_1_entry_which_records_no_provenance_is_a_miss(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    st = subtask()
    cache.put(program, st, ok_result(st))
    (entry,) = (tmp_path / "results").glob("*/*.result")
    entry.write_bytes(entry.read_bytes().replace(b'"format": 2', b'"format": 1'))
    assert cache.get(program, st) is None


def test_the_cache_stays_under_its_cap_evicting_the_least_recently_used(
    wat_program: WatProgram, tmp_path: Path
) -> None:
    program = wat_program("upper")
    sts = [subtask(i, f"s{i}", text=b"%d" % i) for i in range(4)]
    entry_size = 0
    probe = ResultCache(tmp_path / "probe")
    probe.put(program, sts[0], ok_result(sts[0], b"x" * 1000))
    entry_size = probe.info().bytes
    cache = ResultCache(tmp_path / "c", max_bytes=3 * entry_size + entry_size // 2)  # room for 3
    for st in sts[:3]:
        assert cache.put(program, st, ok_result(st, b"x" * 1000))
    # Entries are ordered by last use (mtime): make it unambiguous on a coarse clock.
    for age, st in enumerate(sts[:3]):
        path = cache._path(st.key(program), create=False)
        os.utime(path, (1000 + age, 1000 + age))
    assert cache.get(program, sts[0]) is not None  # s0 used now: s1 is the least recently used
    assert cache.put(program, sts[3], ok_result(sts[3], b"x" * 1000))
    info = cache.info()
    assert info.entries == 3 and info.bytes <= cache.max_bytes
    assert cache.get(program, sts[1]) is None
    assert all(cache.get(program, st) is not None for st in (sts[0], sts[2], sts[3]))
    # An entry larger than the whole cap is not stored at all.
    assert not ResultCache(tmp_path / "tiny", max_bytes=100).put(program, sts[0], ok_result(sts[0], b"x" * 1000))
    assert cache.clear() == info.bytes
    assert cache.info().entries == 0 and cache.get(program, sts[0]) is None


def test_cache_size_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert parse_size("500M") == 500 << 20 and parse_size("2G") == 2 << 30 and parse_size("4096") == 4096
    assert parse_size("1.5GiB") == 3 << 29
    monkeypatch.setenv("GFLITE_CACHE_MAX", "64M")
    assert ResultCache(tmp_path).max_bytes == 64 << 20
    monkeypatch.setenv("GFLITE_CACHE_MAX", "lots")
    with pytest.raises(GfliteError, match="GFLITE_CACHE_MAX must be a size"):
        ResultCache(tmp_path)


def test_the_same_bytes_obtained_again_keep_all_their_trust(wat_program: WatProgram, tmp_path: Path) -> None:
    program = wat_program("upper")
    cache = ResultCache(tmp_path)
    st = subtask()
    cache.put(program, st, ok_result(st), Provenance(local=True, operators=("local-0",)))
    cache.put(program, st, ok_result(st), Provenance(local=False, operators=("alice", "bob")))
    hit = cache.get(program, st)
    assert hit.provenance.local and hit.provenance.operators == ("alice", "bob", "local-0")
    # Other bytes replace the entry and its record.
    cache.put(program, st, ok_result(st, b"OTHER"), Provenance(local=False, operators=("carol",)))
    hit = cache.get(program, st)
    assert hit.outputs == (("out.txt", b"OTHER"),) and hit.provenance == Provenance(False, ("carol",))


def test_plans_are_kept_beside_the_results_capped_and_cleared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gflite.gwasm import cache as cache_module

    cache = ResultCache(tmp_path / "c")
    key = "ab" * 32
    assert cache.get_plan(key) is None
    assert cache.put_plan(key, b"plan")
    assert cache.get_plan(key) == b"plan"
    assert cache.info().entries == 0  # a plan is not a result
    with pytest.raises(ValueError):
        cache.get_plan("../../etc/passwd")
    assert not cache.put_plan(key, b"x" * (cache_module.MAX_PLAN_BYTES + 1))
    path = tmp_path / "c" / "results" / "plans" / f"{key}.plan"
    path.write_bytes(b"x" * (cache_module.MAX_PLAN_BYTES + 1))  # grown on disk: over the cap, dropped
    assert cache.get_plan(key) is None and not path.exists()
    cache.put_plan(key, b"plan")
    os.chmod(path, 0o666)  # writable by others: not ours to believe
    assert cache.get_plan(key) is None
    monkeypatch.setattr(cache_module, "MAX_PLANS", 3)
    for i in range(5):
        cache.put_plan(f"{i:064x}", b"p")
        os.utime(tmp_path / "c" / "results" / "plans" / f"{i:064x}.plan", (1000 + i, 1000 + i))
    left = sorted(p.name[:1] for p in (tmp_path / "c" / "results" / "plans").glob("*.plan"))
    assert len(left) == 3 and cache.get_plan(f"{4:064x}") == b"p"  # the least recently used went
    cache.clear()
    assert not list((tmp_path / "c" / "results" / "plans").glob("*.plan"))
