"""EPUB 2 and 3: container → OPF (metadata, manifest, spine) → XHTML in spine order.

Chapters follow the table of contents: each TOC entry starts a chapter at its
document (and fragment, so one file may hold several chapters). A spine
document no TOC entry points at continues the chapter before it, unless it
opens with a heading of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element

from gflite.books import anchors, limits, toc, xhtml, xmlsafe
from gflite.books.model import Book, Chapter, Cover, Metadata, ReadOptions
from gflite.errors import BookError, BookProblem

CONTAINER = "META-INF/container.xml"
ENCRYPTION = "META-INF/encryption.xml"
OPF_TYPE = "application/oebps-package+xml"
XHTML_TYPES = {"application/xhtml+xml", "text/html", "application/xml", "text/x-oeb1-document"}
_COVER_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
# Font obfuscation is not DRM: IDPF's and Adobe's schemes only hide embedded fonts.
_FONT_OBFUSCATION = {"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"}
MAX_XML_BYTES = 16 << 20
MAX_COVER_BYTES = 16 << 20

# Guide (EPUB 2) and landmark (EPUB 3) types of whole documents to skip.
_GUIDE_TOC = {"toc", "loi", "lot"}
_GUIDE_FRONT = {"title-page", "titlepage", "copyright-page", "frontmatter", "halftitlepage", "imprint"}
_GUIDE_BACK = {"index", "colophon", "backmatter", "bibliography"}


@dataclass(frozen=True)
class _Item:
    id: str
    path: str
    media_type: str
    properties: frozenset[str]


def read_epub(path: Path, options: ReadOptions = ReadOptions(), *, origins: bool = False) -> Book:
    """``origins``: chapters also carry where each block stands in its document
    (``Chapter.pieces``), for a read-along EPUB (``gflite.readalong``)."""
    z = limits.SafeZip(path)
    try:
        return _read(z, options, origins)
    finally:
        z.close()


def _read(z: limits.SafeZip, options: ReadOptions, origins: bool = False) -> Book:
    name = z.name
    opf_path, opf = package(z)
    manifest = _manifest(opf, opf_path, name)
    spine_el = next(iter(xmlsafe.descendants(opf, "spine")), None)
    if spine_el is None:
        raise BookError(f"{name}: {opf_path} has no spine", BookProblem.MALFORMED)
    spine: list[tuple[_Item, bool]] = []
    for ref in xmlsafe.children(spine_el, "itemref"):
        idref = xmlsafe.attr(ref, "idref")
        item = manifest.get(idref)
        if item is None:
            raise BookError(f"{name}: spine item {idref!r} is not in the manifest", BookProblem.MISSING)
        if item.path not in z:
            raise BookError(f"{name}: spine item {item.path} is missing from the archive", BookProblem.MISSING)
        spine.append((item, xmlsafe.attr(ref, "linear").lower() != "no"))
    if not spine:
        raise BookError(f"{name}: the spine lists no documents", BookProblem.MALFORMED)

    entries, kinds, nav_path = _toc(z, opf, spine_el, manifest, opf_path)
    skip_docs = _skipped_docs(kinds, nav_path, options)
    skip = xhtml.skipped_types(options)
    chapters: list[Chapter] = []
    for item, linear in spine:
        if item.media_type not in XHTML_TYPES or item.path in skip_docs:
            continue
        if not linear and not options.keep_nonlinear:
            continue
        html = xhtml.decode(z.read(item.path), name=f"{name}: {item.path}")
        doc = xhtml.parse(html, name=f"{name}: {item.path}", skip=skip, origins=origins)
        _add_document(chapters, doc, item.path, [e for e in entries if e.path == item.path], bool(entries))
        if len(chapters) > limits.MAX_CHAPTERS:
            raise BookError(f"{name} has over {limits.MAX_CHAPTERS} chapters", BookProblem.TOO_LARGE)
    if not chapters:
        raise BookError(f"{name} has no text to speak", BookProblem.MALFORMED)
    return Book(metadata=_metadata(z, opf, manifest), chapters=tuple(chapters), format="epub")


def package(z: limits.SafeZip) -> tuple[str, Element]:
    """The OPF's path and its parsed XML, once the book is known not to be DRM-protected."""
    if CONTAINER not in z:
        raise BookError(f"{z.name} is not an EPUB (no {CONTAINER})", BookProblem.NOT_A_BOOK)
    _refuse_drm(z)
    opf_path = _opf_path(z)
    return opf_path, xmlsafe.parse(z.read(opf_path, cap=MAX_XML_BYTES), name=f"{z.name}: {opf_path}")


