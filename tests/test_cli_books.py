"""``gflite`` on books: EPUB/Markdown in, m4b/m4a/mp3 with chapter marks out,
--list-chapters, --chapters, --split chapters, pauses and --replace.

Real ffmpeg/ffprobe read the files back; native flite is the oracle for the
audio: with pauses on, the audio must be flite's audio of each stretch of text
between pauses, with exactly the stated zero samples between them.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from epubs import chapter, members, tiny_png, write
from gflite.books import read_book
from gflite.books.compose import compose
from clirun import gflite, native, ok, pcm

pytestmark = pytest.mark.skipif(not shutil.which("ffprobe"), reason="needs ffmpeg's ffprobe")

RATE = 16000  # kal16: sample-exact against native flite whatever the cuts
PARAGRAPHS = {
    1: ("The clock in the hall had stopped at noon.", "Nobody knew why it had stopped."),
    2: ("Mira opened the case with a small key.", "Inside, a spring had slipped its hook.", "She set it right."),
    3: ("At four the clock struck again.", "The whole house listened."),
}


def _book(tmp: Path, version: int = 3, cover: bool = True) -> Path:
    note = '<aside epub:type="footnote" id="n1"><p>A footnote nobody hears.</p></aside>'
    chapters = [(f"ch{i}.xhtml", chapter(f"Chapter {i}", *ps, extra=note if i == 2 else ""))
                for i, ps in PARAGRAPHS.items()]
    files = members(version, chapters=chapters, title="The Stopped Clock", author="Ada Author",
                    cover=tiny_png() if cover else None)
    return write(tmp / "book.epub", files)


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-show_format", "-show_streams",
                          "-of", "json", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _expected(tmp: Path, text: str, chapter_starts: tuple[int, ...], paragraph: float, chapter_s: float,
              ) -> tuple[bytes, list[int]]:
    """Native flite's audio of each stretch between pauses, joined by exact zero samples;
    and the sample where each chapter starts."""
    starts = {m.end() for m in re.finditer(r"\n\n+", text)} | set(chapter_starts)
    bounds = sorted(starts | {0}) + [len(text)]
    out, chapter_samples = bytearray(), []
    for a, b in zip(bounds, bounds[1:]):
        if a:
            seconds = chapter_s if a in chapter_starts else paragraph
            out += bytes(2 * round(seconds * RATE))
        if a in chapter_starts:
            chapter_samples.append(len(out) // 2)
        (tmp / "seg.txt").write_text(text[a:b], "ascii")
        rate, samples = native(tmp, "-voice", "kal16", "-f", str(tmp / "seg.txt"))
        assert rate == RATE
        out += samples
    return bytes(out), chapter_samples


def test_m4b_has_chapters_at_exact_samples_tags_and_cover(capsys, tmp_path: Path) -> None:
    book = _book(tmp_path)
    ok(capsys, str(book), "-voice", "kal16", "-o", str(tmp_path / "book.m4b"))
    ok(capsys, str(book), "-voice", "kal16", "-o", str(tmp_path / "book.wav"))
    composed = compose(read_book(book))
    assert "footnote" not in composed.text.text and "Inside, a spring" in composed.text.text
    want, chapter_samples = _expected(tmp_path, composed.text.text, composed.starts, 0.4, 1.5)
    rate, got = pcm(tmp_path / "book.wav")
    assert rate == RATE and got == want  # flite's audio, with exactly the default pauses inserted

    info = _probe(tmp_path / "book.m4b")
    assert [c["tags"]["title"] for c in info["chapters"]] == ["Chapter 1", "Chapter 2", "Chapter 3"]
    assert all(c["time_base"] == f"1/{RATE}" for c in info["chapters"])
    assert [c["start"] for c in info["chapters"]] == chapter_samples
    assert chapter_samples[0] == 0 and all(s > 0 for s in chapter_samples[1:])
    for s in chapter_samples[1:]:  # each chapter mark sits right after its 1.5 s of silence
        assert got[2 * (s - round(1.5 * RATE)) : 2 * s] == bytes(2 * round(1.5 * RATE))
        assert got[2 * s : 2 * s + 2] != b"\0\0" or got[2 * s : 2 * s + 400] != bytes(400)
    tags = info["format"]["tags"]
    assert tags["title"] == "The Stopped Clock" and tags["artist"] == "Ada Author"
    assert tags["major_brand"].strip() == "M4B"
    assert any(s["codec_type"] == "video" and s["disposition"]["attached_pic"] == 1 for s in info["streams"])
    assert any(s["codec_name"] == "aac" for s in info["streams"])
    # the audio runs to the end of the WAV's samples
    assert info["chapters"][-1]["end"] == len(got) // 2


def test_pauses_are_exact_silence_and_zero_gives_flites_audio(capsys, tmp_path: Path) -> None:
    book = _book(tmp_path, version=2, cover=False)
    composed = compose(read_book(book))
    ok(capsys, str(book), "-voice", "kal16", "--paragraph-silence", "0.25", "--chapter-silence", "2",
       "-o", str(tmp_path / "p.wav"))
    want, _ = _expected(tmp_path, composed.text.text, composed.starts, 0.25, 2.0)
    assert pcm(tmp_path / "p.wav")[1] == want
    # No pauses: the book's audio is flite's on the whole composed text.
    ok(capsys, str(book), "-voice", "kal16", "--paragraph-silence", "0", "--chapter-silence", "0",
       "-o", str(tmp_path / "z.wav"))
    (tmp_path / "all.txt").write_text(composed.text.text, "ascii")
    assert pcm(tmp_path / "z.wav") == native(tmp_path, "-voice", "kal16", "-f", str(tmp_path / "all.txt"))


def test_plain_text_pauses_only_when_asked(capsys, tmp_path: Path) -> None:
    text = "First paragraph. It has two sentences.\n\nSecond paragraph here.\n\nAnd a third one.\n"
    src = tmp_path / "t.txt"
    src.write_text(text, "ascii")
    ok(capsys, str(src), "-voice", "kal16", "-o", str(tmp_path / "plain.wav"))
    assert pcm(tmp_path / "plain.wav") == native(tmp_path, "-voice", "kal16", "-f", str(src))
    ok(capsys, str(src), "-voice", "kal16", "--paragraph-silence", "0.5", "-o", str(tmp_path / "p.wav"))
    want, _ = _expected(tmp_path, text, (), 0.5, 0.0)
    assert pcm(tmp_path / "p.wav")[1] == want


def test_sentence_silence_between_sentences(capsys, tmp_path: Path) -> None:
    text = "One sentence here. Another sentence follows. A third ends it.\n"
    src = tmp_path / "s.txt"
    src.write_text(text, "ascii")
    ok(capsys, str(src), "-voice", "kal16", "--sentence-silence", "0.3", "-o", str(tmp_path / "s.wav"))
    want = bytearray()
    for i, sentence in enumerate(("One sentence here. ", "Another sentence follows. ", "A third ends it.\n")):
        if i:
            want += bytes(2 * round(0.3 * RATE))
        (tmp_path / "one.txt").write_text(sentence, "ascii")
        want += native(tmp_path, "-voice", "kal16", "-f", str(tmp_path / "one.txt"))[1]
    assert pcm(tmp_path / "s.wav")[1] == bytes(want)


def test_split_chapters_gives_numbered_titled_tracks(capsys, tmp_path: Path) -> None:
    book = _book(tmp_path)
    out = tmp_path / "parts"
    err = ok(capsys, str(book), "--split", "chapters", "-o", f"{out}/")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["01 - Chapter 1.m4a", "02 - Chapter 2.m4a", "03 - Chapter 3.m4a"], names
    for i, name in enumerate(names, 1):
        tags = _probe(out / name)["format"]["tags"]
        assert tags["title"] == f"Chapter {i}" and tags["track"] == f"{i}/3"
        assert tags["album"] == "The Stopped Clock" and tags["artist"] == "Ada Author"
    assert "3 files" in err
    code, _, err = gflite(capsys, str(book), "--split", "chapters", "--split-format", "ogg", "-o", f"{out}/")
    assert code == 2 and "--split-format" in err
    code, _, err = gflite(capsys, str(book), "--split", "pages", "-o", f"{out}/")
    assert code == 2


def test_chapters_selects(capsys, tmp_path: Path) -> None:
    book = _book(tmp_path)
    ok(capsys, str(book), "--chapters", "2-3", "-o", str(tmp_path / "sel.m4b"))
    assert [c["tags"]["title"] for c in _probe(tmp_path / "sel.m4b")["chapters"]] == ["Chapter 2", "Chapter 3"]
    ok(capsys, str(book), "-voice", "kal16", "--chapters", "3", "-o", str(tmp_path / "three.wav"))
    (tmp_path / "c3.txt").write_text("Chapter 3\n\n" + "\n\n".join(PARAGRAPHS[3]) + "\n", "ascii")
    want, _ = _expected(tmp_path, (tmp_path / "c3.txt").read_text(), (0,), 0.4, 1.5)
    assert pcm(tmp_path / "three.wav")[1] == want
    code, _, err = gflite(capsys, str(book), "--chapters", "4", "-o", str(tmp_path / "x.m4b"))
    assert code == 2 and "has 3 chapters" in err


def test_list_chapters(capsys, tmp_path: Path) -> None:
    md = tmp_path / "b.md"
    md.write_text("# The Book\n\n## Chapter \x1b[31mRed\n\nSome text here, quite a bit of it.\n\n## Two\n\nMore.\n")
    code, out, err = gflite(capsys, str(md), "--list-chapters")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("1  Chapter \\x1b[31mRed  ") and "\x1b" not in out  # titles escaped
    assert re.search(r"  \d+ words  0:00:\d\d$", lines[0])
    assert lines[1].startswith("2  Two  ") and lines[2].startswith("2 chapters, ")
    assert not list(tmp_path.glob("*.wav"))


def test_hostile_book_one_line_exit_3(capsys, tmp_path: Path) -> None:
    files = members(3)
    files["META-INF/encryption.xml"] = (
        b'<?xml version="1.0"?><encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        b'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        b'<enc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>'
        b'<enc:CipherData><enc:CipherReference URI="OEBPS/ch1.xhtml"/></enc:CipherData>'
        b"</enc:EncryptedData></encryption>"
    )
    book = write(tmp_path / "drm.epub", files)
    code, out, err = gflite(capsys, str(book), "-o", str(tmp_path / "x.m4b"))
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and err.startswith("gflite: error: ") and "DRM" in err
    assert not list(tmp_path.glob("*x.m4b*"))


def test_replace_list(capsys, tmp_path: Path) -> None:
    src = tmp_path / "r.txt"
    src.write_text("Dr Nguyen met Nguyenville's mayor.\n", "ascii")
    rules = tmp_path / "rules.txt"
    rules.write_text("# names\nNguyen → Win\nDr -> Doctor\n", "utf-8")
    err = ok(capsys, str(src), "-voice", "kal16", "--replace", str(rules), "-o", str(tmp_path / "r.wav"))
    assert "2 words replaced" in err
    (tmp_path / "said.txt").write_text("Doctor Win met Nguyenville's mayor.\n", "ascii")
    assert pcm(tmp_path / "r.wav") == native(tmp_path, "-voice", "kal16", "-f", str(tmp_path / "said.txt"))


def test_add_lex_spelled_with_dashes(capsys, tmp_path: Path) -> None:
    code, _, err = gflite(capsys, "--add-lex", str(tmp_path / "missing.lex"), "-t", "hi", "-o", "none")
    assert code == 3 and "cannot read lexicon addenda" in err


def test_mp3_from_markdown_gets_tags_and_chapters(capsys, tmp_path: Path) -> None:
    md = tmp_path / "b.md"
    md.write_text("---\ntitle: Lamps\nauthor: Bo Writer\n---\n\n# One\n\nA lamp was lit.\n\n# Two\n\nIt went out.\n")
    ok(capsys, str(md), "-o", str(tmp_path / "b.mp3"))
    info = _probe(tmp_path / "b.mp3")
    assert [c["tags"]["title"] for c in info["chapters"]] == ["One", "Two"]
    assert info["format"]["tags"]["title"] == "Lamps" and info["format"]["tags"]["artist"] == "Bo Writer"
