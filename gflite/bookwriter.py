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

On an error or interrupt, nothing but already finished chapter files is left.
"""
from __future__ import annotations

from pathlib import Path

from gflite import audiobook, outputs
from gflite.audiobook import ChapterMark, Tags
from gflite.errors import OutputError
from gflite.stitching import EncodedWriter, WavFileWriter, WavFormat


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
