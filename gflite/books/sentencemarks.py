"""A chapter document with an ``id`` on each sentence read aloud, for a read-along EPUB.

Each sentence is a :class:`gflite.books.anchors.Place` (its first and last
characters' offsets in the decoded document) and gets a ``<span id="gfsN">``
around it, inserted as text into the document as it stands: nothing else in
it changes (no re-serialising). Ids already in the document are kept; ours
take a prefix no existing id has (``gfs``, else ``gfsx``...).

Where a sentence crosses an inline element (``<p>He said <em>hi. Then</em>
left.</p>``), the element is split at the sentence boundary: closed before
the span and opened again inside it (without its ``id``, which stays on the
first part), so each sentence is one span whose text is the sentence::

    <p><span id="gfs1">He said <em>hi.</em></span><em> </em><span id="gfs2"><em>Then</em> left.</span></p>

Only phrasing elements (``em``, ``a``, ``span``...) are split. A sentence
that crosses anything else (table cells, say) points at the smallest element
holding it all instead, with that element's id (one is added if it has
none): a reader then highlights that element.

The result is checked to be well-formed XML before it is used.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass

from gflite.books import xmlsafe
from gflite.books.anchors import Place
from gflite.books.xhtml import CHARREF, Tag

PREFIX = "gfs"
_PHRASING = {"a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "del", "dfn", "em", "i", "ins", "kbd",
             "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var"}
_IN_SPAN = _PHRASING | {"br", "img", "wbr"}  # what a span may hold (and gflite reads)
_ID = re.compile(r"""\sid\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_NAME = re.compile(r"<([^\s/>]+)")
_XML_ENCODING = re.compile(r"""^(\s*<\?xml[^>]*?encoding\s*=\s*["'])([^"']+)""")


@dataclass(frozen=True)
class Marked:
    text: str  # the document with its spans (and the stylesheet link)
    ids: dict[int, str]  # sentence number -> the fragment id that holds it


def prefix_for(existing: set[str]) -> str:
    prefix = PREFIX
    while any(re.fullmatch(re.escape(prefix) + r"\d+", i) for i in existing):
        prefix += "x"
    return prefix


def mark(source: str, tags: tuple[Tag, ...], places: dict[int, Place], *, name: str,
         stylesheet: str | None = None) -> Marked:
    """``source`` with a span (or an id) for each of ``places`` (by sentence
    number); ``stylesheet``, an href, is linked in its head."""
    existing = {m.group(1) or m.group(2) or "" for t in tags if t.depth >= 0
                for m in [_ID.search(source, t.start, t.end)] if m}
    prefix = prefix_for(existing)
    starts = [t.start for t in tags]
    stacks = _stacks(tags)
    inserts: list[tuple[int, int, str]] = []  # (offset, order, text)

    def insert(at: int, text: str) -> None:
        inserts.append((at, len(inserts), text))

    ids: dict[int, str] = {}
    given: dict[int, str] = {}  # tag start -> the id that element has or was given
    for number, place in sorted(places.items(), key=lambda kv: kv[1].first):
        first, end = place.first, _past(source, place.last)
        above_a, above_b = stacks[bisect_left(starts, first)], stacks[bisect_left(starts, end)]
        common = 0
        while common < min(len(above_a), len(above_b)) and above_a[common] == above_b[common]:
            common += 1
        split_a, split_b = list(above_a[common:]), list(above_b[common:])
        # An element the sentence starts or ends with goes inside the span whole: no empty halves.
        while split_a and split_a[-1].end == first and split_a[-1].name in _PHRASING:
            first = split_a.pop().start
        at = bisect_left(starts, end)
        while (split_b and split_b[-1].name in _PHRASING and at < len(tags) and tags[at].start == end
               and tags[at].depth < 0):
            split_b.pop()
            end = tags[at].end
            at += 1
        inside = tags[bisect_left(starts, first):bisect_left(starts, end)]
        if all(t.name in _PHRASING for t in split_a + split_b) and all(t.name in _IN_SPAN for t in inside):
            span_id = f"{prefix}{number}"
            insert(first, _closes(source, split_a) + f'<span id="{span_id}">' + _opens(source, split_a))
            insert(end, _closes(source, split_b) + "</span>" + _opens(source, split_b))
            ids[number] = span_id
        elif common:
            holder = above_a[common - 1]
            if holder.start not in given:
                m = _ID.search(source, holder.start, holder.end)
                if m:
                    given[holder.start] = m.group(1) or m.group(2) or ""
                else:
                    given[holder.start] = f"{prefix}{number}"
                    at = holder.end - (2 if source.startswith("/>", holder.end - 2) else 1)
                    insert(at, f' id="{given[holder.start]}"')
            ids[number] = given[holder.start]
    if stylesheet is not None:
        head_end = next((t for t in tags if t.depth < 0 and t.name == "head"), None)
        if head_end is not None:
            insert(head_end.start, f'<link rel="stylesheet" type="text/css" href="{_attr(stylesheet)}"/>')
    out, at = [], 0
    for pos, _, text in sorted(inserts):
        out += [source[at:pos], text]
        at = pos
    out.append(source[at:])
    text = declare_utf8("".join(out))
    xmlsafe.parse(text.encode("utf-8"), name=f"{name} with sentence ids")  # never emit ill-formed XHTML
    return Marked(text, ids)


def declare_utf8(text: str) -> str:
    """``text``, to be written as UTF-8, with its XML declaration saying so (EPUB 3
    requires UTF-8); a declaration that already does is left as it is."""
    m = _XML_ENCODING.match(text)
    if m is None or m.group(2).lower().replace("_", "-") in ("utf-8", "utf8"):
        return text
    return text[:m.start(2)] + "utf-8" + text[m.end(2):]


def _past(source: str, last: int) -> int:
    """The offset after the character at ``last`` (after all of a character reference)."""
    if source.startswith("&", last):
        m = CHARREF.match(source, last)
        if m is not None:
            return m.end()
    return last + 1


def _stacks(tags: tuple[Tag, ...]) -> list[tuple[Tag, ...]]:
    """Per i, the elements open after ``tags[:i]``, outermost first: the elements
    open at a text position are those of the tags before it."""
    stack: list[Tag] = []
    out = [()]
    for t in tags:
        if t.depth > 0:
            stack.append(t)
        elif t.depth < 0 and stack:
            stack.pop()
        out.append(tuple(stack))
    return out


def _closes(source: str, elements: list[Tag]) -> str:
    return "".join(f"</{_name(source, t)}>" for t in reversed(elements))


def _opens(source: str, elements: list[Tag]) -> str:
    # The same start tag again, without its id (that stays on the first part).
    return "".join(_ID.sub("", source[t.start:t.end]) for t in elements)


def _name(source: str, tag: Tag) -> str:
    m = _NAME.match(source, tag.start)
    return m.group(1) if m else tag.name


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
