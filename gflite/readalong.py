"""``-o book.epub`` from an EPUB 3: the book again, read aloud, with Media Overlays.

What goes in the package:

- every member of the source book, byte for byte, except the OPF and the
  content documents that were read aloud; those get an ``id`` on each sentence
  (``gflite.books.sentencemarks``: a sentence is one flite utterance, as the
  subtitles' cues) and a link to a one-rule stylesheet that highlights the
  sentence being read (``media:active-class``);
- the audio, one AAC-LC file in MP4 (``audio/mp4``, an EPUB 3 core media type)
  per chapter, streamed into ffmpeg while the book is synthesised
  (``gflite.bookwriter.ReadAlongWriter``), each starting on the sample where
  its chapter starts; a chapter's pause (``--chapter-silence``) ends the
  chapter before it;
- one SMIL file per content document (EPUB pairs an overlay with a document,
  and a document may hold several chapters or a chapter span several): a
  ``<par>`` per sentence, its ``<text>`` the sentence's id, its ``<audio>`` the
  sentence's utterance as flite wrote it, [first sample, end), in its
  chapter's file. Clip times are exact: n/rate written out as the terminating
  decimal it is (16 kHz needs 7 decimals), never rounded to a millisecond.
  Pauses gflite inserts lie between clips.
- in the OPF: manifest items for the new files, ``media-overlay`` on the
  documents, ``media:duration`` per overlay and in total (sums of the clips),
  and ``media:active-class``. The OPF is edited as text, so nothing else in it
  changes, and is checked to be well-formed afterwards.

The input must be an EPUB 3 (it has a navigation document); an EPUB 2 is
refused before any work (:func:`check_source`), as is any other input.
The package is written to a temporary file beside the target and renamed.
"""
from __future__ import annotations

import os
import posixpath
import re
import shutil
import tempfile
import zipfile
from bisect import bisect_right
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote

from gflite.books import epub, limits, sentencemarks, xhtml, xmlsafe
from gflite.books.anchors import BookMap, Place
from gflite.errors import BookError, BookProblem, OutputError, UsageError
from gflite.timings import SentenceTime, Timeline

ACTIVE_CLASS = "gflite-active"
STYLESHEET = f".{ACTIVE_CLASS} {{ background-color: #ffe58a; color: #000; }}\n"
SMIL_NS = "http://www.w3.org/ns/SMIL"
_MAX_DECIMALS = 9


def check_request(source: str | None, *, split: bool, replace: bool, ssml: bool) -> None:
    """Before any work, for ``-o x.epub``: the input (``source``, None if not a
    file) must be an EPUB 3 with a navigation document, read as a book, whole
    chapters to one package; UsageError (exit 2) otherwise."""
    if source is None or not source.lower().endswith(".epub") or ssml:
        raise UsageError("-o .epub writes a read-along EPUB and needs an EPUB 3 book as input "
                         "(for audio, use .m4b, .mp3, .wav ...)")
    if split:
        raise UsageError("-o .epub writes one read-along EPUB, not --split chapters")
    if replace:
        raise UsageError("-o .epub keeps the book's own words: --replace cannot be used with it")
    check_source(source)


def check_source(path: str) -> None:
    """``path`` must be an EPUB 3 with a navigation document."""
    z = limits.SafeZip(Path(path))
    try:
        opf_path, opf = epub.package(z)
        version = xmlsafe.attr(opf, "version")
        nav = any("nav" in xmlsafe.attr(i, "properties").split() for i in xmlsafe.descendants(opf, "item"))
        if not version.startswith("3") or not nav:
            raise UsageError(f"-o .epub writes a read-along EPUB 3 and needs one as input: {Path(path).name} is "
                             f"EPUB {version or '?'}{'' if nav else ' without a navigation document'} "
                             "(convert it to EPUB 3 first, e.g. with Calibre)")
        if any(xmlsafe.attr(i, "media-overlay") for i in xmlsafe.descendants(opf, "item")):
            raise UsageError(f"{Path(path).name} already has Media Overlays: it is a read-along book")
        # Everything below is found now, not after hours of synthesis: the package
        # is copied whole (within the caps every book is read with), and sentence
        # ids go into the documents as text, so each must be well-formed XML.
        declared = sum(z.info(n).file_size for n in z.names())
        if declared > limits.MAX_TOTAL_BYTES:
            raise BookError(f"{z.name} unpacks to over {limits.MAX_TOTAL_BYTES >> 20} MiB: too large to copy "
                            "into a read-along EPUB", BookProblem.TOO_LARGE)
        for item in epub.manifest(opf, opf_path, z.name).values():
            if item.media_type in epub.XHTML_TYPES and item.path in z:
                xmlsafe.parse(z.read(item.path), name=f"{z.name}: {item.path}")
    finally:
        z.close()


