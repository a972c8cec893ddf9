"""The whole job in-process, proven against native flite (the oracle).

kal and kal16 are deterministic across utterances, so a chunked render must
equal native ``flite -f`` on the whole book, sample for sample. slt, rms and
awb carry noise-generator state from one utterance to the next, so for them
each chunk must equal native flite run on that chunk's text alone.
"""
from __future__ import annotations

import io
from dataclasses import replace
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from gflite import pipeline, synth
from gflite.errors import ExecutionError, InputError, OutputError
from gflite.flitewasm import VOICES
from gflite.gwasm.cache import ResultCache

ROOT = Path(__file__).resolve().parent.parent
FLITE = shutil.which("flite") or "/usr/bin/flite"
LONG = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
DIALOGUE = (ROOT / "sample_texts" / "dialogue.txt").read_text("ascii")
SHORT = DIALOGUE[: DIALOGUE.index("\n\n", 300) + 2]  # a few paragraphs, several utterances
TINY = "The Number 9 Tram\n\nMr. Quill took the tram. He never spoke!\n\nThen, one day, he did.\n"


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def pcm(wav: Path | bytes) -> tuple[int, bytes]:
    """(rate, samples) read with the standard library, not with gflite's code."""
    with wave.open(io.BytesIO(wav) if isinstance(wav, bytes) else str(wav)) as w:
        return w.getframerate(), w.readframes(w.getnframes())


def native(text: str, voice: str, tmp: Path, *flags: str) -> tuple[int, bytes]:
    """What ``flite -f`` makes of exactly ``text``'s bytes."""
    src, out = tmp / "native.txt", tmp / "native.wav"
    src.write_bytes(text.encode("ascii"))
    subprocess.run([FLITE, *flags, "-voice", voice, "-f", str(src), "-o", str(out)], check=True)
    return pcm(out)


def make_job(book: Path, out: Path | str, voice: str = "kal16", **kw: object) -> pipeline.Job:
    options = synth.SynthOptions(synth.resolve_voice(voice))
    return pipeline.Job(source=pipeline.Source("file", str(book)), output=str(out), options=options, **kw)


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_bytes(text.encode("ascii"))
    return path


def litter(directory: Path) -> list[str]:
    """Files gflite may have left in the output directory (temporaries included)."""
    return sorted(p.name for p in directory.iterdir() if p.suffix in (".wav", ".part") or ".part" in p.name)


@pytest.mark.parametrize(
    "voice, text, variants",
    [
        # Default chunk sizes (growing from small), a forced size, and --subtasks.
        ("kal16", crlf(LONG[: LONG.index("\n\n", 5000) + 2]), [{}, {"target_chars": 1500}, {"subtasks": 5}]),
        ("kal", crlf(SHORT), [{"target_chars": 1000}, {"subtasks": 3}]),
    ],
)
def test_book_equals_native_flite_whole_file(tmp_path: Path, voice: str, text: str, variants: list) -> None:
    book = write(tmp_path, "book.txt", text)
    want = native(text, voice, tmp_path)
    assert len(want[1]) > 0
    for kw in variants:
        out = tmp_path / "out.wav"
        summary = pipeline.render(make_job(book, out, voice, **kw), cache=ResultCache(tmp_path / f"c{len(kw)}"))
        assert summary.chunks > 1, kw
        assert pcm(out) == want, kw
        assert summary.audio_seconds == pytest.approx(len(want[1]) / 2 / want[0])


@pytest.mark.parametrize("voice", VOICES)
def test_output_is_the_same_whatever_the_workers(tmp_path: Path, voice: str) -> None:
    """Byte-identical output with 1 or 2 workers, and each chunk as native flite makes it."""
    book = write(tmp_path, "book.txt", TINY)
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"j{workers}.wav"
        job = make_job(book, out, voice, subtasks=3, workers=workers)
        summary = pipeline.render(job, cache=ResultCache(tmp_path / f"cache{workers}"))
        assert (summary.chunks, summary.from_cache) == (3, 0)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    if voice in ("kal", "kal16"):
        assert pcm(outs[0]) == native(TINY, voice, tmp_path)
    else:
        rate, pieces = pcm(outs[0])[0], b""
        for c in pipeline.plan_chunks(TINY, job):
            r, samples = native(c.text, voice, tmp_path)
            assert r == rate
            pieces += samples
        assert pcm(outs[0])[1] == pieces


