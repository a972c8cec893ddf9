"""Stitching WAV pieces: exact, streaming, atomic, flat in memory."""
from __future__ import annotations

import io
import os
import struct
import subprocess
from pathlib import Path

import pytest

from memory import traced_peak

from conftest_chunking import flite_wav, pcm_of, sample
from gflite import stitching
from gflite.chunking import split
from gflite.errors import OutputError, ReaderGone
from gflite.stitching import open_output, parse_wav, stitch, wav_header, WavFormat


def synthetic_wav(samples: int, rate: int = 16000, fill: int = 1) -> bytes:
    return wav_header(WavFormat(rate), samples * 2) + struct.pack("<h", fill) * samples


@pytest.fixture(scope="module")
def flite_pieces(tmp_path_factory) -> dict[str, list[bytes]]:
    """Real flite WAVs for the chunks of dialogue.txt, per voice."""
    work = tmp_path_factory.mktemp("pieces")
    chunks = split(sample("dialogue.txt"), subtasks=3)
    return {
        voice: [flite_wav(c.text, voice, work, f"{voice}{c.index}") for c in chunks]
        for voice in ("kal", "kal16")
    }


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def decode_with_ffmpeg(src: str | Path, data: bytes | None = None) -> bytes:
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(src), "-f", "s16le", "-ac", "1", "pipe:1"]
    return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout


# --- parsing ------------------------------------------------------------------


def test_parse_flite_output(flite_pieces) -> None:
    for voice, rate in (("kal", 8000), ("kal16", 16000)):
        fmt, pcm = parse_wav(flite_pieces[voice][0])
        assert fmt == WavFormat(rate)
        assert bytes(pcm) == pcm_of(flite_pieces[voice][0])[1]


def test_parse_finds_chunks_after_other_chunks() -> None:
    pcm = b"\x01\x00\x02\x00\x03\x00"
    fmt = struct.pack("<HHIIHH", 1, 1, 22050, 44100, 2, 16)
    body = b"WAVE" + b"LIST" + struct.pack("<I", 3) + b"abc\0" + b"fmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", len(pcm)) + pcm
    got_fmt, got = parse_wav(b"RIFF" + struct.pack("<I", len(body)) + body)
    assert got_fmt == WavFormat(22050) and bytes(got) == pcm


@pytest.mark.parametrize(
    "data, message",
    [
        (b"not a wav file at all", "not a WAV"),
        (synthetic_wav(10)[:-4], "truncated"),
        (synthetic_wav(10)[:36], "no data"),
        (synthetic_wav(10).replace(b"\x10\x00data", b"\x08\x00data"), "unsupported"),
        (synthetic_wav(10)[:12] + synthetic_wav(10)[36:], "before its format"),
    ],
)
def test_parse_rejects_bad_pieces(data: bytes, message: str) -> None:
    with pytest.raises(OutputError, match=message):
        parse_wav(data)


def _with_list(pcm: bytes, list_bytes: int) -> bytes:
    """A WAV whose fmt and data chunks come after an odd-sized LIST chunk."""
    fmt = struct.pack("<HHIIHH", 1, 1, 22050, 44100, 2, 16)
    body = b"WAVE" + b"LIST" + struct.pack("<I", list_bytes) + b"i" * list_bytes + b"\0" * (list_bytes & 1)
    body += b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("data", [
    synthetic_wav(1000), _with_list(b"\x01\x00" * 50, 3), _with_list(b"\x01\x00" * 50, 301),  # past the first read
    wav_header(WavFormat(16000), 0xFFFFFFFF) + b"\x05\x00" * 7, synthetic_wav(10)[:-4], synthetic_wav(10)[:36],
    synthetic_wav(10)[:12] + synthetic_wav(10)[36:], b"RIFF", b"",
])
def test_parse_wav_file_reads_what_parse_wav_reads(tmp_path: Path, data: bytes) -> None:
    """The file form (a piece inside a cache entry, at an offset, read by
    chunk headers) finds the same format and samples, or the same error."""
    path = tmp_path / "entry"
    path.write_bytes(b"x" * 77 + data + b"trailing entry bytes")
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fmt, pcm = parse_wav(data)
        except OutputError as e:
            with pytest.raises(OutputError) as caught:
                stitching.parse_wav_file(fd, 77, len(data))
            assert str(caught.value) == str(e)
            return
        got_fmt, start, length = stitching.parse_wav_file(fd, 77, len(data))
        assert got_fmt == fmt and os.pread(fd, length, start) == bytes(pcm)
    finally:
        os.close(fd)


