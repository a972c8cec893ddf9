"""chunkstream makes split()'s chunks one at a time: the same cuts, sooner."""
from __future__ import annotations

from pathlib import Path

import pytest

from gflite import chunking, chunkstream, voices

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_texts").glob("*.txt"))
# The benchmark book, in shared/ beside the checkout (as CI lays it out).
CORPUS = ROOT.parent / "shared" / "corpus" / "news_from_nowhere.txt"


def texts() -> list[tuple[str, str]]:
    out = [(p.name, p.read_text("utf-8", "replace")) for p in SAMPLES]
    long = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
    out += [
        ("no punctuation", " ".join(long.replace(".", " ").split()) * 3),  # flite's 500-token breaks only
        ("one line", long.replace("\n", " ")),
        ("paragraphs", long.replace(". ", ".\n\n")),
        ("tiny", "Hello. World."),
        ("empty", ""),
    ]
    if CORPUS.exists():
        book = CORPUS.read_text("utf-8")
        out += [("book", book), ("book tail", book[200_000:])]
    return out


@pytest.mark.parametrize("target", [300, 2000, voices.MEMORY_CHUNK_CHARS, voices.chunk_chars("slt")])
@pytest.mark.parametrize("name,text", texts(), ids=[n for n, _ in texts()])
def test_the_same_chunks_as_split(name: str, text: str, target: int) -> None:
    assert tuple(chunkstream.chunks(text, target)) == chunking.split(text, target_chars=target)


def test_the_first_chunk_comes_before_the_book_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first chunk is given while flite's breaks (and Punkt's sentences)
    have been found only a little way past its end, not through the book."""
    long = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
    book = (long + "\n\n") * 40
    read: list[int] = []
    real = chunking.iter_utterance_breaks

    def watched(text: str):  # type: ignore[no-untyped-def]
        for brk in real(text):
            read.append(brk[1])
            yield brk

    monkeypatch.setattr(chunking, "iter_utterance_breaks", watched)
    stream = chunkstream.chunks(book, 4000)
    first = next(stream)
    reached = max(read)
    assert first == chunking.split(book, target_chars=4000)[0]
    assert reached < 4 * len(first.text) < len(book) / 10, (reached, len(first.text))


def test_a_long_book_is_cut_as_it_runs_and_sounds_as_native_flite(tmp_path: Path) -> None:
    """Past STREAM_CHARS the pipeline cuts while it synthesises: kal16's audio
    still equals native flite's on the whole file, cold and from the cache."""
    import shutil
    import subprocess
    import wave

    from gflite import pipeline, synth
    from gflite.gwasm.cache import ResultCache

    long = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
    text = ((long + "\n\n") * (pipeline.STREAM_CHARS // len(long) + 2))
    book = tmp_path / "book.txt"
    book.write_bytes(text.encode("ascii"))
    job = pipeline.Job(source=pipeline.Source("file", str(book)), output=str(tmp_path / "a.wav"),
                       options=synth.SynthOptions(synth.resolve_voice("kal16")), workers=2)
    assert pipeline.stream_chunks(text, job) is not None
    cache = ResultCache(tmp_path / "cache")
    summary = pipeline.render(job, cache=cache)
    assert summary.chunks == len(pipeline.plan_chunks(text, job))
    again = pipeline.render(pipeline.Job(**{**job.__dict__, "output": str(tmp_path / "b.wav")}), cache=cache)
    assert again.from_cache == again.chunks == summary.chunks
    flite = shutil.which("flite") or "/usr/bin/flite"
    subprocess.run([flite, "-voice", "kal16", "-f", str(book), "-o", str(tmp_path / "n.wav")], check=True)

    def frames(p: Path) -> bytes:
        with wave.open(str(p)) as w:
            return w.readframes(w.getnframes())

    assert frames(tmp_path / "a.wav") == frames(tmp_path / "n.wav")
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_a_long_read_is_not_cut_short_by_nltks_regex_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """nltk's 5 s wall-clock limit on a whole finditer failed a long book read
    lazily on a busy machine; here the limit is made short (once Punkt has
    trained) instead of the machine busy: the book's sentence ends take longer
    than it in all, each small match far less."""
    redos = pytest.importorskip("nltk.redos")
    real = chunking._params_for

    def trained_then_short(text: str):  # type: ignore[no-untyped-def]
        params = real(text)
        monkeypatch.setattr(redos, "DEFAULT_TIMEOUT", 2e-3)
        return params

    monkeypatch.setattr(chunking, "_params_for", trained_then_short)
    long = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
    book = (long + "\n\n") * 40
    assert len(list(chunkstream.chunks(book, 2000))) > 10


@pytest.mark.parametrize("target", [300, voices.MEMORY_CHUNK_CHARS, voices.chunk_chars("slt")])
@pytest.mark.parametrize("name,text", texts(), ids=[n for n, _ in texts()])
def test_a_lead_ends_at_an_utterance_start_inside_the_first_chunk(name: str, text: str, target: int) -> None:
    """lead_end, found without Punkt, never passes the first chunk's end and is
    one of flite's utterance starts: the lead's audio is the first chunk's beginning."""
    end = chunkstream.lead_end(text, target)
    chunks = chunking.split(text, target_chars=target)
    if len(chunks) == 1:
        assert end is None
        return
    if end is not None:
        assert end <= chunks[0].end and end in chunking.utterance_starts(text)
