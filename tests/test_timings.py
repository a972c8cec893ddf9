"""Word and sentence times in the whole book (gflite.timings), end to end through
``gflite --timings/--subtitles``, against native flite, the oracle."""
from __future__ import annotations

import io
import json
import os
import subprocess
import wave
from pathlib import Path

import pytest

from gflite import synth, timings
from gflite.chunking import split
from gflite.errors import OutputError, UsageError
from gflite.timings_file import TimingsError
from oracle import run_native

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = (
    "Hello there.",
    "It is 10:30, and 3 people are waiting.",
    'A second paragraph, with "quotes" here!',
    "Dr. Ellis paid $12.50 for 2 tickets.",
)
TEXT = f"{SENTENCES[0]} {SENTENCES[1]}\n\n{SENTENCES[2]} {SENTENCES[3]}\n"
LONG = (ROOT / "sample_texts" / "long.txt").read_text("ascii")


def gflite(*args: str) -> None:
    """``gflite ARGS`` in-process; fails the test on a non-zero exit."""
    from gflite import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["-q", "-j", "2", *args])
    assert exc.value.code == 0


def frames(wav: Path) -> tuple[int, int]:
    with wave.open(str(wav)) as w:
        return w.getnframes(), w.getframerate()


def words(path: Path) -> list[dict]:
    return json.loads(path.read_text("utf-8"))["words"]