def test_parse_streamed_wav_with_unknown_sizes() -> None:
    data = wav_header(WavFormat(16000), 0xFFFFFFFF) + b"\x05\x00" * 7
    assert bytes(parse_wav(data)[1]) == b"\x05\x00" * 7


# --- WAV files ----------------------------------------------------------------


@pytest.mark.parametrize("voice", ["kal", "kal16"])
def test_stitched_wav_is_the_concatenation(tmp_path, flite_pieces, voice) -> None:
    pieces = flite_pieces[voice]
    out = tmp_path / "book.wav"
    seen: list[float] = []
    seconds = stitch(pieces, out, on_piece=lambda w: seen.append(w.seconds))
    rate, pcm = pcm_of(out)
    expected = b"".join(pcm_of(p)[1] for p in pieces)
    assert pcm == expected and rate == (8000 if voice == "kal" else 16000)
    assert seconds == pytest.approx(len(expected) / 2 / rate)
    assert seen == sorted(seen) and seen[-1] == seconds and len(seen) == len(pieces)
    raw = out.read_bytes()
    riff, data = struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, 40)[0]
    assert (riff, data) == (len(raw) - 8, len(expected))
    assert struct.unpack_from("<I", raw, 28)[0] == rate * 2  # a correct byte rate, unlike flite's
    assert leftovers(tmp_path) == ["book.wav"]
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_mismatched_rates_are_refused(tmp_path, flite_pieces) -> None:
    out = tmp_path / "book.wav"
    with pytest.raises(OutputError, match="8000 Hz.*16000 Hz"):
        stitch([flite_pieces["kal16"][0], flite_pieces["kal"][0]], out)
    assert leftovers(tmp_path) == []


def test_empty_pieces_do_not_set_the_format(tmp_path) -> None:
    # flite writes an empty wave as "16 kHz" whatever the voice.
    empty16 = synthetic_wav(0, 16000)
    stitch([empty16, synthetic_wav(80, 8000), empty16, synthetic_wav(40, 8000)], tmp_path / "a.wav")
    assert pcm_of(tmp_path / "a.wav") == (8000, b"\x01\x00" * 120)


def test_no_pieces_gives_a_valid_empty_wav(tmp_path) -> None:
    assert stitch([], tmp_path / "a.wav") == 0.0
    assert pcm_of(tmp_path / "a.wav") == (16000, b"")


class Boom(Exception):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_failure_mid_stream_leaves_nothing(tmp_path, error, ext) -> None:
    target = tmp_path / f"book.{ext}"
    target.write_bytes(b"previous version")

    def pieces():
        yield synthetic_wav(16000)
        yield synthetic_wav(16000)
        raise error()

    with pytest.raises(error):
        stitch(pieces(), target)
    assert leftovers(tmp_path) == [f"book.{ext}"]
    assert target.read_bytes() == b"previous version"


def test_wav_past_4_gib_is_written_whole_with_unknown_sizes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(stitching, "MAX_WAV_DATA_BYTES", 3000)
    with stitching.open_output(tmp_path / "ok.wav") as out:
        out.add(synthetic_wav(1500))
    assert not out.unknown_length
    assert struct.unpack_from("<I", (tmp_path / "ok.wav").read_bytes(), 40)[0] == 3000
    with stitching.open_output(tmp_path / "big.wav") as out:
        out.add(synthetic_wav(1000))
        out.add(synthetic_wav(1000))
    assert out.unknown_length
    data = (tmp_path / "big.wav").read_bytes()
    assert len(data) == 44 + 4000
    assert struct.unpack_from("<I", data, 4)[0] == struct.unpack_from("<I", data, 40)[0] == 0xFFFFFFFF
    # What users play such a file with reads every sample, as for WAV on a pipe.
    raw = tmp_path / "big.raw"
    for cmd in (
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(tmp_path / "big.wav"), "-f", "s16le", str(raw)],
        ["sox", "-V1", str(tmp_path / "big.wav"), "-t", "raw", str(raw)],
    ):
        subprocess.run(cmd, check=True, timeout=60)
        assert raw.read_bytes() == data[44:], cmd[0]
    assert leftovers(tmp_path) == ["big.raw", "big.wav", "ok.wav"]