def test_kal16_output_is_the_same_whatever_the_subtasks(tmp_path: Path) -> None:
    book = write(tmp_path, "book.txt", crlf(SHORT) + LONG[:2500])
    outs = set()
    for n in (1, 2, 3, 7):
        out = tmp_path / f"s{n}.wav"
        summary = pipeline.render(make_job(book, out, subtasks=n))
        assert summary.chunks == n
        outs.add(out.read_bytes())
    assert len(outs) == 1


def test_stdout_stream_equals_file_and_starts_before_the_end(tmp_path: Path) -> None:
    book = write(tmp_path, "book.txt", SHORT)
    file_out = tmp_path / "out.wav"
    pipeline.render(make_job(book, file_out, subtasks=3, workers=1))

    class Pipe(io.RawIOBase):
        """A non-seekable stdout that notes what had been flushed when each chunk finished."""

        def __init__(self) -> None:
            self.data = bytearray()
            self.flushed = 0

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:  # type: ignore[no-untyped-def]
            self.data += b
            return len(b)

        def flush(self) -> None:
            self.flushed = len(self.data)

    stream = Pipe()
    flushed_at = []
    summary = pipeline.render(
        make_job(book, "-", subtasks=3, workers=1),
        stdout=stream,  # type: ignore[arg-type]
        on_progress=lambda p: flushed_at.append(stream.flushed),
        cache=ResultCache(tmp_path / "fresh"),
    )
    assert summary.from_cache == 0
    # With one worker the chunks finish in order: the first one's audio is out
    # (header and samples, flushed) before the last chunk is done.
    assert flushed_at[0] == 0 and 44 < flushed_at[-1] < len(stream.data)
    wav = file_out.read_bytes()
    assert bytes(stream.data[4:8]) == bytes(stream.data[40:44]) == b"\xff" * 4  # sizes unknown while streaming
    assert bytes(stream.data[8:40]) == wav[8:40] and bytes(stream.data[44:]) == wav[44:]

    seekable = io.BytesIO()  # stdout redirected to a file: the sizes are patched in at the end
    pipeline.render(make_job(book, "-", subtasks=3), stdout=seekable)
    assert seekable.getvalue() == wav


def test_plan_and_progress_events(tmp_path: Path) -> None:
    book = write(tmp_path, "book.txt", SHORT)
    job = make_job(book, tmp_path / "out.wav", subtasks=3)
    events: list[object] = []
    cache = ResultCache(tmp_path / "cache")
    summary = pipeline.render(job, on_plan=events.append, on_progress=events.append, cache=cache)
    plan, *progress = events
    assert isinstance(plan, pipeline.Plan) and plan.chunks == 3 and plan.characters == len(SHORT)
    assert plan.workers >= 1 and plan.text.encoding == "ascii"
    assert [p.chunks_done for p in progress] == [1, 2, 3]  # type: ignore[attr-defined]
    assert progress[-1].characters_done == len(SHORT)  # type: ignore[attr-defined]
    assert sum(p.characters for p in progress) == len(SHORT)  # type: ignore[attr-defined]
    audio = [p.audio_seconds for p in progress]  # type: ignore[attr-defined]
    assert audio == sorted(audio) and audio[0] > 0
    assert audio[-1] == pytest.approx(summary.audio_seconds)
    assert not any(p.from_cache for p in progress)  # type: ignore[attr-defined]

    events.clear()
    again = pipeline.render(job, on_progress=events.append, cache=cache)
    assert again.from_cache == 3 and all(p.from_cache for p in events)  # type: ignore[attr-defined]
    assert again.audio_seconds == pytest.approx(summary.audio_seconds)


