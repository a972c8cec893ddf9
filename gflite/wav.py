"""The WAV container as gflite reads and writes it: 16-bit PCM, a canonical
44-byte header, and the pieces flite writes parsed without trusting their
own lengths (a header that says more than the file holds is an error, and a
streamed WAV's "length unknown" runs to the end)."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from gflite.errors import OutputError

# RIFF sizes are 32-bit: the whole file minus 8 bytes must fit.
MAX_WAV_DATA_BYTES = 0xFFFFFFFF - 36
UNKNOWN_LENGTH = 0xFFFFFFFF  # "length unknown", what ffmpeg writes to a pipe
HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")  # canonical 44-byte PCM header
_READ_AHEAD = 256  # what parse_wav_file reads first: every chunk header of a usual WAV


@dataclass(frozen=True)
class WavFormat:
    """The PCM layout of a WAV stream: rate, channels, bytes per sample."""
    sample_rate: int
    channels: int = 1
    sample_width: int = 2  # bytes per sample

    @property
    def block_align(self) -> int:
        return self.channels * self.sample_width

    @property
    def byte_rate(self) -> int:
        return self.sample_rate * self.block_align

    def describe(self) -> str:
        return f"{self.sample_rate} Hz, {self.channels} channel(s), {8 * self.sample_width}-bit"


def parse_wav(data: bytes | bytearray | memoryview, *, name: str = "piece") -> tuple[WavFormat, memoryview]:
    """The format and PCM samples of a RIFF/WAVE file (zero-copy view).

    Walks the chunks to find ``fmt `` and ``data`` rather than assuming a
    44-byte header. The header's byte rate is not checked: flite writes a
    stale one when it appends utterances (e.g. 32000 for 8 kHz kal).
    """
    mv = memoryview(data).cast("B")
    if len(mv) < 12 or mv[0:4] != b"RIFF" or mv[8:12] != b"WAVE":
        raise OutputError(f"{name} is not a WAV file (no RIFF/WAVE header)")
    pos, fmt = 12, None
    while pos + 8 <= len(mv):
        cid, size = bytes(mv[pos : pos + 4]), struct.unpack_from("<I", mv, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt = _parse_fmt(mv[body : body + size], name)
        elif cid == b"data":
            if fmt is None:
                raise OutputError(f"{name}: WAV data comes before its format chunk")
            avail = len(mv) - body
            if size == UNKNOWN_LENGTH:  # a streamed WAV: the data runs to the end
                size = avail - avail % fmt.block_align
            if size > avail:
                raise OutputError(f"{name}: WAV data is truncated ({avail} of {size} bytes)")
            if size % fmt.block_align:
                raise OutputError(f"{name}: WAV data is not a whole number of samples")
            return fmt, mv[body : body + size]
        pos = body + size + (size & 1)
    raise OutputError(f"{name}: WAV file has no {'data' if fmt else 'fmt'} chunk")


def parse_wav_file(fd: int, offset: int, size: int, *, name: str = "piece") -> tuple[WavFormat, int, int]:
    """:func:`parse_wav` for the ``size`` bytes at ``offset`` of an open file,
    reading only chunk headers: (format, absolute offset of the PCM, its bytes).
    flite's 44-byte header comes in the first read (a book's rerun parses
    every piece twice: its length for the progress, then to copy it)."""
    ahead = os.pread(fd, min(size, _READ_AHEAD), offset) if size > 0 else b""

    def read(at: int, n: int) -> bytes:
        n = max(0, min(n, offset + size - at))
        if at - offset + n <= len(ahead):
            return ahead[at - offset : at - offset + n]
        return os.pread(fd, n, at) if n else b""

    head = read(offset, 12)
    if len(head) < 12 or head[0:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise OutputError(f"{name} is not a WAV file (no RIFF/WAVE header)")
    end = offset + size
    pos, fmt = offset + 12, None
    while pos + 8 <= end:
        chunk = read(pos, 8)
        if len(chunk) < 8:
            break
        cid, n = chunk[:4], struct.unpack_from("<I", chunk, 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            fmt = _parse_fmt(memoryview(read(body, min(n, 64))), name)
        elif cid == b"data":
            if fmt is None:
                raise OutputError(f"{name}: WAV data comes before its format chunk")
            avail = end - body
            if n == UNKNOWN_LENGTH:
                n = avail - avail % fmt.block_align
            if n > avail:
                raise OutputError(f"{name}: WAV data is truncated ({avail} of {n} bytes)")
            if n % fmt.block_align:
                raise OutputError(f"{name}: WAV data is not a whole number of samples")
            return fmt, body, n
        pos = body + n + (n & 1)
    raise OutputError(f"{name}: WAV file has no {'data' if fmt else 'fmt'} chunk")


def _parse_fmt(body: memoryview, name: str) -> WavFormat:
    if len(body) < 16:
        raise OutputError(f"{name}: WAV format chunk is too short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag in the GUID
        tag = struct.unpack_from("<H", body, 24)[0]
    if tag != 1 or bits != 16 or channels < 1 or rate < 1:
        raise OutputError(
            f"{name}: unsupported WAV format (tag {tag}, {bits}-bit, {channels} channel(s), "
            f"{rate} Hz); expected 16-bit PCM"
        )
    return WavFormat(sample_rate=rate, channels=channels, sample_width=2)


def wav_header(fmt: WavFormat, data_bytes: int) -> bytes:
    riff = UNKNOWN_LENGTH if data_bytes == UNKNOWN_LENGTH else 36 + data_bytes
    return HEADER.pack(
        b"RIFF", riff, b"WAVE", b"fmt ", 16, 1, fmt.channels, fmt.sample_rate,
        fmt.byte_rate, fmt.block_align, 8 * fmt.sample_width, b"data", data_bytes,
    )
