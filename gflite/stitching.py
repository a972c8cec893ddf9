"""Stitch the ordered WAV pieces of a book into one audio file, as they arrive.

A 9-hour book is about 1 GB of 16 kHz PCM, so nothing here holds more than
one piece: samples go straight to disk (or stdout, or an ffmpeg encoder).
Files are written to a temporary name in the target's directory and renamed
only when complete, so an error or Ctrl-C leaves neither a half-written file
nor the temporary one.

Usage::

    with open_output("book.wav") as out:   # fails early: bad dir, format, no ffmpeg
        for wav in pieces:                  # flite's RIFF bytes, in order
            out.add(wav)
            show(out.seconds)
    # leaving the block without an exception publishes book.wav

Between pieces, ``out.add_silence(seconds)`` writes exact zero samples (a
pause), and ``out.begin_chapter(title)`` says the next sample starts a chapter
(recorded by the audiobook writers in :mod:`gflite.bookwriter`, which subclass
these through the ``_codec`` and ``_publish`` hooks; ignored by the others).

Targets: ``*.mp3``, ``*.ogg``, ``*.flac`` (raw PCM piped into ffmpeg, found
through pydub); any other name is WAV, as flite writes (PCM; past the format's
4 GiB its sizes say "unknown", see :class:`WavFileWriter`); ``-`` is WAV
streamed to stdout (sizes 0xFFFFFFFF while unknown, as ffmpeg writes to pipes,
patched at the end if stdout turns out to be a seekable file). FIFOs and
character devices are streamed into like stdout, and symlinks are written
through (see :mod:`gflite.outputs`).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable

from gflite import outputs
from gflite.errors import OutputError, ReaderGone
from gflite.gwasm import spool
from gflite.gwasm.spool import OutputFile
from gflite.wav import (  # noqa: F401  (WavFormat, parse_wav, wav_header: also this module's API)
    HEADER,
    MAX_WAV_DATA_BYTES,
    UNKNOWN_LENGTH,
    WavFormat,
    parse_wav,
    parse_wav_file,
    wav_header,
)

if TYPE_CHECKING:
    import subprocess

# ffmpeg muxer and encoder arguments per extension. Speech is mono and narrow
# band, so modest quality settings are transparent.
ENCODERS: dict[str, tuple[str, ...]] = {
    "mp3": ("-f", "mp3", "-c:a", "libmp3lame", "-q:a", "4"),
    "ogg": ("-f", "ogg", "-c:a", "libvorbis", "-q:a", "4"),
    "flac": ("-f", "flac", "-c:a", "flac"),
}
FORMATS = ("wav", *ENCODERS)


def output_format(target: str | os.PathLike[str]) -> str:
    """``"mp3"``, ``"ogg"`` or ``"flac"`` by extension; anything else is ``"wav"``, as flite writes."""
    ext = Path(target).suffix.lower().lstrip(".")
    return ext if ext in ENCODERS and str(target) != "-" else "wav"


def wav_by_default(target: str | os.PathLike[str]) -> bool:
    """True if ``target`` gets WAV only because its extension names no format (flite's rule)."""
    return str(target) != "-" and Path(target).suffix.lower() != ".wav" and output_format(target) == "wav"


def find_ffmpeg() -> str:
    """The ffmpeg (or avconv) executable pydub would use; OutputError if none."""
    with warnings.catch_warnings():
        # pydub warns about audioop's deprecation on import, and guesses "ffmpeg"
        # with a warning when it finds none; we report that ourselves.
        warnings.simplefilter("ignore")
        from pydub.utils import get_encoder_name  # lazy: only encoded outputs need it

        name = get_encoder_name()
    import shutil  # here: a WAV run never needs it

    path = shutil.which(name)
    if not path:
        raise OutputError(
            "writing .mp3, .ogg or .flac needs ffmpeg, which is not installed "
            "(apt-get install ffmpeg), or write .wav"
        )
    return path


def open_output(
    target: str | os.PathLike[str],
    *,
    stdout: BinaryIO | None = None,
    default_rate: int = 16000,
) -> AudioWriter:
    """Open ``target`` for writing now (so bad paths fail before any synthesis).

    ``default_rate`` is used only if no piece carries audio.
    """
    kind = output_format(target)
    if str(target) == "-":
        return WavStreamWriter(stdout if stdout is not None else sys.stdout.buffer, default_rate)
    where = outputs.resolve(str(target))
    if where.stream:
        if kind == "wav":
            return WavStreamWriter(_open_stream(where), default_rate, name=str(target), owned=True)
        return EncodedWriter(where.path, kind, default_rate, direct=True)
    if kind == "wav":
        return WavFileWriter(where.path, default_rate)
    return EncodedWriter(where.path, kind, default_rate)


def _open_stream(where: outputs.Target) -> BinaryIO:
    """Open a FIFO or device for writing, as flite does (a FIFO waits for its reader)."""
    try:
        return open(where.path, "wb", buffering=0)  # noqa: SIM115 (closed by its writer)
    except OSError as e:
        raise OutputError(f"cannot write to {where.name}: {e.strerror or e}") from None


def stitch(
    pieces: Iterable[bytes],
    target: str | os.PathLike[str],
    *,
    stdout: BinaryIO | None = None,
    on_piece: Callable[[AudioWriter], None] | None = None,
) -> float:
    """Write ``pieces`` (WAV bytes, in order) to ``target``; returns seconds of audio."""
    with open_output(target, stdout=stdout) as out:
        for wav in pieces:
            out.add(wav)
            if on_piece is not None:
                on_piece(out)
    return out.seconds


@dataclass(frozen=True)
class Lead:
    """What :meth:`AudioWriter.lead` wrote: the first ``pcm_bytes`` of the
    next piece's samples, whose sha256 is ``sha256``."""

    format: WavFormat | None
    pcm_bytes: int
    sha256: str


class AudioWriter:
    """Takes WAV pieces in order; ``close()`` publishes, ``abort()`` leaves nothing."""

    def __init__(self, default_rate: int) -> None:
        self.format: WavFormat | None = None
        self.samples = 0  # sample frames written
        self.pieces = 0
        self._default = WavFormat(default_rate)
        self._done = False
        self._checker: spool.Checker | None = None  # cache pieces' checks, made on the first

    # A stream's bytes are out as soon as they are written: it checks each
    # cache piece before the next; a file is published only by close().
    streams = False

    @property
    def seconds(self) -> float:
        """Audio written so far, in seconds."""
        return self.samples / self.format.sample_rate if self.format else 0.0

    @property
    def data_bytes(self) -> int:
        return self.samples * (self.format.block_align if self.format else 2)

    @property
    def unknown_length(self) -> bool:
        """True if the file's header cannot state its length (a WAV past 4 GiB)."""
        return False

    def add(self, wav: bytes | bytearray | memoryview) -> float:
        """Append one piece's samples; returns the seconds it added."""
        if self._done:
            raise OutputError("output is already closed")
        fmt, pcm = parse_wav(wav, name=f"audio piece {self.pieces + 1}")
        self.pieces += 1
        if not len(pcm):
            return 0.0  # flite's empty wave claims 16 kHz whatever the voice: ignore it
        if self.format is None:
            self.format = fmt
            self._start(fmt)
        elif fmt != self.format:
            raise OutputError(
                f"audio piece {self.pieces} is {fmt.describe()}, "
                f"but earlier pieces are {self.format.describe()}"
            )
        self._write(pcm)
        frames = len(pcm) // fmt.block_align
        self.samples += frames
        return frames / fmt.sample_rate

    def add_silence(self, seconds: float) -> int:
        """Append ``seconds`` of digital silence (zero samples, rounded to whole
        frames); returns the frames added. Before any audio, the voice's rate is used."""
        if self._done:
            raise OutputError("output is already closed")
        if self.format is None:
            self.format = self._default
            self._start(self.format)
        frames = round(seconds * self.format.sample_rate)
        step = self.format.sample_rate * self.format.block_align  # a second at a time
        left = frames * self.format.block_align
        while left > 0:
            n = min(left, step)
            self._write(memoryview(bytes(n)))
            left -= n
        self.samples += frames
        return frames

    def begin_chapter(self, title: str) -> None:
        """The next sample starts a chapter. Formats with chapter marks record it
        (:class:`gflite.bookwriter.AudiobookWriter`); WAV and the others have none."""

    def lead(self, item: OutputFile) -> Lead:
        """Write ``item`` (a verified file) as the start of the next piece:
        ``add_file(piece, after=lead)`` then checks that the piece begins with
        exactly these samples and writes only the rest. (A stream's first
        audio, ahead of its first chunk: see gflite.chunkstream.lead_end.)"""
        fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            fmt, start, length = parse_wav_file(fd, item.offset, item.size, name="the first audio")
            digest = spool.digest_range(fd, start, length)
        finally:
            os.close(fd)
        self.add_file(item)
        self.pieces -= 1  # the piece it begins is still to come
        return Lead(fmt if length else None, length, digest)

    def add_file(self, item: OutputFile, after: Lead | None = None, *, tag: object = None) -> float:
        """Append one piece held in a file (see :mod:`gflite.gwasm.spool`) without
        reading it into memory: a verified spool file is copied by the kernel,
        a cache entry too, its sha256 checked beside the copy and the next ones
        (:class:`~gflite.gwasm.spool.Checker`): a mismatch raises DamagedError,
        carrying ``tag``, from a later ``add_file``, :meth:`verify` or
        :meth:`close`, always before anything is published (a stream, whose
        bytes are out at once, checks each piece before the next). Returns the
        seconds it added."""
        if self._done:
            raise OutputError("output is already closed")
        name = f"audio piece {self.pieces + 1}"
        try:
            src = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise OutputError(f"cannot read {name}: {e.strerror or e}") from None
        try:
            if item.inode and os.fstat(src).st_ino != item.inode:
                raise spool.StaleError(f"{item.path} was replaced since it was looked up")
            fmt, start, length = parse_wav_file(src, item.offset, item.size, name=name)
            self.pieces += 1
            if length and self.format is None:
                self.format = fmt
                self._start(fmt)
            elif length and fmt != self.format:
                raise OutputError(
                    f"audio piece {self.pieces} is {fmt.describe()}, "
                    f"but earlier pieces are {self.format.describe()}"  # type: ignore[union-attr]
                )
            skip = 0
            if after is not None and after.pcm_bytes:
                if (fmt != after.format or length < after.pcm_bytes
                        or spool.digest_range(src, start, after.pcm_bytes) != after.sha256):
                    raise OutputError(f"{name} does not begin with the audio already written for it")
                skip = after.pcm_bytes
            checker = None
            if not item.verified:  # hashed from its own descriptor beside the copy
                checker = self._checker = self._checker or spool.Checker()
                checker.submit(os.dup(src), item.offset, item.size, item.sha256, tag)
            if length > skip:
                self._write_range(src, start + skip, length - skip)
            if checker is not None:
                if self.streams:
                    checker.settle()
                else:
                    checker.catch_up()
        finally:
            os.close(src)
        if length <= skip:
            return 0.0
        frames = (length - skip) // fmt.block_align
        self.samples += frames
        return frames / fmt.sample_rate

    def verify(self) -> None:
        """Every cache piece added so far checked; DamagedError (with its
        ``tag``) if one was not what its entry recorded."""
        if self._checker is not None:
            self._checker.settle()

    def _write_range(self, src: int, start: int, length: int) -> None:
        """Write ``length`` bytes at ``start`` of ``src``; subclasses with a real
        file descriptor let the kernel copy them."""
        pos, end = start, start + length
        while pos < end:
            block = os.pread(src, min(spool.BLOCK, end - pos), pos)
            if not block:
                raise OutputError("an audio piece's file ended early")
            self._write(memoryview(block))
            pos += len(block)

    def close(self) -> None:
        """Finish the file and publish it under its real name."""
        if self._done:
            return
        if self.format is None:
            self.format = self._default
            self._start(self.format)
        try:
            self.verify()
            if self._checker is not None:
                self._checker.close()
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        """Drop everything written; safe to call more than once."""
        if not self._done:
            self._done = True
            try:
                if self._checker is not None:
                    self._checker.close()
            finally:
                self._discard()

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # Subclasses: _start once the format is known, _write samples, _finish, _discard.
    def _start(self, fmt: WavFormat) -> None:
        raise NotImplementedError

    def _write(self, pcm: memoryview) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


# Parts older than this process cannot be this run's.
_RUN_STARTED = time.time()


class _DirectOutput:
    """A stream target (FIFO, device) that ffmpeg writes itself: nothing to publish or remove."""

    def __init__(self, target: Path) -> None:
        self.target = self.tmp = target

    def publish(self) -> None:
        pass

    def discard(self) -> None:
        pass


class _TempFileOutput:
    """A temporary file beside ``target``, renamed onto it when complete."""

    def __init__(self, target: Path) -> None:
        self.target = target
        parent = target.parent
        outputs.check_file_place(target)
        try:
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=outputs.PART_SUFFIX)
        except OSError as e:
            raise OutputError(f"cannot write to {parent}: {e.strerror or e}") from None
        outputs.lock(fd)
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "w+b")
        # Parts a killed run (kill -9) left of this same output; ours is locked.
        outputs.remove_stale_parts(target, before=_RUN_STARTED)

    def publish(self) -> None:
        # No fsync: the rename makes the file appear whole to every process,
        # which is the promise; waiting for the disk (1.4 s for a 9-hour book
        # here, more than the rest of a cached rerun) would add durability
        # across a power cut that flite, cp and ffmpeg do not give either.
        self.file.flush()
        self.file.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp made it private
        try:
            os.replace(self.tmp, self.target)
        except OSError as e:
            raise OutputError(f"cannot write {self.target}: {e.strerror or e}") from None

    def discard(self) -> None:
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class WavFileWriter(AudioWriter):
    """PCM WAV on disk: placeholder header, samples, then the real sizes."""

    def __init__(self, target: Path, default_rate: int = 16000) -> None:
        super().__init__(default_rate)
        self._out = _TempFileOutput(target)
        self._out.file.write(bytes(HEADER.size))

    @property
    def target(self) -> Path:
        return self._out.target

    def _start(self, fmt: WavFormat) -> None:
        pass

    def _write(self, pcm: memoryview) -> None:
        try:
            self._out.file.write(pcm)
        except OSError as e:
            raise OutputError(f"cannot write {self.target}: {e.strerror or e}") from None

    def _write_range(self, src: int, start: int, length: int) -> None:
        f = self._out.file
        try:
            f.flush()
            spool.reserve(f.fileno(), f.tell(), length)
            spool.copy_range(src, start, length, f.fileno())
            f.seek(0, os.SEEK_END)
        except OSError as e:
            raise OutputError(f"cannot write {self.target}: {e.strerror or e}") from None

    @property
    def unknown_length(self) -> bool:
        """True once the audio is past what a WAV header's 32-bit sizes can say.

        Such a book (about 37 hours at 16 kHz) is still written whole, with
        0xFFFFFFFF sizes: ffmpeg and sox read that as "to the end of the file",
        as they do for WAV on a pipe. Refusing it would waste a day of
        synthesis, and no estimate from the text is exact enough to refuse it
        before starting."""
        return self.data_bytes > MAX_WAV_DATA_BYTES

    def _finish(self) -> None:
        assert self.format is not None
        f = self._out.file
        try:
            f.seek(0)
            f.write(wav_header(self.format, UNKNOWN_LENGTH if self.unknown_length else self.data_bytes))
        except OSError as e:
            raise OutputError(f"cannot write {self.target}: {e.strerror or e}") from None
        self._publish()

    def _publish(self) -> None:
        self._out.publish()

    def _discard(self) -> None:
        self._out.discard()


