"""m4b/m4a/mp3 with chapters, tags and cover, written by real ffmpeg and read back by ffprobe."""
from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from epubs import tiny_png
from gflite.audiobook import (
    ChapterMark,
    Tags,
    audiobook_format,
    ffmetadata,
    read_wav_header,
    add_chapters,
    encoder_args,
    split_chapters,
    usable_cover,
    write_audiobook,
)
from gflite.books import Cover
from gflite.errors import OutputError
from gflite.stitching import WavFormat, wav_header

pytestmark = pytest.mark.skipif(not shutil.which("ffprobe"), reason="needs ffmpeg's ffprobe")

# Odd sample positions: a millisecond clock would round every one of them.
MARKS = (ChapterMark(0, "Chapter One: The Start"), ChapterMark(16001, "Two = two; #2"), ChapterMark(50003, "Three"))
COVER = Cover(tiny_png(), "image/png")
TAGS = Tags(title="The Test Book", author="Ada Author", cover=COVER)


def _wav(path: Path, rate: int = 16000, seconds: float = 5.0, unknown_size: bool = False, channels: int = 1) -> Path:
    n = int(rate * seconds)
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) * channels for i in range(n))
    fmt = WavFormat(rate, channels=channels)
    path.write_bytes(wav_header(fmt, 0xFFFFFFFF if unknown_size else len(pcm)) + pcm)
    return path


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-show_streams", "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def _cover_bytes(path: Path) -> bytes:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "image2pipe", "-"],
        check=True, capture_output=True,
    )  # fmt: skip
    return out.stdout


@pytest.mark.parametrize(("kind", "rate"), [("m4b", 16000), ("m4b", 8000), ("m4a", 16000)])
def test_mp4_chapters_start_on_exact_samples(tmp_path: Path, kind: str, rate: int) -> None:
    wav = _wav(tmp_path / "in.wav", rate=rate)
    frames = 5 * rate
    marks = MARKS if rate == 16000 else tuple(ChapterMark(s, m.title) for s, m in zip((0, 8001, 25003), MARKS))
    out = write_audiobook(wav, tmp_path / f"book.{kind}", marks, TAGS)
    info = _probe(out)
    chapters = info["chapters"]
    assert [c["tags"]["title"] for c in chapters] == [m.title for m in marks]
    assert {c["time_base"] for c in chapters} == {f"1/{rate}"}
    assert [c["start"] for c in chapters] == [m.start for m in marks]
    assert [c["end"] for c in chapters] == [m.start for m in marks[1:]] + [frames]
    tags = info["format"]["tags"]
    assert tags["major_brand"] == ("M4B " if kind == "m4b" else "M4A ")
    assert (tags["title"], tags["artist"], tags["album"], tags["genre"]) == (
        "The Test Book", "Ada Author", "The Test Book", "Audiobook"
    )
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert len(audio) == 1 and audio[0]["codec_name"] == "aac" and int(audio[0]["sample_rate"]) == rate
    assert audio[0]["duration_ts"] == frames
    pictures = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert len(pictures) == 1 and pictures[0]["disposition"]["attached_pic"] == 1
    assert _cover_bytes(out) == COVER.data
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.wav", out.name])  # no temporary left


def test_mp3_chapters_tags_and_cover(tmp_path: Path) -> None:
    out = write_audiobook(_wav(tmp_path / "in.wav"), tmp_path / "book.mp3", MARKS, TAGS)
    info = _probe(out)
    # ID3 CHAP counts milliseconds: each mark is the nearest millisecond to its sample.
    assert [c["tags"]["title"] for c in info["chapters"]] == [m.title for m in MARKS]
    assert [float(c["start_time"]) for c in info["chapters"]] == [round(m.start / 16) / 1000 for m in MARKS]
    tags = info["format"]["tags"]
    assert (tags["title"], tags["artist"], tags["album"]) == ("The Test Book", "Ada Author", "The Test Book")
    assert any(s["codec_type"] == "video" and s["disposition"]["attached_pic"] == 1 for s in info["streams"])
    assert _cover_bytes(out) == COVER.data