@pytest.mark.parametrize(
    "target, message",
    [
        ("missing/book.wav", "does not exist"),
        ("folder.wav", "is a directory"),
    ],
)
def test_bad_targets_fail_before_any_audio(tmp_path, target, message) -> None:
    if target == "folder.wav":
        (tmp_path / target).mkdir()
    with pytest.raises(OutputError, match=message):
        open_output(tmp_path / target)
    assert leftovers(tmp_path) == ([target] if target == "folder.wav" else [])


def test_missing_ffmpeg_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(OutputError, match="needs ffmpeg"):
        open_output(tmp_path / "book.mp3")
    open_output(tmp_path / "book.wav").abort()  # WAV needs no ffmpeg
    assert leftovers(tmp_path) == []


def test_flat_memory_for_a_big_book(tmp_path) -> None:
    piece_samples = 1 << 19  # 1 MiB of PCM per piece

    def pieces():
        for i in range(200):  # ~200 MiB in all
            yield synthetic_wav(piece_samples, fill=i)

    with traced_peak() as traced:
        stitch(pieces(), tmp_path / "big.wav")
    peak = traced.bytes
    assert (tmp_path / "big.wav").stat().st_size == 44 + 200 * piece_samples * 2
    assert peak < 4 * piece_samples * 2  # a couple of pieces at most, never the book


# --- stdout -------------------------------------------------------------------