class WavStreamWriter(AudioWriter):
    """WAV to a stream (stdout) that may not seek: header first, sizes unknown.

    Readers (ffmpeg, sox, aplay) take 0xFFFFFFFF sizes as "read to the end".
    If the stream can seek after all (stdout redirected to a file), the real
    sizes are patched in at the end. There is no size limit: past 4 GiB the
    header just keeps saying "unknown".
    """

    streams = True

    def __init__(self, stream: BinaryIO, default_rate: int = 16000, *, name: str = "stdout",
                 owned: bool = False) -> None:
        super().__init__(default_rate)
        self.stream = stream
        self.name = name  # for messages
        self._owned = owned  # a FIFO or device we opened: closed at the end
        self._origin: int | None = None

    def _start(self, fmt: WavFormat) -> None:
        try:
            if self.stream.seekable():
                self._origin = self.stream.tell()
        except OSError:
            self._origin = None
        self._send(wav_header(fmt, UNKNOWN_LENGTH))

    def _write(self, pcm: memoryview) -> None:
        self._send(pcm, flush=True)  # a player downstream starts on the first piece

    def _write_range(self, src: int, start: int, length: int) -> None:
        try:
            fd = self.stream.fileno()
        except (OSError, AttributeError, ValueError):  # io.BytesIO and the like
            super()._write_range(src, start, length)
            return
        try:
            self.stream.flush()
            spool.copy_range(src, start, length, fd)
            if self._origin is not None:
                self.stream.seek(0, os.SEEK_END)
        except BrokenPipeError:
            raise ReaderGone(f"the program reading {self.name} closed the pipe") from None
        except OSError as e:
            raise OutputError(f"cannot write to {self.name}: {e.strerror or e}") from None

    def _send(self, data: bytes | memoryview, flush: bool = False) -> None:
        try:
            self.stream.write(data)
            if flush:
                self.stream.flush()
        except BrokenPipeError:
            raise ReaderGone(f"the program reading {self.name} closed the pipe") from None
        except OSError as e:
            raise OutputError(f"cannot write to {self.name}: {e.strerror or e}") from None

    def _finish(self) -> None:
        assert self.format is not None
        try:
            if self._origin is not None and self.data_bytes <= MAX_WAV_DATA_BYTES:
                end = self.stream.tell()
                self.stream.seek(self._origin)
                self.stream.write(wav_header(self.format, self.data_bytes))
                self.stream.seek(end)
            self.stream.flush()
            if self._owned:
                self.stream.close()
        except BrokenPipeError:
            raise ReaderGone(f"the program reading {self.name} closed the pipe") from None
        except OSError as e:
            raise OutputError(f"cannot write to {self.name}: {e.strerror or e}") from None

    def _discard(self) -> None:
        try:
            self.stream.flush()  # what was sent is sent; stop cleanly
            if self._owned:
                self.stream.close()
        except OSError:
            pass