def test_split_chapters_one_numbered_tagged_file_each(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "in.wav")
    (tmp_path / "out").mkdir()
    paths = split_chapters(wav, tmp_path / "out", MARKS, TAGS)
    assert [p.name for p in paths] == ["01 - Chapter One_ The Start.m4a", "02 - Two _ two_ _2.m4a", "03 - Three.m4a"]
    lengths = [16001, 50003 - 16001, 80000 - 50003]
    for i, (p, n) in enumerate(zip(paths, lengths), 1):
        info = _probe(p)
        tags = info["format"]["tags"]
        assert (tags["title"], tags["album"], tags["artist"], tags["track"]) == (
            MARKS[i - 1].title, "The Test Book", "Ada Author", f"{i}/3"
        )
        audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
        assert audio["duration_ts"] == n
        assert not info.get("chapters")


def test_split_chapters_as_mp3(tmp_path: Path) -> None:
    paths = split_chapters(_wav(tmp_path / "in.wav"), tmp_path, MARKS, TAGS, kind="mp3")
    assert [p.suffix for p in paths] == [".mp3"] * 3
    tags = [_probe(p)["format"]["tags"] for p in paths]
    assert [(t["title"], t["track"], t["album"]) for t in tags] == [(m.title, f"{i}/3", "The Test Book") for i, m in enumerate(MARKS, 1)]
    assert all(_cover_bytes(p) == COVER.data for p in paths)


def test_wav_with_unknown_sizes_is_read_to_the_end(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "in.wav", unknown_size=True)
    assert read_wav_header(wav).frames == 80000
    out = write_audiobook(wav, tmp_path / "b.m4b", MARKS, Tags(title="T"))
    assert _probe(out)["chapters"][-1]["end"] == 80000


def test_failed_encode_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    # ffmpeg's AAC encoder has no 9-channel layout: it refuses after the temporary file was made.
    wav = _wav(tmp_path / "in.wav", rate=8000, seconds=1, channels=9)
    target = tmp_path / "b.m4b"
    target.write_bytes(b"old")
    with pytest.raises(OutputError) as e:
        write_audiobook(wav, target, [ChapterMark(0, "x")], Tags())
    assert "\n" not in str(e.value) and e.value.exit_code == 9
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.m4b", "in.wav"]


def test_corrupt_cover_is_left_out(tmp_path: Path) -> None:
    bad = Cover(b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 10, "image/png")
    assert not usable_cover(bad) and usable_cover(COVER)
    out = write_audiobook(_wav(tmp_path / "in.wav", seconds=1), tmp_path / "b.m4b", MARKS[:1], Tags(title="T", cover=bad))
    info = _probe(out)
    assert info["format"]["tags"]["title"] == "T"
    assert not [s for s in info["streams"] if s["codec_type"] == "video"]


def test_bad_targets_and_marks(tmp_path: Path) -> None:
    wav = _wav(tmp_path / "in.wav", seconds=1)
    with pytest.raises(OutputError):
        write_audiobook(wav, tmp_path / "b.ogg", MARKS[:1])
    with pytest.raises(OutputError):
        write_audiobook(wav, tmp_path / "missing" / "b.m4b", MARKS[:1])
    with pytest.raises(ValueError):
        write_audiobook(wav, tmp_path / "b.m4b", [ChapterMark(100, "a"), ChapterMark(50, "b")])
    with pytest.raises(ValueError):
        write_audiobook(wav, tmp_path / "b.m4b", [ChapterMark(0, "a"), ChapterMark(16000, "past the end")])
    with pytest.raises(OutputError):
        read_wav_header(tmp_path / "nope.wav")


