"""SSML for flite 2.2: named prosody made numeric, breaks made exact silence,
and long SSML cut into pieces that run in parallel.

flite 2.2's SSML reader (``src/synth/cst_ssml.c``) takes ``<prosody rate=X>``
as ``local_duration_stretch = 1 / atof(X)`` and ``volume=X`` as ``local_gain =
atof(X) / 100``. A named value (``slow``) or a percentage (``80%``) reads as 0
or as 80: ``rate="slow"`` stretches every segment by 1/0 and flite never ends
(native flite too), ``rate="80%"`` speaks 80 times too fast, ``volume="loud"``
is silence. :func:`translate_prosody` rewrites them to the numbers flite reads
(rate a multiplier, volume 0-100 and more), before any flite sees them.

flite marks ``<break>`` on the token before it (a phrase break) but never
reads its ``time`` or ``strength``. :func:`pieces` cuts the SSML at every
break and writes the break as exact silence between the pieces' audio; a
break inside an element closes the elements open there and opens them again
in the next piece, so their prosody and voice carry on. Between breaks, the
SSML is cut only at the top level (no tag spans the cut) after a sentence end,
where flite ends an utterance anyway, into pieces of about ``target_chars``.
Each piece is a whole document: the original ``<speak ...>`` opening and
closing wrap it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from gflite.pauses import MAX_SECONDS

RATES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.3, "x-fast": 1.7}
VOLUMES = {"silent": 0.0, "x-soft": 30.0, "soft": 60.0, "medium": 100.0, "default": 100.0,
           "loud": 130.0, "x-loud": 160.0}  # fmt: skip
# Seconds of silence for <break strength=...>; a bare <break/> is "medium".
STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.8, "x-strong": 1.2}
MIN_RATE, MAX_RATE = 0.25, 4.0  # beyond these flite's durations are unusable (or endless)
MAX_VOLUME = 400.0

_TAG = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<[^>]*>", re.S)
_NAME = re.compile(r"^<\s*/?\s*([A-Za-z_][\w:.-]*)")
_ATTR = re.compile(r"""([A-Za-z_][\w:.-]*)\s*=\s*("[^"]*"|'[^']*')""")
_SENTENCE_END = re.compile(r"""[.!?:]["')\]]*\s+(?=[A-Z<])""")


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def rate_value(value: str) -> float:
    """An SSML rate as flite's multiplier: named, ``150%``, ``+10%``/``-10%``, or a number."""
    v = value.strip().lower()
    if v in RATES:
        x: float | None = RATES[v]
    elif v.endswith("%"):
        n = _number(v[:-1])
        x = None if n is None else (1 + n / 100 if v[0] in "+-" else n / 100)
    else:
        x = _number(v)
    if x is None or x <= 0:
        return 1.0  # unreadable: speak at the normal rate, never hang
    return min(MAX_RATE, max(MIN_RATE, x))


def volume_value(value: str) -> float:
    """An SSML volume as flite's 0-100 scale (100 is the voice's own level)."""
    v = value.strip().lower()
    if v in VOLUMES:
        return VOLUMES[v]
    if v.endswith("db"):
        n = _number(v[:-2])
        return 100.0 if n is None else min(MAX_VOLUME, 100.0 * 10 ** (n / 20))
    if v.endswith("%"):
        n = _number(v[:-1])
        x = None if n is None else (100 + n if v[0] in "+-" else n)
    else:
        x = _number(v)
        x = None if x is None else (100 + x if v[0] in "+-" else x)
    return 100.0 if x is None else min(MAX_VOLUME, max(0.0, x))


