"""A :class:`~gflite.timings.Timeline` as SRT, WebVTT or JSON, written atomically.

SRT and VTT have one cue per sentence (flite's utterances), or one per word
with ``words=True``. VTT sentence cues carry a timestamp tag before each
word after the first (``<00:00:01.250><c>word</c>``), so a player can
highlight the word being said. JSON has one record per word and one per
sentence, for tools. Texts are the source's own characters and spans index
the source when the timeline knows its origins (see ``gflite.timings``).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gflite import outputs
from gflite.errors import OutputError, UsageError
from gflite.timings import SentenceTime, Timeline, WordTime, one_line

FORMATS = (".srt", ".vtt")

# What the JSON's spans index: the source (the decoded input, or a book's own
# text), or, where gflite rewrites the text (-ssml, --replace), the text flite read.
SPANS_SOURCE = "source"
SPANS_READ = "read"


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
    return one_line(text).replace("-->", "->")


def _vtt_escape(text: str) -> str:
    return _html(_cue_text(text))


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
            body = _karaoke(timeline, cue)
        else:
            body = _vtt_escape(cue.text)
        out.append(f"{head}\n{body}\n")
    return "\n".join(out)


def _karaoke(timeline: Timeline, sentence: SentenceTime) -> str:
    """A sentence cue's body: each word in a ``<c>`` tag, a timestamp tag before
    each word after the first, and what lies between two words (white space, a
    dash) as in the text."""
    rate, text = timeline.sample_rate, _spanned(timeline)
    out, at = [], None
    for n, w in enumerate(sentence.words):
        span = _span(timeline, w)
        if n:
            between = " "  # a word flite gave no position
            if at is not None and span is not None and span[0] >= at:
                between = one_line(text[at:span[0]], strip=False)
            out.append(_html(between) + f"<{_clock(w.start, rate, '.')}>")
        out.append(f"<c>{_vtt_escape(w.text)}</c>")
        at = span[1] if span is not None else None
    return "".join(out)


def _spanned(timeline: Timeline) -> str:
    """The text spans index: the source, or else the text flite read."""
    return timeline.origins.source if timeline.origins is not None else timeline.text


def _span(timeline: Timeline, t: WordTime | SentenceTime) -> tuple[int, int] | None:
    """Its span in the text spans index: the source, or else the text flite read."""
    return t.source_span if timeline.origins is not None else t.span


def records(timeline: Timeline) -> dict[str, object]:
    """The JSON document: the sample rate, the audio's length in samples, chapters,
    what spans index, one record per sentence and one per word, and the text
    the spans index (last: a book's is long)."""
    rate = timeline.sample_rate
    source = timeline.origins is not None

    def span(t: WordTime | SentenceTime) -> list[int] | None:
        s = _span(timeline, t)
        return list(s) if s is not None else None

    def chapter(t: WordTime | SentenceTime) -> dict[str, int]:
        return {"chapter": t.chapter} if t.chapter is not None else {}

    def clock(first: int, end: int, prefix: str = "") -> dict[str, float | int]:
        """[first, end) samples, in seconds and in samples."""
        return {f"{prefix}start": first / rate, f"{prefix}end": end / rate,
                f"{prefix}start_sample": first, f"{prefix}end_sample": end}

    return {
        "sample_rate": rate,
        "samples": timeline.samples,
        "chapters": timeline.chapters,
        "spans": SPANS_SOURCE if source else SPANS_READ,
        "sentences": [
            {
                "index": s.index,
                **chapter(s),
                **clock(s.start, s.end),
                **clock(*s.audio, prefix="audio_"),
                "text": s.text,
                "span": span(s),
            }
            for s in timeline.sentences
        ],
        "words": [
            {
                **chapter(w),
                "sentence": w.sentence,
                **clock(w.start, w.end),
                "text": w.text,
                "span": span(w),
            }
            for w in timeline.words
        ],
        "text": _spanned(timeline),
    }


def check_writable(path: str) -> None:
    """Before any work: a read-along file must be able to go where it is asked to."""
    target = outputs.resolve(path)
    if target.stream:
        return
    outputs.check_file_place(target.path, "; give a file name")


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
    """``records`` as JSON, one sentence or word a line (a book has hundreds of thousands)."""
    doc = records(timeline)
    lists = {key: doc.pop(key) for key in ("sentences", "words")}
    text = json.dumps(doc.pop("text"), ensure_ascii=False)
    head = json.dumps(doc, ensure_ascii=False)[:-1]
    body = ", ".join(f'"{key}": [\n' + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]"
                     for key, rows in lists.items() if isinstance(rows, list))
    return f'{head}, {body},\n"text": {text}}}\n'