def test_interrupt_leaves_no_file_and_a_rerun_resumes(tmp_path: Path) -> None:
    text = crlf(SHORT) + LONG[:2000]
    book = write(tmp_path, "book.txt", text)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "book.wav"
    out.write_bytes(b"an older file, kept until the new one is complete")
    cache = ResultCache(tmp_path / "cache")
    job = make_job(book, out, subtasks=5, workers=1)

    def interrupt(p: pipeline.Progress) -> None:
        if p.chunks_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.render(job, on_progress=interrupt, cache=cache)
    assert out.read_bytes().startswith(b"an older file")
    assert litter(out_dir) == ["book.wav"]

    summary = pipeline.render(job, cache=cache)
    assert summary.from_cache >= 2 and summary.chunks == 5
    assert pcm(out) == native(text, "kal16", tmp_path)
    assert litter(out_dir) == ["book.wav"]


def test_failed_chunk_leaves_no_file(tmp_path: Path) -> None:
    book = write(tmp_path, "book.txt", SHORT)
    out = tmp_path / "out.wav"
    job = make_job(book, out, subtasks=2, subtask_timeout=0.001, retries=0)
    with pytest.raises(ExecutionError, match="time limit"):
        pipeline.render(job, cache=ResultCache(tmp_path / "cache"))
    assert litter(tmp_path) == []