def manifest(opf: Element, opf_path: str, name: str) -> dict[str, _Item]:
    """The manifest's items by id (those inside the book)."""
    return _manifest(opf, opf_path, name)


def _refuse_drm(z: limits.SafeZip) -> None:
    if ENCRYPTION not in z:
        return
    root = xmlsafe.parse(z.read(ENCRYPTION, cap=MAX_XML_BYTES), name=f"{z.name}: {ENCRYPTION}")
    for data in xmlsafe.descendants(root, "EncryptedData"):
        method = next(iter(xmlsafe.descendants(data, "EncryptionMethod")), None)
        algorithm = xmlsafe.attr(method, "Algorithm") if method is not None else ""
        if algorithm in _FONT_OBFUSCATION:
            continue
        ref = next(iter(xmlsafe.descendants(data, "CipherReference")), None)
        what = xmlsafe.attr(ref, "URI") if ref is not None else "its content"
        raise BookError(
            f"{z.name} is DRM-protected ({what} is encrypted): gflite reads only DRM-free books",
            BookProblem.DRM,
        )


def _opf_path(z: limits.SafeZip) -> str:
    root = xmlsafe.parse(z.read(CONTAINER, cap=MAX_XML_BYTES), name=f"{z.name}: {CONTAINER}")
    rootfiles = xmlsafe.descendants(root, "rootfile")
    chosen = next((r for r in rootfiles if xmlsafe.attr(r, "media-type") == OPF_TYPE), None)
    chosen = chosen if chosen is not None else next(iter(rootfiles), None)
    full = xmlsafe.attr(chosen, "full-path") if chosen is not None else ""
    if not full:
        raise BookError(f"{z.name}: {CONTAINER} names no OPF package", BookProblem.MISSING)
    path = limits.member_path("", full, name=z.name)
    if path not in z:
        raise BookError(f"{z.name}: the OPF package {path} is missing", BookProblem.MISSING)
    return path


def _manifest(opf: Element, opf_path: str, name: str) -> dict[str, _Item]:
    items = {}
    for el in xmlsafe.descendants(opf, "item"):
        id_, href = xmlsafe.attr(el, "id"), xmlsafe.attr(el, "href")
        if not id_ or not href or limits.is_external(href):
            continue
        items[id_] = _Item(
            id=id_,
            path=limits.member_path(opf_path, href, name=name),
            media_type=xmlsafe.attr(el, "media-type").lower(),
            properties=frozenset(xmlsafe.attr(el, "properties").split()),
        )
    return items


def _toc(
    z: limits.SafeZip, opf: Element, spine: Element, manifest: dict[str, _Item], opf_path: str
) -> tuple[tuple[toc.TocEntry, ...], dict[str, str], str]:
    """(TOC entries, document kinds from landmarks/guide, the nav document's path)."""
    kinds = toc.from_guide(opf, opf_path, name=z.name)
    nav = next((i for i in manifest.values() if "nav" in i.properties), None)
    if nav is not None and nav.path in z:
        html = xhtml.decode(z.read(nav.path, cap=MAX_XML_BYTES), name=f"{z.name}: {nav.path}")
        xhtml.parse(html, name=f"{z.name}: {nav.path}")  # refuses entity declarations
        entries, marks = toc.from_nav(html, nav.path, name=z.name)
        kinds.update(marks)
        if entries:
            return entries, kinds, nav.path
    ncx = manifest.get(xmlsafe.attr(spine, "toc")) or next(
        (i for i in manifest.values() if i.media_type == "application/x-dtbncx+xml"), None
    )
    if ncx is not None and ncx.path in z:
        root = xmlsafe.parse(z.read(ncx.path, cap=MAX_XML_BYTES), name=f"{z.name}: {ncx.path}")
        return toc.from_ncx(root, ncx.path, name=z.name), kinds, nav.path if nav else ""
    return (), kinds, nav.path if nav else ""


