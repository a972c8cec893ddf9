"""A chunk's result → its audio in the output writer, in order: the file
copied without being read into memory (bytes only for a remote answer), a
cached piece checked on the way and its entry removed if it was damaged, a
stream flushed piece by piece, and on a WAV stream the *lead* (the first
chunk's first audio, spoken apart while Punkt still trains) written first."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from gflite import synth
from gflite.errors import OutputError, ReaderGone
from gflite.gwasm.spool import DamagedError, OutputFile, StaleError
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult
from gflite.jobs import DISCARD, STDOUT, Job

if TYPE_CHECKING:
    from concurrent.futures import Future

    from gflite import stitching
    from gflite.audiobook import Tags
    from gflite.gwasm.cache import ResultCache
    from gflite.gwasm.executors.base import Executor


def audio_seconds(result: SubtaskResult) -> float:
    """Seconds of audio in a chunk's result, read from its WAV header (0 if it has none)."""
    from gflite.wav import parse_wav, parse_wav_file

    try:
        piece = dict(result.outputs)[synth.OUT_NAME]
        if isinstance(piece, OutputFile):
            fd = os.open(piece.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                fmt, _, size = parse_wav_file(fd, piece.offset, piece.size)
            finally:
                os.close(fd)
            return size / fmt.block_align / fmt.sample_rate
        fmt, pcm = parse_wav(piece)
    except (KeyError, OutputError, OSError):
        return 0.0  # reported when the piece is written
    return len(pcm) / fmt.block_align / fmt.sample_rate


class Lead:
    """The stream's first audio, ahead of the first chunk: flite's audio of the
    text up to :func:`gflite.chunkstream.lead_end`, made by a worker and
    written by a thread while the parent still imports and trains Punkt;
    the first chunk's audio then checks that it begins with exactly these
    samples and adds only the rest (see ``AudioWriter.lead``)."""

    def __init__(self, writer: stitching.AudioWriter, future: Future[SubtaskResult]) -> None:
        import threading

        self.writer, self.future = writer, future
        self.written: stitching.Lead | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, name="gflite-lead", daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, writer: stitching.AudioWriter | None, executor: Executor, program: Program, limits: Limits,
              text: str, job: Job, target: int) -> list[Lead]:
        """A lead for a WAV stream from this machine's workers, else none
        (``target``: the chunk size the text is cut at)."""
        from gflite import chunkstream
        from gflite.chunking import Chunk
        from gflite.stitching import WavStreamWriter

        if not isinstance(writer, WavStreamWriter) or job.redundancy != 1:
            return []
        end = chunkstream.lead_end(text, target)
        if end is None:
            return []
        part = text[:end]
        chunk = Chunk(0, 0, end, part, hashlib.sha256(part.encode("utf-8")).hexdigest())
        return [cls(writer, executor.submit(program, synth.subtask(chunk, job.options), limits))]

    def _write(self) -> None:
        result = None
        try:
            result = self.future.result()
            piece = dict(result.outputs).get(synth.OUT_NAME) if result.ok else None
            if isinstance(piece, OutputFile):
                self.written = self.writer.lead(piece)
                flush(self.writer)
        except BaseException as exc:  # handed to the main thread by join()
            self.error = exc
        finally:
            if result is not None:
                from gflite.gwasm.spool import release

                release(result.outputs)

    def join(self) -> stitching.Lead | None:
        """What was written (None: nothing, the first chunk goes out whole)."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.written

    def stop(self) -> None:
        self.future.cancel()
        self.thread.join(timeout=1)


def write_piece(writer: stitching.AudioWriter, result: SubtaskResult, program: Program,
                 tasks: Mapping[int, Subtask], cache: ResultCache | None,
                 after: stitching.Lead | None = None) -> None:
    """Append one chunk's audio: a file (this machine's spool, the cache) is
    copied without being read into memory; bytes (a remote answer) as they are."""
    from gflite.gwasm.cache import ResultCache

    piece = dict(result.outputs)[synth.OUT_NAME]
    if not isinstance(piece, OutputFile):
        if after is not None and after.pcm_bytes:
            raise OutputError(f"{result.name}'s audio came as bytes after its first audio was written")
        writer.add(piece)
    else:
        try:
            try:
                writer.add_file(piece, after, tag=result.index)
            except StaleError:  # its entry was rewritten (more trust): read it anew
                fresh = (cache or ResultCache()).lookup(program, tasks[result.index])
                if fresh is None:
                    raise DamagedError("the entry is gone") from None
                writer.add_file(dict(fresh.outputs)[synth.OUT_NAME], after,  # type: ignore[arg-type]
                                tag=result.index)
        except DamagedError as exc:
            raise _damaged(exc, result.index, program, tasks, cache) from None
    flush(writer)


def verify(writer: stitching.AudioWriter, program: Program, tasks: Mapping[int, Subtask],
            cache: ResultCache | None) -> None:
    """Every cached piece written checked against its entry's sha256 (the
    writer checks them beside its copies, a few pieces behind)."""
    try:
        writer.verify()
    except DamagedError as exc:
        raise _damaged(exc, None, program, tasks, cache) from None


def _damaged(exc: DamagedError, index: int | None, program: Program, tasks: Mapping[int, Subtask],
             cache: ResultCache | None) -> OutputError:
    """A cache entry that changed on disk since its header was read: removed
    (the chunk its check was tagged with, else ``index``'s), and the run fails."""
    from gflite.gwasm.cache import ResultCache

    if isinstance(exc.tag, int) and exc.tag in tasks:
        index = exc.tag
    if index is None:
        return OutputError("cached audio was damaged; run again with --no-cache")
    (cache or ResultCache()).drop(program, tasks[index])
    return OutputError(f"the cached audio of {tasks[index].name} was damaged; it was removed, "
                       "run again to make it anew")


def flush(writer: stitching.AudioWriter) -> None:
    """Push a streamed piece out now: a player downstream starts on the first chunk."""
    stream = getattr(writer, "stream", None)
    if stream is None:
        return
    try:
        stream.flush()
    except BrokenPipeError:
        raise ReaderGone(f"the program reading {getattr(writer, 'name', 'stdout')} closed the pipe") from None
    except OSError as e:
        raise OutputError(f"cannot write to {getattr(writer, 'name', 'stdout')}: {e.strerror or e}") from None


def open_writer(job: Job, stdout: BinaryIO | None) -> stitching.AudioWriter | None:
    output, rate = job.output, job.options.voice.rate
    if output == DISCARD:
        return None

    from gflite import stitching
    from gflite.book_suffixes import audiobook_format

    def tags() -> Tags:
        from gflite import audiobook

        return job.book.tags if job.book is not None else audiobook.Tags(
            title=Path(job.source.value).stem if job.source.kind == "file" else "")

    if job.split:
        from gflite.bookwriter import ChapterSplitWriter

        return ChapterSplitWriter(Path(output), job.split_format, rate, tags())
    if job.book is not None and job.book.anchors is not None:
        from gflite.bookwriter import ReadAlongWriter

        return ReadAlongWriter(Path(output), Path(job.source.value), job.book.anchors, rate)
    kind = audiobook_format(output) if output != STDOUT else None
    if kind is not None:
        from gflite.bookwriter import AudiobookWriter

        if os.path.isdir(output):
            example = os.path.join(output, f"book.{kind}")
            raise OutputError(f"output {output} is a directory; give a file name such as {example}")
        return AudiobookWriter(Path(output), kind, rate, tags())
    if output != STDOUT and os.path.isdir(output):
        raise OutputError(f"output {output} is a directory; give a file name such as {os.path.join(output, 'out.wav')}")

    return stitching.open_output(output, stdout=stdout, default_rate=rate)