def test_output_is_checked_before_the_input_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-book.txt"
    for output, message in [
        (tmp_path / "nodir" / "x.wav", "output directory does not exist"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises(OutputError, match=message):
            pipeline.render(make_job(missing, output))
    with pytest.raises(InputError, match="not found"):
        pipeline.render(make_job(missing, tmp_path / "x.wav"))
    assert litter(tmp_path) == []


def test_literal_is_one_chunk_and_ssml_is_cut_at_its_breaks(tmp_path: Path) -> None:
    options = synth.SynthOptions(synth.Voice("kal16"))
    literal = pipeline.Job(pipeline.Source("text", SHORT), str(tmp_path / "t.wav"), options, subtasks=4)
    assert pipeline.render(literal).chunks == 1
    subprocess.run([FLITE, "-voice", "kal16", "-t", SHORT, "-o", str(tmp_path / "n.wav")], check=True)
    assert pcm(tmp_path / "t.wav") == pcm(tmp_path / "n.wav")

    # A short SSML document is one chunk, as flite reads it...
    ssml = "<speak>One sentence. Two sentences.\n\nA third.</speak>\n"
    job = pipeline.Job(pipeline.Source("file", str(write(tmp_path, "s.ssml", ssml))), str(tmp_path / "s.wav"),
                       synth.SynthOptions(synth.Voice("kal16"), ssml=True), subtasks=3)
    assert pipeline.render(job).chunks == 1
    assert pcm(tmp_path / "s.wav") == native(ssml, "kal16", tmp_path, "-ssml")
    # ...and a <break/> cuts it: the medium break's exact silence between the two halves' audio.
    ssml = "<speak>One sentence. <break/> Two sentences.</speak>\n"
    job = replace(job, source=pipeline.Source("file", str(write(tmp_path, "b.ssml", ssml))))
    summary = pipeline.render(job)
    assert summary.chunks == 2 and summary.pauses == 1
    rate, first = native("<speak>One sentence. </speak>\n", "kal16", tmp_path, "-ssml")
    _, second = native("<speak> Two sentences.</speak>\n", "kal16", tmp_path, "-ssml")
    assert pcm(tmp_path / "s.wav") == (rate, first + bytes(2 * round(0.5 * rate)) + second)


def test_discard_output(tmp_path: Path) -> None:
    book = write(tmp_path, "book.txt", SHORT)
    summary = pipeline.render(make_job(book, "none", subtasks=2))
    assert summary.chunks == 2 and summary.audio_seconds > 0
    assert litter(tmp_path) == []


def test_editing_one_paragraph_resynthesises_only_its_chunks(tmp_path: Path) -> None:
    """Cuts are content-defined: an edit moves no cut far from it, so the
    chunks before and after it keep their text and their cached audio."""
    paragraphs = LONG.split("\n\n")
    middle = next(i for i in range(len(paragraphs) // 2, len(paragraphs)) if " the " in paragraphs[i])
    edited = list(paragraphs)
    edited[middle] = edited[middle].replace(" the ", " that very ", 1)
    assert edited != paragraphs
    cache = ResultCache(tmp_path / "cache")
    book = write(tmp_path, "book.txt", LONG)
    job = make_job(book, tmp_path / "a.wav", target_chars=1000)
    first = pipeline.render(job, cache=cache)
    assert first.chunks >= 8
    before = {c.sha256 for c in pipeline.plan_chunks(LONG, job)}
    write(tmp_path, "book.txt", "\n\n".join(edited))
    job = make_job(book, tmp_path / "b.wav", target_chars=1000)
    changed = [c for c in pipeline.plan_chunks("\n\n".join(edited), job) if c.sha256 not in before]
    second = pipeline.render(job, cache=cache)
    # Exactly the chunks whose text changed are synthesised again...
    assert second.chunks - second.from_cache == len(changed)
    # ...and a one-word edit changes only the chunk holding it, or a neighbour too.
    assert 1 <= len(changed) <= 3, f"{len(changed)} of {second.chunks} chunks changed after a one-word edit"
    assert pcm(tmp_path / "b.wav") == native("\n\n".join(edited), "kal16", tmp_path)


def test_source_kinds(tmp_path: Path) -> None:
    assert pipeline.Source("text", "Hi there.").read().text == "Hi there."
    assert pipeline.Source("stdin", "-").read(io.BytesIO(b"From a pipe.\n")).text == "From a pipe.\n"
    book = write(tmp_path, "b.txt", "On disk.\r\n")
    assert pipeline.Source("file", str(book)).read().text == "On disk.\r\n"
    with pytest.raises(ValueError):
        pipeline.Source("url", "x")


def test_written_audio_is_not_kept_in_memory(tmp_path: Path) -> None:
    """A book's audio goes to disk chunk by chunk: once written, no chunk's
    samples stay alive in the requestor (a 9-hour book is ~1 GB of PCM).
    gc is off so that audio kept alive only by reference cycles counts too."""
    import gc

    from gflite.gwasm.subtask import SubtaskResult

    book = write(tmp_path, "book.txt", SHORT + LONG[:3000])
    alive: list[int] = []

    def count(p: pipeline.Progress) -> None:
        # Distinct sample buffers, not result objects: an accepted result shares
        # its bytes with the provider's answer it was made from.
        alive.append(len({id(data) for o in gc.get_objects() if isinstance(o, SubtaskResult)
                          for _, data in o.outputs if len(data)}))

    gc.collect()  # earlier tests' garbage must not count
    gc.disable()
    try:
        summary = pipeline.render(make_job(book, tmp_path / "out.wav", subtasks=8, workers=1), on_progress=count,
                                  cache=ResultCache(tmp_path / "cache"))
    finally:
        gc.enable()
    assert summary.chunks == 8
    # With one worker: the chunk just finished, perhaps the one before it
    # still being handed over; never the whole book so far.
    assert max(alive) <= 2, alive


def test_chunk_timeout_follows_the_expected_cost() -> None:
    from gflite.chunking import Chunk

    def chunks(n: int) -> tuple[Chunk, ...]:
        return (Chunk(0, 0, n, "x" * n, ""),)

    job = make_job(Path("book.txt"), "none", "slt")
    assert pipeline.chunk_timeout(chunks(100), job) == 30.0  # the floor
    # slt: 0.9 s per 1000 characters natively, x2 for flite.wasm on the safe side, x20.
    assert pipeline.chunk_timeout(chunks(1300), job) == 47.0
    assert pipeline.chunk_timeout(chunks(100_000), job) == 3600.0  # one long SSML chunk gets its time
    assert pipeline.chunk_timeout(chunks(4000), make_job(Path("book.txt"), "none", "kal16")) == 30.0


@pytest.mark.slow  # 30 s: the default timeout's floor, spent on a real hang
def test_a_deterministic_hang_fails_in_seconds_not_minutes(tmp_path: Path) -> None:
    """flite (native too) never returns with duration_stretch=1e308; the default
    per-chunk timeout is 30 s for this chunk instead of a flat 600 s."""
    options = synth.SynthOptions(synth.resolve_voice("kal16"),
                                 features=(synth.parse_feature("--setf", "duration_stretch=1e308"),))
    job = pipeline.Job(source=pipeline.Source("text", "Hi."), output="none", options=options, retries=0)
    with pytest.raises(ExecutionError, match="time limit of 30 s exceeded"):
        pipeline.render(job, cache=ResultCache(tmp_path / "cache"))


def test_print_flags_reach_the_caller_in_chunk_order(tmp_path: Path) -> None:
    book = write(tmp_path, "book.txt", crlf(SHORT))
    options = synth.SynthOptions(synth.resolve_voice("kal16"), prints=("-pw",))
    job = pipeline.Job(source=pipeline.Source("file", str(book)), output="none", options=options, subtasks=3,
                       workers=2)
    printed: list[bytes] = []
    summary = pipeline.render(job, cache=ResultCache(tmp_path / "c"), on_printout=printed.append)
    assert summary.chunks == len(printed) == 3
    want = subprocess.run([FLITE, "-pw", "-voice", "kal16", "-f", str(book), "-o", "none"],
                          check=True, capture_output=True).stdout
    assert b"".join(printed) == want


@pytest.mark.parametrize("voice", ["kal", "kal16", "slt"])
def test_a_streamed_wav_starts_with_a_lead_submitted_before_punkt_trains(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, voice: str) -> None:
    """-o - on a long text: before Punkt is even imported, the first utterances
    (up to chunkstream.lead_end) go to a worker; their audio is written as the
    stream's start and the first chunk adds only the rest: the same bytes as
    the file output."""
    from gflite import chunking, chunkstream, stitching
    from gflite.gwasm.executors.local import LocalExecutor

    monkeypatch.setattr(pipeline, "STREAM_CHARS", 4000)  # stream a short text: slt takes its time
    text = LONG
    book = tmp_path / "book.txt"
    book.write_text(text, "ascii")
    events: list[str] = []
    real_submit, real_params, real_lead = LocalExecutor.submit, chunking._params_for, stitching.AudioWriter.lead

    def submit(self, program, subtask, limits, provider=None):  # type: ignore[no-untyped-def]
        events.append("submit " + dict(subtask.inputs)["in.txt"].decode()[-30:])
        return real_submit(self, program, subtask, limits, provider)

    def params_for(t: str):  # type: ignore[no-untyped-def]
        events.append("punkt")
        return real_params(t)

    def lead(self, item):  # type: ignore[no-untyped-def]
        written = real_lead(self, item)
        events.append(f"lead {written.pcm_bytes}")
        return written

    monkeypatch.setattr(LocalExecutor, "submit", submit)
    monkeypatch.setattr(chunking, "_params_for", params_for)
    monkeypatch.setattr(stitching.AudioWriter, "lead", lead)
    out = io.BytesIO()
    job = make_job(book, "-", voice=voice, workers=2, use_cache=False)
    pipeline.render(job, stdout=out)
    end = chunkstream.lead_end(text, pipeline._target(job))
    assert end is not None and events[0] == "submit " + text[:end][-30:]
    assert events.index("punkt") > 0
    assert [e for e in events if e.startswith("lead")] != ["lead 0"] and any(e.startswith("lead") for e in events)
    pipeline.render(make_job(book, tmp_path / "file.wav", voice=voice, workers=2, use_cache=False))
    assert out.getvalue() == (tmp_path / "file.wav").read_bytes()