def clock(samples: int, rate: int) -> str:
    """``samples``/``rate`` seconds as a SMIL full clock value, exact when the
    rate divides a power of ten (8 and 16 kHz do), else to 1 ns."""
    value = Fraction(samples, rate)
    digits = next((k for k in range(_MAX_DECIMALS + 1) if (value * 10**k).denominator == 1), _MAX_DECIMALS)
    scaled = round(value * 10**digits)
    whole, frac = divmod(scaled, 10**digits)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    tail = f"{frac:0{digits}d}".rstrip("0") if digits else ""
    return f"{h}:{m:02d}:{s:02d}" + (f".{tail}" if tail else "")


def write_epub(source: Path, target: Path, timeline: Timeline, book_map: BookMap, audio: Sequence[Path],
               audio_starts: Sequence[int]) -> None:
    """The read-along package: ``audio`` the chapters' files (AAC in MP4), each
    starting at ``audio_starts`` samples into the book's audio."""
    places: dict[str, dict[int, Place]] = {}
    for s in timeline.sentences:
        place = book_map.locate(s.span) if s.span is not None else None
        if place is not None and s.audio[1] > s.audio[0]:
            places.setdefault(place.document, {})[s.index] = place
    z = limits.SafeZip(source)
    try:
        _pack(z, target, timeline.sentences, places, list(audio_starts), audio, book_map, timeline.sample_rate)
    finally:
        z.close()


def _pack(z: limits.SafeZip, target: Path, sentences: Sequence[SentenceTime], places: dict[str, dict[int, Place]],
          starts: list[int], audio: Sequence[Path], book_map: BookMap, rate: int) -> None:
    opf_path, opf = epub.package(z)
    opf_dir = posixpath.dirname(opf_path)
    manifest = epub.manifest(opf, opf_path, z.name)
    by_path = {item.path: item for item in manifest.values()}
    members = z.names()
    folder = _free_folder(opf_dir, members)
    ids = {xmlsafe.attr(el, "id") for el in opf.iter() if xmlsafe.attr(el, "id")}
    id_prefix = "gflite-"
    while any(i.startswith(id_prefix) for i in ids):
        id_prefix = id_prefix[:-1] + "x-"
    css_path = posixpath.join(folder, "read-along.css")
    tags_of = {p.document: p.tags for ch in book_map.chapters for p in ch.pieces}
    by_sentence = {s.index: s for s in sentences}

    new_members: dict[str, bytes] = {}
    overlays: list[tuple[str, str, str, int]] = []  # (document item id, overlay id, smil path, samples)
    for doc_path in sorted(places, key=lambda p: members.index(p) if p in members else 0):
        item = by_path.get(doc_path)
        if item is None:
            continue
        source = xhtml.decode(z.read(doc_path), name=f"{z.name}: {doc_path}")
        tags = tags_of.get(doc_path, ())
        if any(not source.startswith("<", t.start) for t in tags):
            raise OutputError(f"{z.name}: {doc_path} changed while it was read")
        marked = sentencemarks.mark(source, tags, places[doc_path], name=f"{z.name}: {doc_path}",
                                    stylesheet=_href(css_path, doc_path))
        new_members[doc_path] = marked.text.encode("utf-8")
        n = len(overlays) + 1
        smil_path = posixpath.join(folder, f"overlay-{n:03d}.smil")
        pars, total = [], 0
        for number in sorted(marked.ids):
            s = by_sentence[number]
            f = bisect_right(starts, s.audio[0]) - 1
            begin, end = s.audio[0] - starts[f], s.audio[1] - starts[f]
            total += end - begin
            pars.append(
                f'<par id="par{number}"><text src="{_attr(_href(doc_path, smil_path))}#{marked.ids[number]}"/>'
                f'<audio src="{_attr(_href(_audio_path(folder, f), smil_path))}" '
                f'clipBegin="{clock(begin, rate)}" clipEnd="{clock(end, rate)}"/></par>')
        new_members[smil_path] = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<smil xmlns="{SMIL_NS}" xmlns:epub="http://www.idpf.org/2007/ops" version="3.0">\n'
            f'<body>\n' + "\n".join(pars) + "\n</body>\n</smil>\n").encode("utf-8")
        overlays.append((item.id, f"{id_prefix}overlay-{n}", smil_path, total))
    if not overlays:
        raise OutputError(f"no sentence of {z.name} could be placed in its documents: no read-along to write")
    new_members[css_path] = STYLESHEET.encode("utf-8")
    opf_text = xhtml.decode(z.read(opf_path, cap=epub.MAX_XML_BYTES), name=f"{z.name}: {opf_path}")
    new_members[opf_path] = _edit_opf(opf_text, opf_dir, overlays, css_path, len(audio), folder, id_prefix,
                                      rate, name=f"{z.name}: {opf_path}").encode("utf-8")
    _write_zip(z, members, new_members, {_audio_path(folder, i): path for i, path in enumerate(audio)}, target)


