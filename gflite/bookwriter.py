"""Audiobook outputs for the stitcher: one .m4b/.m4a/.mp3 with chapter marks, or
one file per chapter.

Both are :class:`gflite.stitching.AudioWriter`s, so the pipeline writes to them
as to any output; they also take :meth:`begin_chapter`, which records the
sample where a chapter starts (the writer's sample count, exact).

- :class:`AudiobookWriter` streams the PCM into ffmpeg's AAC (or MP3) encoder
  while the book is synthesised, into a locked ``.part`` beside the target,
  then :func:`gflite.audiobook.add_chapters` copies that audio (no re-encoding)
  into the target with chapters, tags and cover. Encoding thus overlaps
  synthesis, and what is left at the end is a stream copy (seconds for a
  book; encoding afterwards from a temporary WAV took 11x longer, see README).
- :class:`ChapterSplitWriter` writes a temporary WAV in the target folder and,
  at the end, :func:`gflite.audiobook.split_chapters` encodes one file per
  chapter from it (each cut at its exact sample).

- :class:`ReadAlongWriter` (``-o book.epub``) streams each chapter into its
  own AAC encoder (so it is cut at its exact sample, and encoding overlaps
  synthesis) in a scratch folder beside the target; once the timings are in,
  :func:`gflite.readalong.write_epub` packs the read-along EPUB from those
  files (see :meth:`ReadAlongWriter.pack`).

On an error or interrupt, nothing but already finished chapter files is left.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gflite import audiobook, outputs
from gflite.audiobook import ChapterMark, Tags
from gflite.errors import OutputError
from gflite.stitching import AudioWriter, EncodedWriter, WavFileWriter
from gflite.wav import WavFormat

if TYPE_CHECKING:
    from gflite.books.anchors import BookMap
    from gflite.timings import Timeline


class AudiobookWriter(EncodedWriter):
    """One .m4b, .m4a or .mp3 with chapter marks, title, author and cover."""

    def __init__(self, target: Path, kind: str, default_rate: int = 16000, tags: Tags = Tags()) -> None:
        if kind not in audiobook.AUDIOBOOK_FORMATS:
            raise OutputError(f"unknown audiobook format {kind!r}: use m4b, m4a or mp3")
        if outputs.resolve(str(target)).stream:
            raise OutputError(f"{target}: an .{kind} audiobook is written to a file, not a FIFO or device")
        super().__init__(target, kind, default_rate)
        self.tags = tags
        self.marks: list[ChapterMark] = []

    def begin_chapter(self, title: str) -> None:
        _mark(self.marks, self.samples, title)

    def _codec(self, fmt: WavFormat) -> tuple[str, ...]:
        muxer = ("-f", "ipod") if self.kind in ("m4a", "m4b") else ("-f", "mp3")
        return (*audiobook.encoder_args(self.kind, fmt.sample_rate), *muxer)

    def _publish(self) -> None:
        assert self.format is not None
        marks = _usable(self.marks, self.samples)
        try:
            audiobook.add_chapters(self._out.tmp, self.target, marks, self.tags,
                                   sample_rate=self.format.sample_rate, frames=max(self.samples, 1),
                                   source_format=self.kind)
        finally:
            self._out.discard()


class ChapterSplitWriter(WavFileWriter):
    """One file per chapter in a folder: ``01 - Title.m4a``..., track n/N."""

    def __init__(self, folder: Path, kind: str = "m4a", default_rate: int = 16000, tags: Tags = Tags()) -> None:
        if kind not in audiobook.AUDIOBOOK_FORMATS:
            raise OutputError(f"unknown chapter file format {kind!r}: use m4a, m4b or mp3")
        if not folder.is_dir():
            raise OutputError(f"--split chapters writes into a folder: {folder} is not one")
        super().__init__(folder / "gflite-book.wav", default_rate)
        self.folder, self.kind, self.tags = folder, kind, tags
        self.marks: list[ChapterMark] = []
        self.paths: tuple[Path, ...] = ()

    def begin_chapter(self, title: str) -> None:
        _mark(self.marks, self.samples, title)

    def _publish(self) -> None:
        try:
            self._out.file.flush()
            marks = _usable(self.marks, self.samples) or [ChapterMark(0, self.tags.title or "Chapter")]
            self.paths = audiobook.split_chapters(self._out.tmp, self.folder, marks, self.tags, kind=self.kind)
        finally:
            self._out.discard()


class _ChapterEncoder(EncodedWriter):
    """One chapter's AAC-LC in MP4, counted in samples (timescale = rate)."""

    def _codec(self, fmt: WavFormat) -> tuple[str, ...]:
        rate = fmt.sample_rate
        return (*audiobook.encoder_args("m4a", rate), "-movie_timescale", str(rate), "-f", "ipod")