def _skipped_docs(kinds: dict[str, str], nav_path: str, options: ReadOptions) -> set[str]:
    skip = set()
    if not options.keep_toc:
        skip |= {p for p, k in kinds.items() if k in _GUIDE_TOC}
        if nav_path:
            skip.add(nav_path)
    if not options.keep_front_matter:
        skip |= {p for p, k in kinds.items() if k in _GUIDE_FRONT}
    if not options.keep_back_matter:
        skip |= {p for p, k in kinds.items() if k in _GUIDE_BACK}
    return skip


def _add_document(
    chapters: list[Chapter], doc: xhtml.Document, path: str, entries: list[toc.TocEntry], has_toc: bool
) -> None:
    """Append ``doc``'s blocks to ``chapters``, split where its TOC entries point."""
    if not doc.blocks:
        return
    starts: dict[int, str] = {}
    for e in entries:
        at = 0 if not e.fragment else doc.anchors.get(e.fragment)
        if at is not None and at < len(doc.blocks):
            starts.setdefault(at, e.title)
    if not starts:
        if has_toc and chapters and doc.blocks[0].level == 0:
            last = chapters[-1]
            text = last.text + "\n\n" + xhtml.text_of(doc.blocks)
            pieces = last.pieces + anchors.pieces(doc, doc.blocks, path, len(last.text) + 2)
            chapters[-1] = Chapter(title=last.title, text=text, source=last.source, pieces=pieces)
            return
        heading = doc.blocks[0].text if doc.blocks[0].level else ""
        starts[0] = heading or doc.title or f"Section {len(chapters) + 1}"
    cuts = sorted(starts)
    if cuts[0] != 0:  # text before the first entry belongs to the first chapter
        starts[0] = starts.pop(cuts[0])
        cuts[0] = 0
    for i, at in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else len(doc.blocks)
        blocks = doc.blocks[at:end]
        title = starts[at] or next((b.text for b in blocks if b.level), "") or f"Section {len(chapters) + 1}"
        chapters.append(Chapter(title=" ".join(title.split()), text=xhtml.text_of(blocks), source=path,
                                pieces=anchors.pieces(doc, blocks, path)))


def _metadata(z: limits.SafeZip, opf: Element, manifest: dict[str, _Item]) -> Metadata:
    meta = next(iter(xmlsafe.descendants(opf, "metadata")), opf)
    title = next((xmlsafe.text(t) for t in xmlsafe.descendants(meta, "title") if xmlsafe.text(t)), "")
    creators = xmlsafe.descendants(meta, "creator")
    # EPUB 2 marks roles with opf:role, EPUB 3 with a <meta refines="#id" property="role">.
    roles = {
        xmlsafe.attr(m, "refines").lstrip("#"): xmlsafe.text(m)
        for m in xmlsafe.descendants(meta, "meta")
        if xmlsafe.attr(m, "property") == "role"
    }
    authors = tuple(
        xmlsafe.text(c)
        for c in creators
        if xmlsafe.text(c) and (xmlsafe.attr(c, "role") or roles.get(xmlsafe.attr(c, "id"), "aut")) == "aut"
    ) or tuple(xmlsafe.text(c) for c in creators if xmlsafe.text(c))
    language = next((xmlsafe.text(t) for t in xmlsafe.descendants(meta, "language") if xmlsafe.text(t)), "")
    return Metadata(title=title, authors=authors, language=language, cover=_cover(z, meta, manifest))


def _cover(z: limits.SafeZip, meta: Element, manifest: dict[str, _Item]) -> Cover | None:
    item = next((i for i in manifest.values() if "cover-image" in i.properties), None)
    if item is None:
        ref = next(
            (xmlsafe.attr(m, "content") for m in xmlsafe.descendants(meta, "meta") if xmlsafe.attr(m, "name") == "cover"),
            "",
        )
        item = manifest.get(ref) or next((i for i in manifest.values() if ref and i.path.endswith(ref)), None)
    if item is None or item.media_type not in _COVER_TYPES or item.path not in z:
        return None
    return Cover(data=z.read(item.path, cap=MAX_COVER_BYTES), media_type=item.media_type)