class EncodedWriter(AudioWriter):
    """Raw PCM piped into ffmpeg, which encodes to a temporary file beside the target."""

    def __init__(self, target: Path, kind: str, default_rate: int = 16000, *, direct: bool = False) -> None:
        super().__init__(default_rate)
        self.kind = kind
        self.streams = direct  # ffmpeg writes a FIFO or device as it encodes
        self.ffmpeg = find_ffmpeg()
        # direct: a FIFO or device, which ffmpeg opens and writes itself.
        self._out: _TempFileOutput | _DirectOutput = _DirectOutput(target) if direct else _TempFileOutput(target)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def target(self) -> Path:
        return self._out.target

    def _start(self, fmt: WavFormat) -> None:
        cmd = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "s16le", "-ar", str(fmt.sample_rate), "-ac", str(fmt.channels), "-i", "pipe:0",
            *self._codec(fmt), str(self._out.tmp),
        ]  # fmt: skip
        import subprocess  # here: a WAV run never starts a process

        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as e:
            raise OutputError(f"cannot run {self.ffmpeg}: {e.strerror or e}") from None

    def _codec(self, fmt: WavFormat) -> tuple[str, ...]:
        """ffmpeg's codec and muxer arguments for this output."""
        return ENCODERS[self.kind]

    def _write(self, pcm: memoryview) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(pcm)
        except OSError:  # BrokenPipeError included: ffmpeg is gone, and that is our failure to write
            self._proc.wait()
            raise OutputError(f"ffmpeg stopped while encoding {self.target}: {self._error()}") from None

    def _write_range(self, src: int, start: int, length: int) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.flush()
            spool.copy_range(src, start, length, self._proc.stdin.fileno())
        except OSError:
            self._proc.wait()
            raise OutputError(f"ffmpeg stopped while encoding {self.target}: {self._error()}") from None

    def _finish(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        if self._proc.wait() != 0:
            raise OutputError(f"ffmpeg could not encode {self.target}: {self._error()}")
        self._log.close()
        self._publish()

    def _publish(self) -> None:
        self._out.publish()

    def _error(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        if lines:
            return lines[-1]
        code = self._proc.returncode if self._proc else None
        if code is not None and code < 0:
            return f"killed by signal {-code}"
        return f"exit code {code if code is not None else '?'}"

    def _discard(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
        self._log.close()
        self._out.discard()
