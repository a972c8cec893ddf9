"""``gflite book.epub -o book-readalong.epub``: a read-along EPUB 3 with Media Overlays.

The package is checked by the real ``epubcheck``; every SMIL clip is cut out
of the same book's WAV (same flags) and compared, sample for sample, with
native flite's audio of that sentence alone; every ``<text src>`` must name
an element whose text is the sentence. The book is built here, with a
sentence that crosses an inline element, character references, curly quotes
and an existing id that looks like ours.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import wave
import zipfile
from fractions import Fraction
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

import pytest

from epubs import chapter, members, write
from clirun import gflite

pytestmark = pytest.mark.skipif(not shutil.which("ffprobe"), reason="needs ffmpeg's ffprobe")

RATE = 16000
XHTML_NS = "{http://www.w3.org/1999/xhtml}"
SMIL_NS = "{http://www.w3.org/ns/SMIL}"
CH1 = chapter("Chapter One", "The sun rose over the hill. He said <em>hi. Then</em> he left.",
              "A second paragraph &amp; more; it ends here.")
CH2 = chapter("Chapter Two", '<span id="gfs7">Rain fell all day.</span> \u201cWait,\u201d she called.')
# Each sentence as the reader shows it, and as flite read it (normalised to ASCII).
SENTENCES = [
    ("Chapter One", "Chapter One"),
    ("The sun rose over the hill.", "The sun rose over the hill."),
    ("He said hi.", "He said hi."),
    ("Then he left.", "Then he left."),
    ("A second paragraph & more; it ends here.", "A second paragraph & more; it ends here."),
    ("Chapter Two", "Chapter Two"),
    ("Rain fell all day.", "Rain fell all day."),
    ("\u201cWait,\u201d she called.", '"Wait," she called.'),
]


def run(*args: str) -> None:
    from gflite import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["-q", *args])
    assert exc.value.code == 0


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The read-along EPUB and the same book's WAV, made with the same flags."""
    tmp = tmp_path_factory.mktemp("readalong")
    write(tmp / "book.epub", members(3, chapters=[("ch1.xhtml", CH1), ("ch2.xhtml", CH2)]))
    run(str(tmp / "book.epub"), "-voice", "kal16", "-o", str(tmp / "read.epub"))
    run(str(tmp / "book.epub"), "-voice", "kal16", "-o", str(tmp / "book.wav"))
    with zipfile.ZipFile(tmp / "read.epub") as z:
        z.extractall(tmp / "x")
    return tmp


def seconds(clock: str) -> Fraction:
    h, m, s = clock.split(":")
    return (int(h) * 60 + int(m)) * 60 + Fraction(s)


def clips(root: Path) -> list[tuple[str, str, str, Fraction, Fraction]]:
    """(text src, its fragment's document, audio file, begin, end) of every par, in reading order."""
    out = []
    for smil in sorted((root / "OEBPS" / "gflite").glob("*.smil")):
        for par in ElementTree.parse(smil).getroot().iter(f"{SMIL_NS}par"):
            text, audio = par.find(f"{SMIL_NS}text"), par.find(f"{SMIL_NS}audio")
            assert text is not None and audio is not None
            doc = str(PurePosixPath(smil.parent.relative_to(root).as_posix(), text.get("src", "")))
            out.append((text.get("src", ""), doc, str(smil.parent / audio.get("src", "")),
                        seconds(audio.get("clipBegin", "")), seconds(audio.get("clipEnd", ""))))
    return out


