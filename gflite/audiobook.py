"""Audiobook files from a stitched WAV: m4b/m4a (AAC) or mp3, with chapter marks,
title, author and cover; or one file per chapter.

ffmpeg does the encoding, as for the other compressed outputs (it is already
required, found through pydub). Chapters go in as an FFMETADATA file whose
``[CHAPTER]`` blocks count in samples (``TIMEBASE=1/<rate>``), and the MP4
muxer is told ``-movie_timescale <rate>``: its QuickTime chapter track then
counts in samples too, so a chapter starts on the exact sample where its text
starts (the default timescale, 1/1000, would round every mark to a
millisecond). The Nero ``chpl`` list ffmpeg adds counts 100 ns units, exact for
flite's 8 and 16 kHz. MP3's ID3 ``CHAP`` frames count milliseconds by
definition, so there a mark is within half a millisecond.

PyAV could do the same in-process, but it adds a 30 MB wheel of FFmpeg
libraries to do what the ffmpeg we already require does from one metadata file.

:func:`add_chapters` does the same to audio already encoded (streamed into
ffmpeg with :func:`encoder_args` while the book was synthesised), copying it
without re-encoding: seconds for a whole book, where encoding takes minutes.

PCM is fed to ffmpeg on a pipe from the WAV's data chunk, so a chapter is cut at
an exact sample and no WAV size field (unknown past 4 GiB) is trusted. Output
goes to a temporary file beside the target, renamed only when ffmpeg succeeds.
"""
from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

from gflite import outputs
from gflite.book_suffixes import AUDIOBOOK_FORMATS, audiobook_format  # noqa: F401  (part of this module's API)
from gflite.errors import OutputError
from gflite.stitching import ENCODERS, find_ffmpeg
from gflite.wav import WavFormat

if TYPE_CHECKING:
    from gflite.books.model import Cover

_MP4_FORMATS = ("m4b", "m4a")
_COPY_STEP = 1 << 20
_UNKNOWN = 0xFFFFFFFF


@dataclass(frozen=True)
class ChapterMark:
    start: int  # sample frame of the WAV where the chapter begins
    title: str


@dataclass(frozen=True)
class Tags:
    title: str = ""
    author: str = ""
    album: str = ""  # default: title
    language: str = ""  # ISO 639 code, e.g. "en" or "eng"
    genre: str = "Audiobook"
    track: tuple[int, int] | None = None  # (number, total)
    cover: Cover | None = None


@dataclass(frozen=True)
class WavData:
    """Where a WAV file's samples are: format, byte offset and frame count."""

    format: WavFormat
    offset: int
    frames: int