def test_word_ends_are_native_segment_ends_from_each_utterances_start_sample(native_flite: str,
                                                                            tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    gflite(str(src), str(tmp_path / "out.wav"), "-voice", "kal16", "--subtasks", "2",
           "--timings", str(tmp_path / "t.json"))
    got = words(tmp_path / "t.json")
    total, rate = frames(tmp_path / "out.wav")
    # The oracle: each sentence alone through native flite gives its sample count
    # (so where it starts in the whole) and, with -psdur, its segment end times.
    start, ends_of = 0, []
    for sentence in SENTENCES:
        run_native(native_flite, ["-voice", "kal16", "-t", sentence, "-o", "s.wav"], tmp_path)
        psdur = run_native(native_flite, ["-voice", "kal16", "-psdur", "-t", sentence, "-o", "none"], tmp_path)
        segment_ends = [float(seg.rsplit(":", 1)[1]) for seg in psdur.stdout.decode().split()]
        ends_of.append([start + round(e * rate) for e in segment_ends])
        start += frames(tmp_path / "s.wav")[0]
    assert start == total
    # -psdur prints milliseconds: that rounding plus one sample.
    tolerance = rate // 2000 + 1
    assert [w["sentence"] for w in got] == [i for i, s in enumerate(SENTENCES) for _ in s.split()]
    for i, ends in enumerate(ends_of):
        mine = [w for w in got if w["sentence"] == i]
        at = -1
        for w in mine:
            later = [k for k, e in enumerate(ends) if abs(e - w["end_sample"]) <= tolerance and k > at]
            assert later, f"{w} ends at no native segment end after #{at}: {ends}"
            at = later[0]
            assert w["end"] == w["end_sample"] / rate
        assert at == len(ends) - 2  # the last word ends at the last segment before the final pause
    # Each word's text and span are its place in the text.
    assert [w["text"] for w in got] == TEXT.split()
    assert all(TEXT[w["span"][0]:w["span"][1]] == w["text"] for w in got)


def test_a_longer_text_in_four_chunks_has_the_times_of_one_chunk(native_flite: str, tmp_path: Path) -> None:
    src = tmp_path / "long.txt"
    src.write_text(LONG)
    for n in (1, 4):
        gflite(str(src), str(tmp_path / f"{n}.wav"), "-voice", "kal16", "--subtasks", str(n),
               "--timings", str(tmp_path / f"{n}.json"))
    got = words(tmp_path / "4.json")
    assert got == words(tmp_path / "1.json")  # chunk starts come out where one flite puts them
    assert len(got) == len(LONG.split())
    for a, b in zip(got, got[1:]):
        assert a["start_sample"] <= a["end_sample"] <= b["start_sample"]
        assert a["sentence"] <= b["sentence"]
    total, rate = frames(tmp_path / "4.wav")
    assert json.loads((tmp_path / "4.json").read_text())["samples"] == total
    # After the last word only (part of) flite's final pause is left: native -psdur's
    # last segment, which the audio cuts short (its end is past the WAV's).
    psdur = run_native(native_flite, ["-voice", "kal16", "-psdur", "-f", str(src), "-o", "none"], tmp_path)
    last = [float(seg.rsplit(":", 1)[1]) for seg in psdur.stdout.decode().splitlines()[-1].split()]
    final_pause = total - got[-1]["end_sample"]
    assert 0 < final_pause <= round((last[-1] - last[-2]) * rate)


def test_a_text_long_enough_to_stream_gets_its_times(tmp_path: Path) -> None:
    """Texts past pipeline.STREAM_CHARS are cut as the engine asks for work; with
    --timings they are planned whole (the hook takes planned chunks)."""
    from gflite import pipeline

    book = tmp_path / "book.txt"
    book.write_text(LONG * (pipeline.STREAM_CHARS // len(LONG) + 1))
    gflite(str(book), str(tmp_path / "b.wav"), "-voice", "kal16", "--timings", str(tmp_path / "b.json"))
    got = words(tmp_path / "b.json")
    assert len(got) == len(book.read_text().split())
    assert json.loads((tmp_path / "b.json").read_text())["samples"] == frames(tmp_path / "b.wav")[0]


def test_sentence_silence_moves_each_cue_by_exactly_its_pauses(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    gflite(str(src), str(tmp_path / "a.wav"), "-voice", "kal16", "--timings", str(tmp_path / "a.json"))
    gflite(str(src), str(tmp_path / "b.wav"), "-voice", "kal16", "--timings", str(tmp_path / "b.json"),
           "--sentence-silence", "0.5")
    rate = frames(tmp_path / "a.wav")[1]
    plain, paused = words(tmp_path / "a.json"), words(tmp_path / "b.json")
    assert len(plain) == len(paused)
    for a, b in zip(plain, paused):
        # Sentence k has k pauses before it, each round(0.5 * rate) samples.
        assert b["start_sample"] - a["start_sample"] == a["sentence"] * round(0.5 * rate)
        assert b["end_sample"] - a["end_sample"] == a["sentence"] * round(0.5 * rate)


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_subtitles_parse_with_ffmpeg_and_cues_are_the_sentences(kind: str, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    out = tmp_path / f"out.{kind}"
    gflite(str(src), str(tmp_path / "out.wav"), "-voice", "kal16", "--subtitles", str(out))
    fmt = "srt" if kind == "srt" else "webvtt"
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", fmt, "-"],
                          capture_output=True, check=True, timeout=60)
    assert proc.stderr == b""
    blocks = [b.splitlines() for b in proc.stdout.decode().strip().split("\n\n")]
    cues = [b for b in blocks if any("-->" in line for line in b)]
    texts = [" ".join(b[[i for i, line in enumerate(b) if "-->" in line][0] + 1:]) for b in cues]
    assert texts == list(SENTENCES)


def test_word_cues_one_per_word(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    out = tmp_path / "w.srt"
    gflite(str(src), "-o", "none", "-voice", "kal16", "--subtitles", str(out), "--subtitles-words")
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "srt", "-"],
                          capture_output=True, check=True, timeout=60)
    cues = proc.stdout.decode().strip().split("\n\n")
    assert [c.splitlines()[2] for c in cues] == TEXT.split()


def test_timings_replay_from_the_cache(tmp_path: Path, fresh_cache: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    gflite(str(src), str(tmp_path / "a.wav"), "-voice", "kal16", "--timings", str(tmp_path / "a.json"))
    assert any(fresh_cache.rglob("*")), "nothing was cached"
    before = sorted(p.name for p in fresh_cache.rglob("*"))
    gflite(str(src), str(tmp_path / "b.wav"), "-voice", "kal16", "--timings", str(tmp_path / "b.json"))
    assert sorted(p.name for p in fresh_cache.rglob("*")) == before  # replayed, nothing new stored
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_subtasks_ask_for_timings_only_when_told() -> None:
    chunks = split(TEXT, subtasks=1)
    voice = synth.Voice("kal16")
    plain = synth.subtasks(chunks, synth.SynthOptions(voice))[0]
    asked = synth.subtasks(chunks, synth.SynthOptions(voice, timings=True))[0]
    assert plain.outputs == (synth.OUT_NAME,) and not any("timings_file" in a for a in plain.args)
    assert asked.outputs == (synth.OUT_NAME, synth.TIMINGS_NAME)
    assert asked.digest != plain.digest
    assert plain.args == ("-f", synth.IN_NAME, "-o", synth.OUT_NAME, "-voice", "kal16")  # as before: same cache keys


def _wav(samples: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * samples)
    return buf.getvalue()


def test_a_timing_file_that_disagrees_with_its_audio_is_refused() -> None:
    chunk = split("Hello there.", subtasks=1)[0]
    line = b"gflite-timings 1\nU 100 16000\nW 0 0.0 0.005 Hello\n"
    timeline = timings.Timeline(chunk.text, 16000)
    with pytest.raises(TimingsError, match="other samples"):
        timings.chunk_outputs(timeline, chunk, {synth.OUT_NAME: _wav(99), synth.TIMINGS_NAME: line}, None, 0)
    with pytest.raises(TimingsError, match="without its timing file"):
        timings.chunk_outputs(timeline, chunk, {synth.OUT_NAME: _wav(100)}, None, 0)
    timings.chunk_outputs(timeline, chunk, {synth.OUT_NAME: _wav(100), synth.TIMINGS_NAME: line}, None, 7)
    assert [(w.start, w.end, w.text, w.span) for w in timeline.words] == [(7, 87, "Hello", (0, 5))]


@pytest.mark.parametrize("args", [["--subtitles", "x.txt"], ["--subtitles-words"],
                                  ["--subtitles", "x.srt", "--split", "chapters"]])
def test_bad_read_along_flags_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    from gflite import cli

    with pytest.raises(UsageError):
        cli.run(["-t", "Hi.", "-o", str(tmp_path / "o.wav"), *args])


def test_without_audio_out_the_pauses_are_counted_the_same(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    for out in ("a.wav", "none"):
        gflite(str(src), "-o", out if out == "none" else str(tmp_path / out), "-voice", "kal16",
               "--sentence-silence", "0.5", "--paragraph-silence", "0.25", "--timings", str(tmp_path / f"{out}.json"))
    assert (tmp_path / "a.wav.json").read_bytes() == (tmp_path / "none.json").read_bytes()


def test_a_book_has_chapters_and_its_pauses_in_the_times(tmp_path: Path) -> None:
    book = ROOT / "sample_texts" / "the_lamplighter.md"
    gflite(str(book), str(tmp_path / "b.wav"), "-voice", "kal16", "--timings", str(tmp_path / "b.json"))
    doc = json.loads((tmp_path / "b.json").read_text())
    total, _ = frames(tmp_path / "b.wav")
    assert doc["samples"] == total  # chapter and paragraph pauses included
    assert len(doc["chapters"]) == 4
    firsts = {}
    for w in doc["words"]:
        firsts.setdefault(w["chapter"], w["text"])
    assert list(firsts) == [0, 1, 2, 3]
    assert [firsts[i] for i in range(4)] == [t.split()[0] for t in doc["chapters"]]


def test_redundant_providers_agree_on_the_timing_files(tmp_path: Path, fresh_cache: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    gflite(str(src), str(tmp_path / "a.wav"), "-voice", "kal16", "--timings", str(tmp_path / "a.json"))
    gflite(str(src), str(tmp_path / "r.wav"), "-voice", "kal16", "--subtasks", "2", "--redundancy", "2",
           "--no-cache", "--timings", str(tmp_path / "r.json"))
    assert words(tmp_path / "r.json") == words(tmp_path / "a.json")


@pytest.mark.parametrize("where", ["missing/t.json", "."])
def test_a_read_along_file_that_cannot_be_written_fails_before_any_work(where: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from gflite import cli

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError):
        cli.run(["-t", "Hi.", "-o", "o.wav", "--timings", where])
    assert not (tmp_path / "o.wav").exists()


def test_files_are_written_whole_with_the_usual_permissions(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text(TEXT)
    gflite(str(src), "-o", "none", "-voice", "kal16", "--subtitles", str(tmp_path / "s.vtt"))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.vtt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_literal_text_words_find_their_places(tmp_path: Path) -> None:
    # flite's -t gives other token positions than -f: the words are placed by name.
    said = 'the the "end", and. the'
    gflite("-t", said, "-o", "none", "--timings", str(tmp_path / "t.json"))
    got = words(tmp_path / "t.json")
    assert [w["text"] for w in got] == said.split()
    assert all(said[w["span"][0]:w["span"][1]] == w["text"] for w in got)


def test_ssml_words_stop_at_tags(tmp_path: Path) -> None:
    src = tmp_path / "in.ssml"
    src.write_text('<speak>Hello <break time="300ms"/> there, my friend. <prosody rate="slow">Slow words.</prosody></speak>')
    gflite("-ssml", "-f", str(src), "-o", "none", "-voice", "kal16", "--subtitles", str(tmp_path / "s.srt"),
           "--timings", str(tmp_path / "t.json"))
    assert [w["text"] for w in words(tmp_path / "t.json")] == ["Hello", "there,", "my", "friend.", "Slow", "words."]
    cues = (tmp_path / "s.srt").read_text().strip().split("\n\n")
    assert [c.splitlines()[2] for c in cues] == ["Hello", "there, my friend.", "Slow words."]


def sentences(path: Path) -> list[dict]:
    return json.loads(path.read_text("utf-8"))["sentences"]


@pytest.mark.parametrize("silence", [None, "0.5"])
def test_sentence_records_are_monotonic_and_the_last_ends_with_the_audio(silence: str | None,
                                                                         tmp_path: Path) -> None:
    """Words end before flite's final pause; a sentence's audio (its utterance as
    written) does not: the last one ends on the audio's last sample, exactly,
    unless gflite inserted a pause after it."""
    src = tmp_path / "long.txt"
    text = LONG + "\n" + LONG + "\n\n...\n"  # punctuation alone: an utterance without words or audio
    src.write_text(text)
    pause = ["--sentence-silence", silence] if silence else ["--subtasks", "5"]
    gflite(str(src), str(tmp_path / "o.wav"), "-voice", "kal16", "--timings", str(tmp_path / "t.json"), *pause)
    total, rate = frames(tmp_path / "o.wav")
    doc = json.loads((tmp_path / "t.json").read_text("utf-8"))
    got, said = doc["sentences"], doc["words"]
    assert doc["samples"] == total
    assert [s["index"] for s in got] == list(range(len(got))) and len(got) > 50
    gap = round(float(silence) * rate) if silence else 0
    # After the last sentence, only what gflite inserted: --sentence-silence takes
    # the closing "..." for a sentence start and pauses before it (flite says
    # nothing there). Without pauses the last sentence ends with the audio, exactly.
    assert total - got[-1]["audio_end_sample"] == gap
    for s in got:
        mine = [w for w in said if w["sentence"] == s["index"]]
        assert (s["start_sample"], s["end_sample"]) == (mine[0]["start_sample"], mine[-1]["end_sample"])
        assert s["audio_start_sample"] <= s["start_sample"] <= s["end_sample"] <= s["audio_end_sample"]
        for key in ("start", "end", "audio_start", "audio_end"):
            assert s[key] == s[f"{key}_sample"] / rate
        assert " ".join(w["text"] for w in mine) == s["text"]
        assert " ".join(text[s["span"][0]:s["span"][1]].split()) == s["text"]
    for a, b in zip(got, got[1:]):
        # Utterances follow each other: nothing between them but a pause gflite inserted.
        assert b["audio_start_sample"] - a["audio_end_sample"] in {0, gap}
    if silence:
        assert sum(b["audio_start_sample"] - a["audio_end_sample"] for a, b in zip(got, got[1:])) > 0