class ReadAlongWriter(AudioWriter):
    """``-o book.epub``: each chapter's audio streamed into its own AAC encoder while
    the book is synthesised, into a scratch folder beside the target; once the
    timings are in, :meth:`pack` makes the read-along EPUB from them."""

    def __init__(self, target: Path, source: Path, book_map: BookMap, default_rate: int = 16000) -> None:
        super().__init__(default_rate)
        if outputs.resolve(str(target)).stream:
            raise OutputError(f"{target}: a read-along EPUB is written to a file, not a FIFO or device")
        outputs.check_file_place(target, f"; give a file name such as {target / 'book.epub'}")
        try:
            self.work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".work", dir=target.parent))
        except OSError as e:
            raise OutputError(f"cannot write to {target.parent}: {e.strerror or e}") from None
        self.epub, self.source, self.book_map = target, source, book_map
        self.starts: list[int] = []  # each composed chapter's first sample, empty ones included
        self.files: list[Path] = []  # the chapters' audio files, in order
        self.file_starts: list[int] = []  # the first sample of each
        self._encoder: _ChapterEncoder | None = None

    def begin_chapter(self, title: str) -> None:
        self.starts.append(self.samples)
        if self._encoder is not None and self.samples > self.file_starts[-1]:
            self._encoder.close()  # a chapter with no audio shares the next one's file
            self._encoder = None

    def _current(self) -> _ChapterEncoder:
        if self._encoder is None:
            assert self.format is not None
            path = self.work / f"chapter-{len(self.files) + 1:03d}.m4a"
            self._encoder = _ChapterEncoder(path, "m4a", self.format.sample_rate)
            self._encoder.format = self.format
            self._encoder._start(self.format)
            self.files.append(path)
            self.file_starts.append(self.samples)
        return self._encoder

    def _start(self, fmt: WavFormat) -> None:
        pass

    def _write(self, pcm: memoryview) -> None:
        self._current()._write(pcm)

    def _write_range(self, src: int, start: int, length: int) -> None:
        self._current()._write_range(src, start, length)

    def _finish(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    def pack(self, timeline: Timeline) -> None:
        """After close(): write the EPUB, then drop the scratch folder (also on failure)."""
        from gflite import readalong

        try:
            readalong.write_epub(self.source, self.epub, timeline, self.book_map, self.files, self.file_starts)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _discard(self) -> None:
        try:
            if self._encoder is not None:
                self._encoder.abort()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


def _mark(marks: list[ChapterMark], at: int, title: str) -> None:
    if marks and marks[-1].start == at:
        marks[-1] = ChapterMark(at, title)  # the chapter before had no audio: it has no mark
    else:
        marks.append(ChapterMark(at, title))


def _usable(marks: list[ChapterMark], frames: int) -> list[ChapterMark]:
    """Marks within the audio: a chapter that starts at its very end (nothing
    flite could say after it) has no audio to mark. The first starts at 0."""
    kept = [m for m in marks if m.start < frames]
    if kept and kept[0].start != 0:
        kept[0] = ChapterMark(0, kept[0].title)
    return kept
