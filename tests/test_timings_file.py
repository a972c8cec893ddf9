"""The timings file flite.wasm writes beside its audio: the parser's caps, and
its word times against native flite's segment end times (-psdur)."""
from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest

from gflite import timings_file
from gflite.timings_file import TimingsError, TokenTime, UtteranceTimes
from oracle import run_native, run_wasm

GOOD = b"gflite-timings 1\nU 100 16000\nW 0 0.220000 0.624467 Hello\nW 6 0.624467 0.965987 th\xe9re\nU 5 8000\n"


def test_parse_a_well_formed_file() -> None:
    assert timings_file.parse(GOOD) == (
        UtteranceTimes(100, 16000, (TokenTime(0, 0.22, 0.624467, "Hello"), TokenTime(6, 0.624467, 0.965987, "th\xe9re"))),
        UtteranceTimes(5, 8000, ()),
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"gflite-timings 2\n",
        b"gflite-timings 1\nW 0 0.1 0.2 x\n",  # a word before any utterance
        b"gflite-timings 1\nU -1 16000\n",
        b"gflite-timings 1\nU 10 0\n",
        b"gflite-timings 1\nU 99999999999 16000\n",
        b"gflite-timings 1\nU 10 16000\nW 0 nan 0.2 x\n",
        b"gflite-timings 1\nU 10 16000\nW 0 0.3 0.2 x\n",  # ends before it starts
        b"gflite-timings 1\nU 10 16000\nW -2 0.1 0.2 x\n",
        b"gflite-timings 1\nU 10 16000\nW 0 0.1 0.2\n",
        b"gflite-timings 1\nU 10 16000\nW 0 0.1 0.2 two words\n",
        b"gflite-timings 1\nU 10 16000\nW 0 1e9 2e9 x\n",
        b"gflite-timings 1\nU 10 16000\nX\n",
        b"gflite-timings 1\nU 10 16000\nW 0 0.1 0.2 " + b"x" * 5000 + b"\n",
    ],
)
def test_malformed_files_are_refused(data: bytes) -> None:
    with pytest.raises(TimingsError):
        timings_file.parse(data)


def test_size_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timings_file, "MAX_BYTES", len(GOOD) - 1)
    with pytest.raises(TimingsError, match="larger"):
        timings_file.parse(GOOD)


TEXT = """\
Hello there. It is 10:30, and 3 people are waiting.

A second paragraph, with "quotes" here! Dr. Ellis paid $12.50 for 2 tickets.
"""


def test_word_ends_match_native_segment_ends(native_flite: str, tmp_path: Path) -> None:
    inputs = {"in.txt": TEXT.encode()}
    result = run_wasm(
        ["-voice", "kal16", "--sets", "timings_file=out.tim", "-f", "in.txt", "-o", "out.wav"],
        inputs, outputs=("out.wav", "out.tim"),
    )
    outputs = dict(result.outputs)
    utterances = timings_file.parse(outputs["out.tim"])
    psdur = run_native(native_flite, ["-voice", "kal16", "-psdur", "-f", "in.txt", "-o", "none"], tmp_path, inputs)
    native = [
        [float(seg.rsplit(":", 1)[1]) for seg in line.split()]
        for line in psdur.stdout.decode().splitlines()
    ]
    assert len(utterances) == len(native) == 4
    with wave.open(io.BytesIO(outputs["out.wav"])) as w:
        assert sum(u.samples for u in utterances) == w.getnframes()
        rate = w.getframerate()
    # -psdur prints milliseconds; allow that rounding plus one sample.
    tolerance = 0.0005 + 1 / rate
    words = 0
    for utt, ends in zip(utterances, native):
        assert utt.sample_rate == rate
        at = -1  # index of the native segment the previous word ended with
        for token in utt.tokens:
            words += 1
            # The word starts where a segment ends (or at 0), after the last word.
            starts = [i for i, e in enumerate(ends) if abs(e - token.start) <= tolerance and i >= at]
            assert token.start < tolerance or starts, (token, ends)
            later = [i for i, e in enumerate(ends) if abs(e - token.end) <= tolerance and i > at]
            assert later, f"{token} ends at no native segment end after #{at}: {ends}"
            at = later[0]
            # The text position points at the token in the input.
            assert TEXT.encode()[token.file_pos:].lstrip(b'"').startswith(token.name.encode())
        # The last word ends at the utterance's last non-pause segment.
        assert at == len(ends) - 2
    assert words == len(TEXT.split())  # every token here has words