def samples(audio: str) -> int:
    """The chapter file's length in samples, as its MP4 container states it (timescale = rate)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=duration_ts,sample_rate,codec_name",
                          "-of", "compact=p=0:nk=1", audio], check=True, capture_output=True, text=True).stdout
    codec, rate, duration = out.strip().split("|")
    assert codec == "aac" and int(rate) == RATE
    return int(duration)


def test_epubcheck_finds_nothing(made: Path) -> None:
    jar = Path(shutil.which("epubcheck") or "/usr/bin/epubcheck").resolve()
    proc = subprocess.run(["java", "-jar", str(jar), str(made / "read.epub")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 fatals / 0 errors / 0 warnings" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_each_fragment_is_its_sentence(made: Path) -> None:
    found = clips(made / "x")
    assert len(found) == len(SENTENCES)
    seen: dict[str, set[str]] = {}
    for (src, doc, *_), (shown, _) in zip(found, SENTENCES):
        path, fragment = doc.split("#")
        root = ElementTree.parse(PurePosixPath(made / "x", path).as_posix()).getroot()
        ids = [el.get("id") for el in root.iter() if el.get("id")]
        assert len(ids) == len(set(ids)), f"duplicate ids in {path}"
        element = next(el for el in root.iter() if el.get("id") == fragment)
        assert " ".join("".join(element.itertext()).split()) == shown
        seen.setdefault(path, set()).add(fragment)
    # The book's own id is kept, and ours do not take its name.
    ch2 = (made / "x" / "OEBPS" / "ch2.xhtml").read_text()
    assert '<span id="gfs7">' in ch2 and not re.search(r'id="gfs\d+"', ch2.replace('id="gfs7"', ""))


def test_clips_are_native_flite_of_each_sentence(made: Path, native_flite: str, tmp_path: Path) -> None:
    with wave.open(str(made / "book.wav")) as w:
        assert w.getframerate() == RATE
        book = w.readframes(w.getnframes())
    starts, at = {}, 0
    for audio in sorted({c[2] for c in clips(made / "x")}):
        starts[audio] = at
        at += samples(audio)
    assert at == len(book) // 2, "the chapter files together are the book's audio"
    for (_, _, audio, begin, end), (_, said) in zip(clips(made / "x"), SENTENCES):
        (tmp_path / "s.txt").write_text(said + "\n")
        subprocess.run([native_flite, "-voice", "kal16", "-f", str(tmp_path / "s.txt"), "-o",
                        str(tmp_path / "s.wav")], check=True)
        with wave.open(str(tmp_path / "s.wav")) as w:
            want = w.readframes(w.getnframes())
        a, b = starts[audio] + int(begin * RATE), starts[audio] + int(end * RATE)
        assert book[2 * a:2 * b] == want, f"the clip of {said!r} is not flite's audio of it"


def test_clip_times_are_exact_ordered_and_inside_their_file(made: Path) -> None:
    last: dict[str, Fraction] = {}
    for _, _, audio, begin, end in clips(made / "x"):
        assert (begin * RATE).denominator == 1 and (end * RATE).denominator == 1
        assert last.get(audio, Fraction(0)) <= begin < end
        last[audio] = end
    for audio, end in last.items():
        assert end * RATE <= samples(audio)


def _decoded(audio: str) -> list[int]:
    import array

    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", audio, "-f", "s16le", "-ac", "1", "-"],
                         check=True, capture_output=True).stdout
    return array.array("h", raw).tolist()


def test_aac_priming_is_cut_so_times_line_up(made: Path) -> None:
    """The MP4 edit list drops the encoder's priming: decoded, a chapter file starts
    with the chapter's first sample (best lag 0 against the WAV), and is no more
    than one AAC frame longer."""
    import array

    with wave.open(str(made / "book.wav")) as w:
        book = array.array("h", w.readframes(w.getnframes())).tolist()
    audio = sorted({c[2] for c in clips(made / "x")})[0]
    got, length = _decoded(audio), samples(audio)
    assert length <= len(got) <= length + 1024
    loudest = max(range(0, length - 4096, 256), key=lambda i: sum(abs(x) for x in book[i:i + 256]))
    ref = book[loudest:loudest + 1024]

    def corr(lag: int) -> float:
        return sum(x * y for x, y in zip(ref, got[loudest + lag:loudest + lag + 1024]))

    assert max(range(-1100, 1101, 1), key=corr) == 0


@pytest.mark.parametrize("case", ["text", "markdown", "epub2", "split", "replace"])
def test_inputs_that_cannot_be_read_along(capsys, tmp_path: Path, case: str) -> None:
    if case == "text":
        (tmp_path / "in.txt").write_text("Just text.\n")
        args = [str(tmp_path / "in.txt")]
    elif case == "markdown":
        (tmp_path / "in.md").write_text("# Title\n\nJust text.\n")
        args = [str(tmp_path / "in.md")]
    else:
        write(tmp_path / "in.epub", members(2 if case == "epub2" else 3))
        args = [str(tmp_path / "in.epub")]
        if case == "split":
            args += ["--split", "chapters"]
        if case == "replace":
            (tmp_path / "rules.txt").write_text("chapter -> section\n")
            args += ["--replace", str(tmp_path / "rules.txt")]
    code, _, err = gflite(capsys, *args, "-o", str(tmp_path / "out.epub"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gflite: error: -o .epub") and "Traceback" not in err
    assert list(tmp_path.glob("out.epub*")) == [] and not list(tmp_path.glob(".out.epub*"))


def _package(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if not n.endswith(".m4a")}


@pytest.mark.parametrize("flags", [[], ["--no-cache", "-j", "2", "--redundancy", "2"]],
                         ids=["from-cache", "redundancy"])
def test_cache_and_redundancy_make_the_same_package(capsys, made: Path, tmp_path: Path, flags: list[str]) -> None:
    code, _, err = gflite(capsys, str(made / "book.epub"), "-voice", "kal16", *flags,
                          "-o", str(tmp_path / "again.epub"))
    assert code == 0, err
    assert "wrote" in err and "as WAV" not in err  # no "writing ... as WAV" note for an .epub
    assert _package(tmp_path / "again.epub") == _package(made / "read.epub")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "scratch files left behind"


def test_what_was_not_read_aloud_is_copied_unchanged(made: Path) -> None:
    source, out = _package(made / "book.epub"), _package(made / "read.epub")
    changed = {"OEBPS/content.opf", "OEBPS/ch1.xhtml", "OEBPS/ch2.xhtml"}
    assert {n: d for n, d in source.items() if n not in changed} == \
        {n: d for n, d in out.items() if n in source and n not in changed}
    assert set(source) <= set(out)
    # The book read with --chapters 2: chapter 1's document is left as it was.
    run(str(made / "book.epub"), "-voice", "kal16", "--chapters", "2", "-o", str(made / "two.epub"))
    two = _package(made / "two.epub")
    assert two["OEBPS/ch1.xhtml"] == source["OEBPS/ch1.xhtml"] and two["OEBPS/ch2.xhtml"] != source["OEBPS/ch2.xhtml"]
    assert len([n for n in two if n.endswith(".smil")]) == 1


def test_a_document_that_is_not_well_formed_is_refused_before_any_work(capsys, tmp_path: Path) -> None:
    files = members(3)
    files["OEBPS/ch2.xhtml"] = files["OEBPS/ch2.xhtml"].replace(b"</p>", b"", 1)  # HTML, not XML
    write(tmp_path / "in.epub", files)
    code, _, err = gflite(capsys, str(tmp_path / "in.epub"), "-o", str(tmp_path / "out.epub"))
    assert code == 3 and err.count("\n") == 1 and "ch2.xhtml is not well-formed XML" in err, err
    assert not list(tmp_path.glob("*out.epub*"))


@pytest.mark.slow  # ~30 s
@pytest.mark.usefixtures("sigint_reaches_children")
def test_ctrl_c_leaves_no_scratch_and_a_rerun_resumes(tmp_path: Path, fresh_cache: Path) -> None:
    import html
    import os
    import signal
    import sys
    import time

    long = (Path(__file__).resolve().parent.parent / "sample_texts" / "long.txt").read_text("ascii")
    paragraphs = [" ".join(p.split()) for p in long.split("\n\n") if p.strip()]
    chapters = [(f"c{i}.xhtml", chapter(f"Part {i}", *(html.escape(p) for p in paragraphs[i::3])))
                for i in range(3)]
    write(tmp_path / "book.epub", members(3, chapters=chapters))
    out = tmp_path / "out"
    out.mkdir()
    args = [sys.executable, "-m", "gflite", "-voice", "kal16", "-j1", "book.epub", "-o", "out/book.epub"]
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    results = fresh_cache / "results"

    def done() -> int:
        return len(list(results.rglob("*.result"))) if results.is_dir() else 0

    while (done() < 3 or not list(out.glob(".book.epub.*.work/*.part"))) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert list(out.iterdir()) == [], "an interrupted read-along leaves nothing behind"
    finished = done()
    r = subprocess.run(args, cwd=tmp_path, capture_output=True, timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    cached = int(re.search(rb"\((\d+) from cache\)", r.stderr).group(1))  # type: ignore[union-attr]
    assert cached == finished >= 3  # finished chunks were not synthesised again
    assert [p.name for p in out.iterdir()] == ["book.epub"]


def test_a_read_along_book_is_not_read_along_again(capsys, made: Path, tmp_path: Path) -> None:
    code, _, err = gflite(capsys, str(made / "read.epub"), "-o", str(tmp_path / "again.epub"))
    assert code == 2 and err == "gflite: error: read.epub already has Media Overlays: it is a read-along book\n"
    assert list(tmp_path.iterdir()) == []