def _audio_path(folder: str, index: int) -> str:
    return posixpath.join(folder, f"chapter-{index + 1:03d}.m4a")


def _free_folder(opf_dir: str, members: list[str]) -> str:
    n, name = 0, "gflite"
    while any(m.startswith(posixpath.join(opf_dir, name) + "/") for m in members):
        n += 1
        name = f"gflite-{n}"
    return posixpath.join(opf_dir, name)


def _href(path: str, base: str) -> str:
    """``path`` (an archive member) as a URL relative to the member ``base``."""
    return quote(posixpath.relpath(path, posixpath.dirname(base) or "."), safe="/")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


_ITEM = re.compile(r"<(?:[\w.-]+:)?item\b[^>]*>")
_ID_ATTR = re.compile(r"""\sid\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def _edit_opf(opf: str, opf_dir: str, overlays: list[tuple[str, str, str, int]], css_path: str, audio_files: int,
              folder: str, id_prefix: str, rate: int, *, name: str) -> str:
    overlay_of = {doc_id: mo_id for doc_id, mo_id, _, _ in overlays}

    def item(m: re.Match[str]) -> str:
        tag = m.group()
        found = _ID_ATTR.search(tag)
        mo = overlay_of.get((found.group(1) or found.group(2) or "") if found else "")
        if mo is None:
            return tag
        cut = len(tag) - (2 if tag.endswith("/>") else 1)
        return tag[:cut] + f' media-overlay="{mo}"' + tag[cut:]

    opf = _ITEM.sub(item, opf)

    def rel(path: str) -> str:
        return _attr(quote(posixpath.relpath(path, opf_dir or "."), safe="/"))

    items = [f'<item id="{mo}" href="{rel(smil)}" media-type="application/smil+xml"/>'
             for _, mo, smil, _ in overlays]
    items += [f'<item id="{id_prefix}audio-{i + 1}" href="{rel(_audio_path(folder, i))}" media-type="audio/mp4"/>'
              for i in range(audio_files)]
    items.append(f'<item id="{id_prefix}style" href="{rel(css_path)}" media-type="text/css"/>')
    total = sum(n for *_, n in overlays)
    metas = [f'<meta property="media:duration" refines="#{mo}">{clock(n, rate)}</meta>' for _, mo, _, n in overlays]
    metas += [f'<meta property="media:duration">{clock(total, rate)}</meta>',
              f'<meta property="media:active-class">{ACTIVE_CLASS}</meta>']
    opf = _before_end(opf, "manifest", "\n".join(items) + "\n", name)
    opf = _before_end(opf, "metadata", "\n".join(metas) + "\n", name)
    opf = sentencemarks.declare_utf8(opf)
    xmlsafe.parse(opf.encode("utf-8"), name=f"{name} with media overlays")
    return opf


def _before_end(text: str, element: str, insert: str, name: str) -> str:
    ends = list(re.finditer(rf"</(?:[\w.-]+:)?{element}\s*>", text))
    if not ends:
        raise OutputError(f"{name} has no </{element}>: cannot add media overlays")
    at = ends[0].start()
    return text[:at] + insert + text[at:]


def _write_zip(z: limits.SafeZip, members: list[str], new: dict[str, bytes], files: dict[str, Path],
               target: Path) -> None:
    """The package: the source's members (those in ``new`` replaced), then the new
    ones, then ``files`` (the audio, stored: it is compressed already) copied from disk."""
    from gflite import outputs

    where = target.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=outputs.PART_SUFFIX, dir=where)
    except OSError as e:
        raise OutputError(f"cannot write to {where}: {e.strerror or e}") from None
    outputs.lock(fd)
    try:
        with os.fdopen(fd, "w+b") as f, zipfile.ZipFile(f, "w") as out:
            # The mimetype first and stored, as OCF requires.
            out.writestr(zipfile.ZipInfo("mimetype", date_time=(2026, 1, 1, 0, 0, 0)), b"application/epub+zip",
                         compress_type=zipfile.ZIP_STORED)
            for member in members:
                if member == "mimetype" or member.endswith("/"):
                    continue
                data = new.pop(member, None)
                info = z.info(member)
                out.writestr(zipfile.ZipInfo(member, date_time=info.date_time),
                             data if data is not None else z.read(member), compress_type=zipfile.ZIP_DEFLATED)
            for member, data in new.items():
                out.writestr(zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0)), data,
                             compress_type=zipfile.ZIP_DEFLATED)
            for member, path in files.items():
                info = zipfile.ZipInfo(member, date_time=(2026, 1, 1, 0, 0, 0))
                with path.open("rb") as src, out.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
