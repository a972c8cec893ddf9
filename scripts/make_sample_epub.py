#!/usr/bin/env python3
"""Write sample_texts/the_clockmakers_apprentice.epub, a small EPUB 3 written for gflite.

It has what a real book has and gflite must handle: a cover image, a nav
document in the spine, a title page marked as front matter, three chapters,
a footnote with its noteref, and a list. The output is byte-for-byte
reproducible (fixed timestamps, fixed member order), so it is committed and
this script only regenerates it:  python3 scripts/make_sample_epub.py
"""
from __future__ import annotations

import struct
import sys
import zipfile
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "sample_texts" / "the_clockmakers_apprentice.epub"
TITLE = "The Clockmaker's Apprentice"
AUTHOR = "The gflite authors"

CHAPTERS = [
    (
        "Chapter One: The Shop on Bell Lane",
        [
            "Mira was eleven when she first walked into the clock shop on Bell Lane. The door was heavy, "
            "and a brass bell above it rang a note so low that she felt it in her shoes.",
            "Inside, a hundred clocks were talking at once. Some ticked quickly, like sparrows; others "
            "knocked slowly, like a walking stick on a wooden floor. Behind the counter sat Mr. Ambrose "
            "Hale, who had mended every clock in the town at least twice.",
            "\u201cYou are late,\u201d he said, without looking up. \u201cThat is the first thing a clockmaker "
            "must never be.\u201d",
        ],
    ),
    (
        "Chapter Two: The Silent Clock",
        [
            "On the highest shelf stood a clock that did not tick. Its case was black walnut, its face was "
            "cracked, and its hands pointed to nine minutes past four.",
            "\u201cIt stopped the day the river froze<a epub:type=\"noteref\" href=\"#note1\" "
            "id=\"ref1\">1</a>,\u201d said Mr. Hale. \u201cNobody has been able to start it since.\u201d",
            "Mira made a list of everything she would need:",
            "<ul><li>a fine brush for the dust,</li><li>a drop of clock oil,</li>"
            "<li>and a great deal of patience.</li></ul>",
        ],
    ),
    (
        "Chapter Three: Nine Minutes Past Four",
        [
            "It took her the whole winter. She cleaned each wheel, straightened a bent tooth, and found at "
            "last a single hair from a paintbrush caught in the escapement.",
            "On the first warm morning of spring she set the pendulum swinging. The silent clock drew a "
            "breath, and ticked, and went on ticking.",
            "Mr. Hale said nothing for a long time. Then he took down the sign above the door and painted "
            "a new one: Hale and Mira, Clockmakers. They were never late again.",
        ],
    ),
]
FOOTNOTE = "The river froze in the winter of the great storm, when the town bells cracked with the cold."

XHTML = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="en" xml:lang="en">
<head><title>{title}</title></head>
<body{attrs}>
{body}
</body>
</html>
"""


def cover_png(width: int = 120, height: int = 180) -> bytes:
    """A plain cover: a deep blue field with a lighter band, drawn pixel by pixel."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = []
    for y in range(height):
        band = height // 3 <= y < height // 3 + 24
        pixel = b"\xe8\xc8\x6a" if band else bytes((20, 40, 90 + y // 3))
        rows.append(b"\0" + pixel * width)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")


def paragraph(p: str) -> str:
    return p if p.startswith("<ul>") else f"<p>{p}</p>"


def members() -> dict[str, bytes]:
    files: dict[str, str | bytes] = {
        "mimetype": "application/epub+zip",
        "META-INF/container.xml": (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">\n'
            '  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>\n'
            "</container>\n"
        ),
        "OEBPS/images/cover.png": cover_png(),
        "OEBPS/title.xhtml": XHTML.format(
            title=TITLE,
            attrs=' epub:type="frontmatter titlepage"',
            body=f'<img src="images/cover.png" alt="Cover"/>\n<h1>{TITLE}</h1>\n<p>by {AUTHOR}</p>',
        ),
    }
    links = []
    for i, (title, paras) in enumerate(CHAPTERS, 1):
        body = [f"<section epub:type=\"chapter\" id=\"c{i}\">", f"<h1>{title}</h1>", *map(paragraph, paras)]
        if i == 2:
            body.append(f'<aside epub:type="footnote" id="note1"><p><a href="#ref1">1</a> {FOOTNOTE}</p></aside>')
        body.append("</section>")
        files[f"OEBPS/chapter{i}.xhtml"] = XHTML.format(title=title, attrs="", body="\n".join(body))
        links.append(f'<li><a href="chapter{i}.xhtml">{title}</a></li>')
    files["OEBPS/nav.xhtml"] = XHTML.format(
        title="Contents",
        attrs="",
        body=(
            '<nav epub:type="toc" id="toc"><h1>Contents</h1><ol>' + "".join(links) + "</ol></nav>\n"
            '<nav epub:type="landmarks" hidden="hidden"><ol>'
            '<li><a epub:type="titlepage" href="title.xhtml">Title page</a></li>'
            '<li><a epub:type="bodymatter" href="chapter1.xhtml">Start</a></li></ol></nav>'
        ),
    )
    manifest = [
        '<item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>',
        '<item id="cover" href="images/cover.png" media-type="image/png" properties="cover-image"/>',
        '<item id="title" href="title.xhtml" media-type="application/xhtml+xml"/>',
        *(f'<item id="c{i}" href="chapter{i}.xhtml" media-type="application/xhtml+xml"/>' for i in range(1, 4)),
    ]
    spine = ['<itemref idref="title"/>', '<itemref idref="nav"/>', *(f'<itemref idref="c{i}"/>' for i in range(1, 4))]
    files["OEBPS/content.opf"] = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="uid" xml:lang="en">\n'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        f"  <dc:title>{TITLE.replace(chr(39), '&#39;')}</dc:title>\n"
        f'  <dc:creator id="author">{AUTHOR}</dc:creator>\n'
        '  <meta refines="#author" property="role" scheme="marc:relators">aut</meta>\n'
        "  <dc:language>en</dc:language>\n"
        '  <dc:identifier id="uid">urn:uuid:6f1c9a52-3f0e-4d8e-9a57-6c1b2f7a0e11</dc:identifier>\n'
        '  <meta property="dcterms:modified">2026-12-01T00:00:00Z</meta>\n'
        "</metadata>\n<manifest>\n  " + "\n  ".join(manifest) + "\n</manifest>\n"
        "<spine>\n  " + "\n  ".join(spine) + "\n</spine>\n</package>\n"
    )
    return {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in files.items()}


def write(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members().items():
            # mimetype first and stored: what EPUB readers sniff.
            method = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(2026, 12, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            z.writestr(info, data)


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
