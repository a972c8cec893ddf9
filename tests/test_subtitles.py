"""Subtitles and timings in the source's own characters (gflite.subtitles,
gflite.timings with gflite.text.Origins), through the real CLI; SRT and VTT
read back with ffmpeg."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from clirun import ok

ROOT = Path(__file__).resolve().parent.parent
# Curly and low quotes, a spaced em dash (not a word for flite), an ellipsis,
# accents, ß, £ and € (said as words), and a paragraph break.
SENTENCES = (
    "\u201cAttendez,\u201d dit-elle \u2014 le caf\u00e9 \u00e9tait ferm\u00e9\u2026",
    "O\u00f9 est la cr\u00e8me br\u00fbl\u00e9e?",
    "Die Stra\u00dfe hei\u00dft \u201eK\u00f6nigsallee\u201c, nicht wahr?",
    "\u00c7a co\u00fbte \u00a312, ou 15 \u20ac.",
)
SOURCE = f"{SENTENCES[0]} {SENTENCES[1]}\r\n\r\n{SENTENCES[2]} {SENTENCES[3]}\r\n"


def cues(path: Path) -> list[str]:
    """The cue texts of an SRT or VTT file as ffmpeg reads them (tags gone)."""
    fmt = "srt" if path.suffix == ".srt" else "webvtt"
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", fmt, "-"],
                          capture_output=True, check=True, timeout=60)
    assert proc.stderr == b""
    blocks = [b.splitlines() for b in proc.stdout.decode("utf-8").strip().split("\n\n")]
    return [" ".join(b[[i for i, line in enumerate(b) if "-->" in line][0] + 1:])
            for b in blocks if any("-->" in line for line in b)]


def words(source: str) -> list[str]:
    """Its words as flite says them: a free-standing dash is a pause, not a word."""
    return [w for w in source.split() if w != "\u2014"]


def check_json(path: Path, source: str, sentences: tuple[str, ...]) -> None:
    doc = json.loads(path.read_text("utf-8"))
    assert (doc["spans"], doc["text"]) == ("source", source)
    assert [s["text"] for s in doc["sentences"]] == list(sentences)
    assert [w["text"] for w in doc["words"]] == words(source)
    for record in doc["words"] + doc["sentences"]:
        a, b = record["span"]
        assert re.sub(r"\s+", " ", source[a:b]) == record["text"]


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_cues_and_json_are_the_sources_own_characters(kind: str, capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    src = tmp_path / "fr.txt"
    src.write_bytes(SOURCE.encode("utf-8"))
    sub = tmp_path / f"s.{kind}"
    ok(capsys, "-q", str(src), "-o", "none", "-voice", "kal16", "--subtasks", "2",
       "--subtitles", str(sub), "--timings", str(tmp_path / "t.json"))
    assert cues(sub) == list(SENTENCES)
    check_json(tmp_path / "t.json", SOURCE, SENTENCES)


def test_word_cues_are_the_sources_words(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "fr.txt"
    src.write_bytes(SOURCE.encode("utf-8"))
    ok(capsys, "-q", str(src), "-o", "none", "-voice", "kal16", "--subtitles", str(tmp_path / "w.vtt"),
       "--subtitles-words")
    assert cues(tmp_path / "w.vtt") == words(SOURCE)


def test_cp1252_input_spans_its_decoded_characters(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Offsets are characters of the decoded text, not bytes of the file.
    text = "\u201cCaf\u00e9,\u201d she said\u2026 Na\u00efve.\n"
    src = tmp_path / "w.txt"
    src.write_bytes(text.encode("cp1252"))
    ok(capsys, "-q", str(src), "-o", "none", "-voice", "kal16", "--timings", str(tmp_path / "t.json"))
    check_json(tmp_path / "t.json", text, ("\u201cCaf\u00e9,\u201d she said\u2026", "Na\u00efve."))


def test_stdin_and_literal_text_span_their_own_characters(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import io
    import sys

    text = SENTENCES[2]
    ok(capsys, "-q", "-t", text, "-o", "none", "-voice", "kal16", "--timings", str(tmp_path / "t.json"))
    check_json(tmp_path / "t.json", text, (text,))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SOURCE.encode("utf-8"))))
    ok(capsys, "-q", "-f", "-", "-o", "none", "-voice", "kal16", "--timings", str(tmp_path / "s.json"))
    check_json(tmp_path / "s.json", SOURCE, SENTENCES)


def test_with_replacements_spans_index_the_text_flite_read(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    src = tmp_path / "fr.txt"
    src.write_bytes(SOURCE.encode("utf-8"))
    rules = tmp_path / "r.txt"
    rules.write_text("Attendez = Wait\n")
    ok(capsys, "-q", str(src), "-o", "none", "-voice", "kal16", "--replace", str(rules),
       "--timings", str(tmp_path / "t.json"))
    doc = json.loads((tmp_path / "t.json").read_text("utf-8"))
    assert doc["spans"] == "read"
    assert all(doc["text"][w["span"][0]:w["span"][1]] == w["text"] for w in doc["words"])
    assert doc["words"][0]["text"] == '"Wait,"'
    assert all(w["text"].isascii() for w in doc["words"])


def test_a_books_cues_are_its_own_characters(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from gflite.books import read_book

    book = ROOT / "sample_texts" / "the_clockmakers_apprentice.epub"
    ok(capsys, "-q", str(book), "-o", "none", "-voice", "kal16", "--subtitles", str(tmp_path / "b.srt"),
       "--timings", str(tmp_path / "b.json"))
    doc = json.loads((tmp_path / "b.json").read_text("utf-8"))
    assert doc["spans"] == "source"
    chapters = [" ".join(c.text.split()) for c in read_book(str(book)).chapters]
    texts = cues(tmp_path / "b.srt")
    assert texts == [s["text"] for s in doc["sentences"]]
    assert any("\u201c" in t for t in texts)  # the book's curly quotes, not ASCII ones
    for s in doc["sentences"]:
        assert s["text"] in chapters[s["chapter"]]
    # Its spans index its own text, which the JSON carries.
    for record in doc["words"] + doc["sentences"]:
        a, b = record["span"]
        assert " ".join(doc["text"][a:b].split()) == record["text"]


def test_a_markdown_books_words_are_its_own(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A chapter that starts with a no-break space (white space once normalised)
    # and ends with an ellipsis (three characters once normalised).
    md = tmp_path / "b.md"
    md.write_text("# Caf\u00e9 One\n\n\u00a0\u00c9lan \u2014 vital, \u00e0 coup s\u00fbr\u2026\n\n"
                  "# Zwei\n\nDie Stra\u00dfe, \u201ehei\u00df\u201c.\n", "utf-8")
    ok(capsys, "-q", str(md), "-o", "none", "-voice", "kal16", "--subtitles", str(tmp_path / "b.vtt"),
       "--timings", str(tmp_path / "b.json"))
    doc = json.loads((tmp_path / "b.json").read_text("utf-8"))
    assert cues(tmp_path / "b.vtt") == [s["text"] for s in doc["sentences"]]
    assert "\u00c9lan \u2014 vital, \u00e0 coup s\u00fbr\u2026" in [s["text"] for s in doc["sentences"]]
    assert [w["text"] for w in doc["words"]][-3:] == ["Die", "Stra\u00dfe,", "\u201ehei\u00df\u201c."]
    for record in doc["words"] + doc["sentences"]:
        a, b = record["span"]
        assert " ".join(doc["text"][a:b].split()) == record["text"]