def _prosody(tag: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name, quoted = m.group(1), m.group(2)[1:-1]
        if name.lower() == "rate":
            return f'{name}="{rate_value(quoted):g}"'
        if name.lower() == "volume":
            return f'{name}="{volume_value(quoted):g}"'
        return m.group(0)

    return _ATTR.sub(sub, tag)


def translate_prosody(ssml: str) -> str:
    """``ssml`` with every ``<prosody>`` rate and volume as the number flite 2.2 reads."""
    return _TAG.sub(lambda m: _prosody(m.group()) if _tag_name(m.group()) == "prosody" else m.group(), ssml)


def map_text(ssml: str, fn: Callable[[str], tuple[str, int]]) -> tuple[str, int]:
    """``fn`` applied to the text between tags only (``--replace`` must not touch
    a tag's name or attributes); returns the new SSML and the sum of ``fn``'s counts."""
    out, total, pos = [], 0, 0
    for m in _TAG.finditer(ssml):
        text, n = fn(ssml[pos : m.start()])
        out += [text, m.group()]
        total += n
        pos = m.end()
    text, n = fn(ssml[pos:])
    return "".join(out) + text, total + n


def _tag_name(tag: str) -> str:
    m = _NAME.match(tag)
    return m.group(1).lower() if m else ""


def break_seconds(tag: str) -> float:
    """Silence for a ``<break>`` tag: its ``time`` (``500ms``, ``1.5s``), else its strength."""
    attrs = {k.lower(): v[1:-1].strip().lower() for k, v in _ATTR.findall(tag)}
    t = attrs.get("time")
    if t:
        n = _number(t[:-2]) if t.endswith("ms") else _number(t[:-1]) if t.endswith("s") else None
        if n is not None:
            return min(MAX_SECONDS, max(0.0, n / 1000 if t.endswith("ms") else n))
    return STRENGTHS.get(attrs.get("strength", "medium"), STRENGTHS["medium"])


@dataclass(frozen=True)
class Piece:
    text: str  # a whole SSML document flite reads on its own
    silence: float  # seconds of silence before it


def pieces(ssml: str, target_chars: int = 4000) -> tuple[Piece, ...]:
    """``ssml`` (prosody translated) cut at its breaks and, between them, at
    top-level sentence ends into pieces of about ``target_chars``."""
    ssml = translate_prosody(ssml)
    tags = list(_TAG.finditer(ssml))
    root = next((m for m in tags if _tag_name(m.group()) and not m.group().startswith(("<?", "<!"))), None)
    if root is not None and _tag_name(root.group()) == "speak" and not root.group().endswith("/>"):
        close = next((m for m in reversed(tags) if m.group().startswith("</") and _tag_name(m.group()) == "speak"),
                     None)
        head_end = root.end()
        tail_start = close.start() if close is not None and close.start() >= head_end else len(ssml)
    else:
        head_end, tail_start = 0, len(ssml)
    head, tail = ssml[:head_end], ssml[tail_start:]
    if not tail.endswith("\n"):
        tail += "\n"

    out: list[Piece] = []
    stack: list[tuple[str, str]] = []  # (name, start tag) of elements open in the body
    body: list[str] = []
    reopen = ""  # start tags of the elements a break cut through
    silence = 0.0
    size = 0

    def cut(next_silence: float) -> None:
        nonlocal body, reopen, silence, size
        closing = "".join(f"</{name}>" for name, _ in reversed(stack))
        text = "".join(body)
        if _TAG.sub("", text).strip():
            out.append(Piece(head + reopen + text + closing + tail, silence))
            silence = next_silence
        else:  # nothing to say: its silence adds to the next piece's
            silence += next_silence
        body, size = [], 0
        reopen = "".join(tag for _, tag in stack)

    def text(a: int, b: int) -> None:
        """Add the text node ssml[a:b], cutting at its sentence ends once the piece
        is big enough (only at the top level: no element may span a cut)."""
        nonlocal size
        if not stack:
            for m in _SENTENCE_END.finditer(ssml, a, min(b + 1, len(ssml))):
                if m.end() <= b and size + m.end() - a >= target_chars:
                    body.append(ssml[a : m.end()])
                    cut(0.0)
                    a = m.end()
        body.append(ssml[a:b])
        size += b - a

    pos = head_end
    for m in _TAG.finditer(ssml, head_end, tail_start):
        text(pos, m.start())
        pos = m.end()
        tag, name = m.group(), _tag_name(m.group())
        if name == "break" and not tag.startswith("</"):
            cut(break_seconds(tag))
            continue
        body.append(tag)
        size += len(tag)
        if tag.startswith(("<?", "<!")) or not name:
            continue
        if tag.startswith("</"):
            while stack:
                if stack.pop()[0] == name:
                    break
        elif not tag.endswith("/>"):
            stack.append((name, tag))
    text(pos, tail_start)
    cut(0.0)
    if not out:  # nothing to say at all: flite's (empty) audio of the whole
        out.append(Piece(ssml if ssml.endswith("\n") else ssml + "\n", 0.0))
    return tuple(out)

