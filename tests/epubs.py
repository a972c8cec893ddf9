"""Build small real EPUBs inside tests: members as a dict, so a test can break one."""
from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

XHTML = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="en">
<head><title>{title}</title></head>
<body{body_attrs}>
{body}
</body>
</html>
"""

CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>
"""


def tiny_png(width: int = 8, height: int = 8) -> bytes:
    """A real PNG (solid red), small enough to build in a test."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def chapter(title: str, *paragraphs: str, body_attrs: str = "", heading: bool = True, extra: str = "") -> str:
    parts = [f"<h1>{title}</h1>"] if heading else []
    parts += [f"<p>{p}</p>" for p in paragraphs]
    return XHTML.format(title=title, body_attrs=body_attrs, body="\n".join(parts) + extra)


def members(
    version: int = 3,
    *,
    chapters: list[tuple[str, str]] | None = None,
    title: str = "The Test Book",
    author: str = "Ada Author",
    language: str = "en",
    cover: bytes | None = None,
    nav_in_spine: bool = True,
) -> dict[str, bytes]:
    """A well-formed EPUB 2 (NCX) or 3 (nav) book as {member name: bytes}.

    ``chapters`` are (file name under OEBPS/, XHTML text); default three chapters."""
    if chapters is None:
        chapters = [
            (f"ch{i}.xhtml", chapter(f"Chapter {i}", f"This is chapter {i}.", "It has two paragraphs."))
            for i in (1, 2, 3)
        ]
    titles = [_title_of(x) for _, x in chapters]
    files: dict[str, bytes] = {"mimetype": b"application/epub+zip", "META-INF/container.xml": CONTAINER.encode()}
    items = [
        f'<item id="c{i}" href="{name}" media-type="application/xhtml+xml"/>' for i, (name, _) in enumerate(chapters)
    ]
    spine = [f'<itemref idref="c{i}"/>' for i in range(len(chapters))]
    role = ' opf:role="aut"' if version == 2 else ""
    meta = [
        f"<dc:title>{title}</dc:title>",
        f'<dc:creator id="a1"{role}>{author}</dc:creator>',
        f"<dc:language>{language}</dc:language>",
        '<dc:identifier id="uid">urn:uuid:12345678-1234-1234-1234-123456789abc</dc:identifier>',
    ]
    if cover is not None:
        props = ' properties="cover-image"' if version == 3 else ""
        items.append(f'<item id="cover" href="images/cover.png" media-type="image/png"{props}/>')
        files["OEBPS/images/cover.png"] = cover
        if version == 2:
            meta.append('<meta name="cover" content="cover"/>')
    if version == 3:
        items.append('<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>')
        if nav_in_spine:
            spine.insert(0, '<itemref idref="nav"/>')
        links = "\n".join(f'<li><a href="{n}">{t}</a></li>' for (n, _), t in zip(chapters, titles))
        files["OEBPS/nav.xhtml"] = XHTML.format(
            title="Contents",
            body_attrs="",
            body=f'<nav epub:type="toc" id="toc"><h1>Contents</h1><ol>{links}</ol></nav>',
        ).encode()
        spine_attr = ""
        meta.append('<meta property="dcterms:modified">2026-01-01T00:00:00Z</meta>')
    else:
        items.append('<item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>')
        points = "\n".join(
            f'<navPoint id="p{i}" playOrder="{i + 1}"><navLabel><text>{t}</text></navLabel><content src="{n}"/></navPoint>'
            for i, ((n, _), t) in enumerate(zip(chapters, titles))
        )
        files["OEBPS/toc.ncx"] = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">'
            f"<head/><docTitle><text>{title}</text></docTitle><navMap>{points}</navMap></ncx>"
        ).encode()
        spine_attr = ' toc="ncx"'
    files["OEBPS/content.opf"] = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<package xmlns="http://www.idpf.org/2007/opf" version="{version}.0" unique-identifier="uid">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">'
        + "".join(meta)
        + "</metadata><manifest>"
        + "".join(items)
        + f"</manifest><spine{spine_attr}>"
        + "".join(spine)
        + "</spine></package>"
    ).encode()
    for name, text in chapters:
        files[f"OEBPS/{name}"] = text.encode() if isinstance(text, str) else text
    return files


def _title_of(xhtml: str | bytes) -> str:
    s = xhtml.decode("latin-1") if isinstance(xhtml, bytes) else xhtml
    return s.split("<title>", 1)[1].split("</title>", 1)[0] if "<title>" in s else "Untitled"


def write(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            method = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data, compress_type=method)
    return path
