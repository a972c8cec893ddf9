"""A :class:`~gflite.timings.Timeline` as SRT, WebVTT or JSON, written atomically.

SRT and VTT have one cue per sentence (flite's utterances), or one per word
with ``words=True``. VTT sentence cues carry a timestamp tag before each
word after the first (``<00:00:01.250><c>word</c>``), so a player can
highlight the word being said. JSON has one record per word, for tools.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gflite import outputs
from gflite.errors import OutputError, UsageError
from gflite.timings import SentenceTime, Timeline, WordTime

FORMATS = (".srt", ".vtt")


def subtitle_format(path: str) -> str:
    """``srt`` or ``vtt`` from a file name; anything else is a usage error."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--subtitles takes a .srt or .vtt file name, not {path!r}")
    return suffix[1:]


def _clock(samples: int, rate: int, sep: str) -> str:
    ms = (samples * 1000 + rate // 2) // rate  # to the nearest millisecond, in integers
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_text(text: str) -> str:
    # A blank line ends a cue and "-->" starts one; neither may appear inside.
    return " ".join(text.split()).replace("-->", "->")


def _vtt_escape(text: str) -> str:
    return _cue_text(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cues(timeline: Timeline, words: bool) -> Iterable[SentenceTime | WordTime]:
    return timeline.words if words else timeline.sentences


def srt(timeline: Timeline, *, words: bool = False) -> str:
    rate, out = timeline.sample_rate, []
    for n, cue in enumerate(_cues(timeline, words), start=1):
        out.append(f"{n}\n{_clock(cue.start, rate, ',')} --> {_clock(cue.end, rate, ',')}\n{_cue_text(cue.text)}\n")
    return "\n".join(out)


def vtt(timeline: Timeline, *, words: bool = False) -> str:
    rate, out = timeline.sample_rate, ["WEBVTT\n"]
    for cue in _cues(timeline, words):
        head = f"{_clock(cue.start, rate, '.')} --> {_clock(cue.end, rate, '.')}"
        if isinstance(cue, SentenceTime) and len(cue.words) > 1:
            first, *rest = cue.words
            body = "<c>" + _vtt_escape(first.text) + "</c>" + "".join(
                f" <{_clock(w.start, rate, '.')}><c>{_vtt_escape(w.text)}</c>" for w in rest)
        else:
            body = _vtt_escape(cue.text)
        out.append(f"{head}\n{body}\n")
    return "\n".join(out)


def records(timeline: Timeline) -> dict[str, object]:
    """The JSON document: the sample rate, the audio's length in samples, chapters,
    and one record per word."""
    rate = timeline.sample_rate
    return {
        "sample_rate": rate,
        "samples": timeline.samples,
        "chapters": timeline.chapters,
        "words": [
            {
                **({"chapter": w.chapter} if w.chapter is not None else {}),
                "sentence": w.sentence,
                "start": w.start / rate,
                "end": w.end / rate,
                "start_sample": w.start,
                "end_sample": w.end,
                "text": w.text,
                "span": list(w.span) if w.span is not None else None,
            }
            for w in timeline.words
        ],
    }


def check_writable(path: str) -> None:
    """Before any work: a read-along file must be able to go where it is asked to."""
    target = outputs.resolve(path)
    if target.stream:
        return
    if target.path.is_dir():
        raise OutputError(f"{path} is a directory; give a file name")
    if not target.path.parent.is_dir():
        raise OutputError(f"output directory does not exist: {target.path.parent}")


def write(path: str, data: str) -> None:
    """Write ``data`` to ``path`` whole or not at all (temporary file beside it, then a rename)."""
    target = outputs.resolve(path)
    try:
        if target.stream:
            with open(target.path, "w", encoding="utf-8") as f:
                f.write(data)
            return
        where = target.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{target.path.name}.", suffix=outputs.PART_SUFFIX, dir=where)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private
            os.replace(tmp, target.path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


def write_all(timeline: Timeline, *, subtitles: str | None, words: bool, timings: str | None) -> None:
    """The files a job asked for."""
    if subtitles is not None:
        kind = subtitle_format(subtitles)
        write(subtitles, srt(timeline, words=words) if kind == "srt" else vtt(timeline, words=words))
    if timings is not None:
        write(timings, to_json(timeline))


def to_json(timeline: Timeline) -> str:
    """``records`` as JSON, one word a line (a book has hundreds of thousands)."""
    doc = records(timeline)
    words = doc.pop("words")
    assert isinstance(words, list)
    head = json.dumps(doc, ensure_ascii=False)[:-1]
    lines = ",\n".join(json.dumps(w, ensure_ascii=False) for w in words)
    return f'{head}, "words": [\n{lines}\n]}}\n'