def read_wav_header(path: Path) -> WavData:
    """The format and data chunk of a 16-bit PCM WAV, read from its header only.

    A data size of 0xFFFFFFFF (what gflite and ffmpeg write past 4 GiB or to a
    pipe) means "to the end of the file"."""
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                raise OutputError(f"{path} is not a WAV file")
            pos, fmt = 12, None
            while pos + 8 <= size:
                f.seek(pos)
                cid, n = struct.unpack("<4sI", f.read(8))
                if cid == b"fmt ":
                    body = f.read(min(n, 64))
                    if len(body) < 16:
                        raise OutputError(f"{path}: WAV format chunk is too short")
                    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
                    if tag != 1 or bits != 16 or channels < 1 or rate < 1:
                        raise OutputError(f"{path}: expected 16-bit PCM WAV (tag {tag}, {bits}-bit)")
                    fmt = WavFormat(sample_rate=rate, channels=channels)
                elif cid == b"data":
                    if fmt is None:
                        raise OutputError(f"{path}: WAV data comes before its format chunk")
                    avail = size - pos - 8
                    n = avail if n == _UNKNOWN else min(n, avail)
                    return WavData(format=fmt, offset=pos + 8, frames=n // fmt.block_align)
                pos += 8 + n + (n & 1)
    except OSError as e:
        raise OutputError(f"cannot read {path}: {e.strerror or e}") from None
    raise OutputError(f"{path}: WAV file has no data chunk")


def ffmetadata(tags: Tags, chapters: tuple[ChapterMark, ...] | list[ChapterMark], frames: int, rate: int) -> str:
    """An FFMETADATA1 file: global tags, then one ``[CHAPTER]`` per mark, in samples."""
    lines = [";FFMETADATA1"]
    for key, value in _tag_items(tags):
        lines.append(f"{key}={_escape(value)}")
    for i, c in enumerate(chapters):
        end = chapters[i + 1].start if i + 1 < len(chapters) else frames
        lines += ["[CHAPTER]", f"TIMEBASE=1/{rate}", f"START={c.start}", f"END={end}", f"title={_escape(c.title)}"]
    return "\n".join(lines) + "\n"


def write_audiobook(
    wav: str | os.PathLike[str],
    target: str | os.PathLike[str],
    chapters: tuple[ChapterMark, ...] | list[ChapterMark],
    tags: Tags = Tags(),
) -> Path:
    """Encode ``wav`` to ``target`` (.m4b, .m4a or .mp3) with chapter marks and tags.

    A cover ffmpeg cannot decode is left out (check :func:`usable_cover` first
    to tell the user)."""
    src, out = Path(wav), Path(target)
    kind = _kind(out)
    data = read_wav_header(src)
    _check_marks(chapters, data.frames)
    if tags.cover is not None and not usable_cover(tags.cover):
        tags = replace(tags, cover=None)
    _encode(src, data, 0, data.frames, out, kind, tags, tuple(chapters))
    return out


def split_chapters(
    wav: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    chapters: tuple[ChapterMark, ...] | list[ChapterMark],
    tags: Tags = Tags(),
    *,
    kind: str = "m4a",
) -> tuple[Path, ...]:
    """One file per chapter in ``directory``: ``01 - Title.m4a``..., each tagged with its
    title, the book as album, the author and ``track=n/total``. Returns the paths."""
    src, folder = Path(wav), Path(directory)
    if kind not in AUDIOBOOK_FORMATS:
        raise OutputError(f"unknown chapter file format {kind!r}: use m4a, m4b or mp3")
    if not folder.is_dir():
        raise OutputError(f"output directory does not exist: {folder}")
    data = read_wav_header(src)
    _check_marks(chapters, data.frames)
    if tags.cover is not None and not usable_cover(tags.cover):
        tags = replace(tags, cover=None)
    width = max(2, len(str(len(chapters))))
    paths = []
    for i, c in enumerate(chapters):
        end = chapters[i + 1].start if i + 1 < len(chapters) else data.frames
        path = folder / f"{i + 1:0{width}d} - {_file_name(c.title)}.{kind}"
        own = Tags(
            title=c.title,
            author=tags.author,
            album=tags.album or tags.title,
            language=tags.language,
            genre=tags.genre,
            track=(i + 1, len(chapters)),
            cover=tags.cover,
        )
        _encode(src, data, c.start, end, path, kind, own, ())
        paths.append(path)
    return tuple(paths)


def usable_cover(cover: Cover | None) -> bool:
    """True if ``cover`` is a JPEG or PNG (what MP4 and ID3 carry) that ffmpeg decodes.

    A book's cover is data from another party: a corrupt one would make ffmpeg
    fail the whole audiobook after hours of synthesis, so it is checked first
    and the caller writes the audiobook without it."""
    if cover is None or not (cover.data[:8] == b"\x89PNG\r\n\x1a\n" or cover.data[:3] == b"\xff\xd8\xff"):
        return False
    with tempfile.TemporaryDirectory(prefix="gflite-cover-") as work:
        picture = Path(work) / f"cover.{cover.extension}"
        picture.write_bytes(cover.data)
        cmd = [find_ffmpeg(), "-nostdin", "-v", "error", "-xerror", "-i", str(picture), "-f", "null", "-"]
        try:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0 and not done.stderr.strip()


def _kind(out: Path) -> str:
    kind = audiobook_format(out)
    if kind is None:
        raise OutputError(f"{out}: an audiobook is written as .m4b, .m4a or .mp3")
    return kind


def _check_marks(chapters: tuple[ChapterMark, ...] | list[ChapterMark], frames: int) -> None:
    last = -1
    for c in chapters:
        if not last < c.start < max(frames, 1):
            raise ValueError(f"chapter marks must increase within the audio's {frames} samples: {c}")
        last = c.start


def _tag_items(tags: Tags) -> list[tuple[str, str]]:
    items = [
        ("title", tags.title),
        ("artist", tags.author),
        ("album_artist", tags.author),
        ("album", tags.album or tags.title),
        ("genre", tags.genre),
        ("language", tags.language),
    ]
    if tags.track:
        items.append(("track", f"{tags.track[0]}/{tags.track[1]}"))
    return [(k, v) for k, v in items if v]


def _escape(value: str) -> str:
    # FFMETADATA: "=", ";", "#", "\" and newlines are escaped with a backslash;
    # other control characters are dropped, newlines become spaces in a title.
    clean = "".join(ch if ch >= " " or ch == "\t" else " " for ch in value).strip()
    return "".join("\\" + ch if ch in "=;#\\" else ch for ch in clean)


def _file_name(title: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in " -_.,'()&!" else "_" for ch in title).strip(" ._")
    return keep[:80] or "Chapter"


def _encode(
    src: Path, data: WavData, start: int, end: int, out: Path, kind: str, tags: Tags, chapters: tuple[ChapterMark, ...]
) -> None:
    rate, channels = data.format.sample_rate, data.format.channels
    pcm_in = ["-f", "s16le", "-ar", str(rate), "-ac", str(channels), "-i", "pipe:0"]
    marks = tuple(ChapterMark(c.start - start, c.title) for c in chapters)

    def feed(sink: BinaryIO) -> None:
        _copy_pcm(src, data, start, end, sink)

    _mux(pcm_in, list(encoder_args(kind, rate)), out, kind, tags, marks, rate, end - start, feed)


def encoder_args(kind: str, rate: int) -> tuple[str, ...]:
    """ffmpeg's codec arguments for an audiobook of ``kind`` at ``rate`` Hz, so audio
    streamed into ffmpeg during synthesis is encoded as :func:`add_chapters` expects."""
    if kind in _MP4_FORMATS:
        # 8 kHz mono speech is transparent at 32 kb/s AAC, 16 kHz at 48.
        return ("-c:a", "aac", "-b:a", "32k" if rate <= 8000 else "48k")
    if kind == "mp3":
        args = ENCODERS["mp3"]  # the same quality as a plain .mp3 output
        # Without its "-f mp3": _mux chooses the muxer.
        return tuple(a for i, a in enumerate(args) if a != "-f" and (i == 0 or args[i - 1] != "-f"))
    raise OutputError(f"unknown audiobook format {kind!r}: use m4b, m4a or mp3")


def add_chapters(
    encoded: str | os.PathLike[str],
    target: str | os.PathLike[str],
    chapters: tuple[ChapterMark, ...] | list[ChapterMark],
    tags: Tags = Tags(),
    *,
    sample_rate: int,
    frames: int,
    source_format: str | None = None,
) -> Path:
    """Copy the audio of ``encoded`` (AAC in .m4a/.m4b, or .mp3, e.g. streamed there
    by ffmpeg with :func:`encoder_args` while the book was synthesised) into
    ``target`` with chapter marks, tags and cover, without re-encoding it.
    ``frames`` is the audio's length in samples (the last chapter's end).
    ``source_format`` names the format of ``encoded`` when its name does not
    (a temporary ``.part`` file)."""
    src, out = Path(encoded), Path(target)
    kind = _kind(out)
    if ((source_format or audiobook_format(src)) in _MP4_FORMATS) != (kind in _MP4_FORMATS):
        raise OutputError(f"cannot copy the audio of {src.name} into {out.name}: re-encode it with write_audiobook")
    _check_marks(chapters, frames)
    if tags.cover is not None and not usable_cover(tags.cover):
        tags = replace(tags, cover=None)
    _mux(["-i", str(src)], ["-c:a", "copy"], out, kind, tags, tuple(chapters), sample_rate, frames, None)
    return out


def _mux(
    audio_in: list[str],
    audio_codec: list[str],
    out: Path,
    kind: str,
    tags: Tags,
    marks: tuple[ChapterMark, ...],
    rate: int,
    frames: int,
    feed: Callable[[BinaryIO], None] | None,
) -> None:
    ffmpeg = find_ffmpeg()
    outputs.check_file_place(out)
    with tempfile.TemporaryDirectory(prefix="gflite-audiobook-") as work:
        meta = Path(work) / "metadata.txt"
        meta.write_text(ffmetadata(tags, marks, frames, rate), encoding="utf-8")
        cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *audio_in, "-f", "ffmetadata", "-i", str(meta)]
        maps = ["-map", "0:a", "-map_metadata", "1", "-map_chapters", "1" if marks else "-1"]
        if tags.cover is not None:
            picture = Path(work) / f"cover.{tags.cover.extension}"
            picture.write_bytes(tags.cover.data)
            cmd += ["-i", str(picture)]
            maps += ["-map", "2:v", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
            if kind == "mp3":
                maps += ["-metadata:s:v", "title=Album cover", "-metadata:s:v", "comment=Cover (front)"]
        if kind in _MP4_FORMATS:
            # The chapter track counts in samples: exact marks, not milliseconds.
            muxer = ["-movie_timescale", str(rate), "-f", "ipod"]
            if kind == "m4b":
                muxer += ["-brand", "M4B "]  # what audiobook players look for; ffmpeg says M4A
        else:
            muxer = ["-id3v2_version", "3", "-f", "mp3"]
        _run(cmd + maps + audio_codec + muxer, out, feed)


def _run(cmd: list[str], out: Path, feed: Callable[[BinaryIO], None] | None) -> None:
    try:
        fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    except OSError as e:
        raise OutputError(f"cannot write to {out.parent}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    log = tempfile.TemporaryFile()
    proc: subprocess.Popen[bytes] | None = None
    try:
        try:
            stdin = subprocess.PIPE if feed is not None else subprocess.DEVNULL
            proc = subprocess.Popen([*cmd, str(tmp)], stdin=stdin, stdout=subprocess.DEVNULL, stderr=log)
        except OSError as e:
            raise OutputError(f"cannot run {cmd[0]}: {e.strerror or e}") from None
        if feed is not None:
            assert proc.stdin is not None
            try:
                feed(proc.stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # ffmpeg stopped early; its exit code and log say why
        if proc.wait() != 0:
            raise OutputError(f"ffmpeg could not write {out}: {_last_line(log, proc.returncode)}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private
        os.replace(tmp, out)
    except BaseException:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        log.close()


def _copy_pcm(src: Path, data: WavData, start: int, end: int, sink: BinaryIO) -> None:
    block = data.format.block_align
    left = (end - start) * block
    try:
        with src.open("rb") as f:
            f.seek(data.offset + start * block)
            while left > 0:
                piece = f.read(min(_COPY_STEP, left))
                if not piece:
                    raise OutputError(f"{src} ended early: it is shorter than its header says")
                sink.write(piece)
                left -= len(piece)
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        raise OutputError(f"cannot read {src}: {e.strerror or e}") from None


def _last_line(log: BinaryIO, code: int | None) -> str:
    log.seek(0)
    lines = log.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"exit code {code}"