class PipeLike(io.RawIOBase):
    """A non-seekable binary stream that records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        self.writes.append(bytes(b))
        return len(b)


def test_stdout_streams_from_the_first_piece() -> None:
    pipe = PipeLike()
    with open_output("-", stdout=io.BufferedWriter(pipe, buffer_size=1 << 20)) as out:
        out.add(synthetic_wav(100, 8000))
        sent = b"".join(pipe.writes)  # flushed, not waiting in a buffer
        assert len(sent) == 44 + 200  # header and first piece are out before the second
        assert sent[4:8] == sent[40:44] == b"\xff\xff\xff\xff"
        assert struct.unpack_from("<I", sent, 24)[0] == 8000
        out.add(synthetic_wav(50, 8000))
    assert len(b"".join(pipe.writes)) == 44 + 300


def test_stdout_redirected_to_a_file_gets_real_sizes() -> None:
    buf = io.BytesIO(b"junk")
    buf.seek(4)
    stitch([synthetic_wav(100), synthetic_wav(20)], "-", stdout=buf)
    assert pcm_of(buf.getvalue()[4:]) == (16000, b"\x01\x00" * 120)


def test_stdout_pipe_is_readable_by_ffmpeg_and_sox(tmp_path, flite_pieces) -> None:
    pieces = flite_pieces["kal16"]
    expected = b"".join(pcm_of(p)[1] for p in pieces)
    raw = tmp_path / "out.raw"
    for cmd in (
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "wav", "-i", "pipe:0", "-f", "s16le", str(raw)],
        ["sox", "-V1", "-t", "wav", "-", "-t", "raw", str(raw)],
    ):
        reader = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        try:
            stitch(pieces, "-", stdout=reader.stdin)
            reader.stdin.close()
        finally:
            assert reader.wait(timeout=60) == 0
        assert raw.read_bytes() == expected, cmd[0]


def test_reader_closing_the_pipe_is_its_own_case() -> None:
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    with pytest.raises(ReaderGone, match="closed the pipe") as exc:
        stitch((synthetic_wav(1 << 16) for _ in range(100)), "-", stdout=reader.stdin)
    assert not isinstance(exc.value, OutputError)  # not a failure of ours: the CLI exits 0
    reader.wait()


# --- FIFOs, devices, symlinks, stale parts ----------------------------------------


def test_fifo_is_streamed_into_not_replaced(tmp_path) -> None:
    fifo = tmp_path / "player.wav"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    pieces = [synthetic_wav(1000, fill=i + 1) for i in range(3)]
    stitch(pieces, fifo)
    got = reader.communicate(timeout=30)[0]
    assert got[:4] == b"RIFF" and got[44:] == b"".join(pcm_of(p)[1] for p in pieces)
    assert fifo.is_fifo() and leftovers(tmp_path) == ["player.wav"]


def test_character_devices_are_written_not_replaced(tmp_path) -> None:
    stitch([synthetic_wav(1000)], "/dev/null")
    assert Path("/dev/null").is_char_device()
    with pytest.raises(OutputError, match="cannot write to /dev/full: No space left on device"):
        stitch([synthetic_wav(1000)], "/dev/full")
    assert Path("/dev/full").is_char_device()


def test_symlinked_output_replaces_the_target_not_the_link(tmp_path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "book.wav"
    target.write_bytes(b"old")
    link = tmp_path / "book.wav"
    link.symlink_to(target)
    stitch([synthetic_wav(1000)], link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:4] == b"RIFF"
    dangling = tmp_path / "new.wav"
    dangling.symlink_to(tmp_path / "real" / "new.wav")
    stitch([synthetic_wav(1000)], dangling)
    assert dangling.is_symlink() and (tmp_path / "real" / "new.wav").read_bytes()[:4] == b"RIFF"
    assert leftovers(tmp_path / "real") == ["book.wav", "new.wav"]


def test_stale_parts_of_the_same_output_are_removed(tmp_path) -> None:
    """A run killed with kill -9 leaves .NAME.xxxxxxxx.part; the next write of NAME removes it."""
    stale = tmp_path / ".book.wav.abcd1234.part"
    stale.write_bytes(b"x" * 1000)
    old = stitching._RUN_STARTED - 60
    os.utime(stale, (old, old))
    other = tmp_path / ".other.wav.abcd1234.part"  # another output's: not ours to touch
    other.write_bytes(b"x")
    os.utime(other, (old, old))
    foreign = tmp_path / ".book.wav.notours.part"  # not our naming
    foreign.write_bytes(b"x")
    os.utime(foreign, (old, old))
    live = tmp_path / ".book.wav.live5678.part"  # a live writer holds its lock
    live.write_bytes(b"x")
    os.utime(live, (old, old))
    holder = subprocess.Popen(["flock", "-x", str(live), "sleep", "30"])
    try:
        for _ in range(100):  # until flock holds it
            if subprocess.run(["flock", "-n", str(live), "true"]).returncode != 0:
                break
        stitch([synthetic_wav(1000)], tmp_path / "book.wav")
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["book.wav", other.name, foreign.name, live.name])


def test_a_dead_encoder_is_an_output_error_with_its_message(tmp_path) -> None:
    """ffmpeg killed mid-encode: an OutputError (exit 9) saying so, not a quiet 'reader left'."""
    out = tmp_path / "out" / "book.mp3"
    out.parent.mkdir()
    writer = open_output(out)
    writer.add(synthetic_wav(1000))
    assert writer._proc is not None
    writer._proc.kill()
    writer._proc.wait()
    with pytest.raises(OutputError, match=r"ffmpeg stopped while encoding .*book\.mp3: killed by signal 9") as exc:
        for _ in range(100):
            writer.add(synthetic_wav(1 << 16))
    writer.abort()
    assert not isinstance(exc.value, ReaderGone)
    assert leftovers(out.parent) == []


# --- encoded formats ------------------------------------------------------------


@pytest.mark.parametrize("ext, tolerance", [("flac", 0.0), ("ogg", 0.05), ("mp3", 0.1)])
def test_encoded_outputs_decode_to_the_right_length(tmp_path, flite_pieces, ext, tolerance) -> None:
    pieces = flite_pieces["kal16"]
    out = tmp_path / f"book.{ext}"
    seconds = stitch(pieces, out)
    assert leftovers(tmp_path) == [out.name]
    decoded = decode_with_ffmpeg(out)
    assert len(decoded) / 2 / 16000 == pytest.approx(seconds, abs=tolerance)
    if ext == "flac":
        assert decoded == b"".join(pcm_of(p)[1] for p in pieces)


def _wav_file(path: Path, pcm: bytes, rate: int = 8000) -> "stitching.OutputFile":
    import hashlib

    from gflite.gwasm.spool import OutputFile

    data = wav_header(WavFormat(rate), len(pcm)) + pcm
    path.write_bytes(data)
    return OutputFile("out.wav", str(path), len(data), hashlib.sha256(data).hexdigest(), owned=False)


@pytest.mark.parametrize("verified", [True, False])
def test_a_lead_is_the_stream_start_and_its_piece_adds_only_the_rest(tmp_path: Path, verified: bool) -> None:
    """lead() writes the first utterances' audio before their chunk is done;
    the chunk then checks it begins with exactly those samples and adds the rest."""
    from dataclasses import replace

    pcm = os.urandom(40_000)
    lead = _wav_file(tmp_path / "lead.wav", pcm[:10_000])
    whole = replace(_wav_file(tmp_path / "whole.wav", pcm), verified=verified)
    out = io.BytesIO()
    writer = stitching.WavStreamWriter(out, 8000)
    written = writer.lead(lead)
    assert out.getvalue()[44:] == pcm[:10_000] and written.pcm_bytes == 10_000
    writer.add_file(whole, written)
    writer.close()
    assert out.getvalue()[44:] == pcm and writer.samples == 20_000 and writer.pieces == 1

    other = _wav_file(tmp_path / "other.wav", pcm[:9_998] + b"xx" + pcm[10_000:])
    writer = stitching.WavStreamWriter(io.BytesIO(), 8000)
    with pytest.raises(OutputError, match="does not begin with"):
        writer.add_file(other, writer.lead(lead))
    writer = stitching.WavStreamWriter(io.BytesIO(), 16000)
    with pytest.raises(OutputError, match="16000 Hz"):
        writer.add_file(_wav_file(tmp_path / "rate.wav", pcm, rate=16000), writer.lead(lead))


def _cache_pieces(tmp_path: Path, count: int, damaged: int | None = None) -> list["stitching.OutputFile"]:
    """Cache-entry pieces (unverified, their sha256 recorded beside them),
    ``damaged`` one changed on disk since its digest was taken."""
    from dataclasses import replace

    pieces = []
    for i in range(count):
        item = replace(_wav_file(tmp_path / f"entry{i}.wav", os.urandom(300_000 + 1000 * i)), verified=False)
        if i == damaged:
            data = bytearray(Path(item.path).read_bytes())
            data[-7] ^= 0x40
            Path(item.path).write_bytes(bytes(data))
        pieces.append(item)
    return pieces


@pytest.mark.parametrize("damaged", [None, 0, 3, 7])
def test_cache_pieces_are_checked_before_the_file_is_published(tmp_path: Path, damaged: int | None) -> None:
    """A file's cache pieces are hashed beside the copies, a few behind, but a
    damaged one always stops the output before it is published, and its
    DamagedError carries the tag it was added with (which chunk to drop)."""
    from gflite.gwasm.spool import DamagedError

    pieces = _cache_pieces(tmp_path, 8, damaged)
    target = tmp_path / "out" / "book.wav"
    target.parent.mkdir()
    writer = open_output(target)
    if damaged is None:
        with writer:
            for i, item in enumerate(pieces):
                writer.add_file(item, tag=i)
        body = b"".join(Path(p.path).read_bytes()[44:] for p in pieces)
        assert target.read_bytes()[44:] == body and writer.pieces == 8
        return
    with pytest.raises(DamagedError) as caught:
        with writer:
            for i, item in enumerate(pieces):
                writer.add_file(item, tag=i)
    assert caught.value.tag == damaged
    assert leftovers(target.parent) == []  # neither book.wav nor its part


def test_a_stream_checks_each_cache_piece_before_the_next(tmp_path: Path) -> None:
    """On a stream the bytes are out as they are written: a damaged cache
    piece fails its own add_file, before the next piece is sent."""
    from gflite.gwasm.spool import DamagedError

    pieces = _cache_pieces(tmp_path, 4, damaged=1)
    with open(tmp_path / "stream", "w+b") as out:
        writer = stitching.WavStreamWriter(out, 8000)
        writer.add_file(pieces[0], tag=0)
        with pytest.raises(DamagedError) as caught:
            writer.add_file(pieces[1], tag=1)
        assert caught.value.tag == 1
        writer.abort()
        out.seek(0, os.SEEK_END)
        assert out.tell() == 44 + (pieces[0].size - 44) + (pieces[1].size - 44)  # nothing of pieces[2]