def test_ffmetadata_escapes_and_counts_in_samples() -> None:
    text = ffmetadata(Tags(title="A=B;C#D\\E\nF"), [ChapterMark(0, "x"), ChapterMark(7, "y")], 10, 8000)
    assert text.splitlines() == [
        ";FFMETADATA1",
        "title=A\\=B\\;C\\#D\\\\E F",
        "album=A\\=B\\;C\\#D\\\\E F",
        "genre=Audiobook",
        "[CHAPTER]", "TIMEBASE=1/8000", "START=0", "END=7", "title=x",
        "[CHAPTER]", "TIMEBASE=1/8000", "START=7", "END=10", "title=y",
    ]  # fmt: skip


def test_audiobook_format() -> None:
    assert [audiobook_format(p) for p in ("a.M4B", "b.m4a", "c.mp3", "d.wav", "-")] == ["m4b", "m4a", "mp3", None, None]


@pytest.mark.skipif(not shutil.which("flite"), reason="needs native flite, the oracle")
def test_book_to_m4b_chapters_start_where_their_text_starts_in_the_whole_run(tmp_path: Path) -> None:
    """Native flite on the whole composed book equals flite on each chapter, concatenated:
    so the marks (cumulative sample counts) are where each chapter's speech starts."""
    import wave

    from gflite.books import read_book
    from gflite.books.compose import compose

    book = read_book(Path(__file__).parent.parent / "sample_texts" / "the_lamplighter.md")
    composed = compose(book)
    text = composed.text.text
    bounds = [*composed.starts, len(text)]

    def flite(part: str, name: str) -> bytes:
        (tmp_path / f"{name}.txt").write_text(part, encoding="ascii")
        subprocess.run(["flite", "-f", str(tmp_path / f"{name}.txt"), "-o", str(tmp_path / f"{name}.wav")], check=True)
        with wave.open(str(tmp_path / f"{name}.wav")) as w:
            return w.readframes(w.getnframes())

    whole = flite(text, "whole")
    pieces = [flite(text[a:b], f"ch{i}") for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    assert b"".join(pieces) == whole
    marks, at = [], 0
    for title, piece in zip(composed.titles, pieces):
        marks.append(ChapterMark(at, title))
        at += len(piece) // 2
    out = write_audiobook(tmp_path / "whole.wav", tmp_path / "book.m4b", marks, Tags(title=book.metadata.title))
    chapters = _probe(out)["chapters"]
    assert [(c["start"], c["tags"]["title"]) for c in chapters] == [(m.start, m.title) for m in marks]
    assert chapters[-1]["end"] == len(whole) // 2


def _decoded(path: Path) -> bytes:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s16le", "-"], check=True, capture_output=True)
    return out.stdout


@pytest.mark.parametrize(("kind", "target"), [("m4a", "book.m4b"), ("mp3", "book.mp3")])
def test_add_chapters_to_audio_encoded_while_streaming(tmp_path: Path, kind: str, target: str) -> None:
    wav = _wav(tmp_path / "in.wav")
    streamed = tmp_path / f"streamed.{kind}"
    muxer = "ipod" if kind == "m4a" else "mp3"
    pcm = wav.read_bytes()[44:]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "s16le", "-ar", "16000", "-ac", "1", "-i", "pipe:0",
         *encoder_args(kind, 16000), "-f", muxer, str(streamed)],
        input=pcm, check=True,
    )  # fmt: skip
    out = add_chapters(streamed, tmp_path / target, MARKS, TAGS, sample_rate=16000, frames=80000)
    info = _probe(out)
    assert [c["tags"]["title"] for c in info["chapters"]] == [m.title for m in MARKS]
    if kind == "m4a":
        assert [(c["time_base"], c["start"]) for c in info["chapters"]] == [("1/16000", m.start) for m in MARKS]
    assert info["format"]["tags"]["artist"] == "Ada Author"
    assert _cover_bytes(out) == COVER.data
    assert _decoded(out) == _decoded(streamed)  # the audio was copied, not re-encoded


def test_add_chapters_refuses_to_copy_across_codecs(tmp_path: Path) -> None:
    (tmp_path / "a.mp3").write_bytes(b"")
    with pytest.raises(OutputError):
        add_chapters(tmp_path / "a.mp3", tmp_path / "b.m4b", MARKS, sample_rate=16000, frames=80000)
