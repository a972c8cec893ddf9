"""Cut plans (gflite.cutplan): a rerun of the same text takes its cuts from the
result cache, without nltk, and a plan is never trusted to cut anywhere flite
would not."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gflite import chunking, cutplan, pipeline, synth
from gflite.gwasm.cache import ResultCache

ROOT = Path(__file__).resolve().parent.parent
LONG = (ROOT / "sample_texts" / "long.txt").read_text("ascii")


def make_job(book: Path, out: Path | str, voice: str = "kal16", **kw: object) -> pipeline.Job:
    options = synth.SynthOptions(synth.resolve_voice(voice))
    return pipeline.Job(source=pipeline.Source("file", str(book)), output=str(out), options=options, **kw)


def _plans(cache: ResultCache) -> list[Path]:
    return sorted((cache.root / "results" / "plans").glob("*.plan"))


def test_a_plan_round_trips_and_equals_splits_cuts() -> None:
    text = LONG * 2
    cuts = [c.start for c in chunking.split(text, target_chars=600)[1:]]
    key = cutplan.key(text, target_chars=600)
    assert cutplan.decode(cutplan.encode(key, text, cuts), key, text) == tuple(cuts)
    # Another text, option or chunk count is another plan.
    assert len({key, cutplan.key(text + " ", target_chars=600), cutplan.key(text, target_chars=601),
                cutplan.key(text, target_chars=600, subtasks=3)}) == 4


@pytest.mark.parametrize("damage", ["json", "checksum", "key", "chars", "mid-word", "not rising", "outside",
                                    "bool", "extra field"])
def test_a_damaged_plan_is_refused(damage: str) -> None:
    text = LONG * 2
    cuts = [c.start for c in chunking.split(text, target_chars=600)[1:]]
    key = cutplan.key(text, target_chars=600)
    raw = json.loads(cutplan.encode(key, text, cuts))

    def sealed(new: list) -> dict:  # a plan whose checksum fits its cuts: only the cuts are wrong
        return {**raw, "cuts": new, "check": cutplan._check(key, new)}

    bad: bytes | dict
    if damage == "json":
        bad = cutplan.encode(key, text, cuts)[:-3]
    elif damage == "checksum":
        bad = {**raw, "cuts": [cuts[0] + 1, *cuts[1:]]}
    elif damage == "key":
        bad = {**raw, "key": cutplan.key(text, target_chars=700)}
    elif damage == "chars":
        bad = {**raw, "chars": len(text) + 1}
    elif damage == "mid-word":
        bad = sealed([cuts[0] + 2, *cuts[1:]])
    elif damage == "not rising":
        bad = sealed([cuts[1], cuts[0], *cuts[2:]])
    elif damage == "outside":
        bad = sealed([*cuts, len(text) + 5])
    elif damage == "bool":
        bad = sealed([True, *cuts])
    else:
        bad = {**raw, "more": 1}
    data = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
    assert cutplan.decode(data, key, text) is None


def test_a_rerun_takes_the_plan_and_never_imports_nltk(tmp_path: Path) -> None:
    """Past STREAM_CHARS the cuts stream from the chunker and are stored once
    the last is made; a rerun (a fresh process, so nothing is imported yet)
    reads them back, and nltk is never imported."""
    book = tmp_path / "book.txt"
    text = (LONG + "\n\n") * 8  # > pipeline.STREAM_CHARS: the streamed path
    assert len(text) > pipeline.STREAM_CHARS
    book.write_text(text, "ascii")
    cache = ResultCache(tmp_path / "cache")
    first = pipeline.render(make_job(book, tmp_path / "a.wav", workers=2), cache=cache)
    (plan,) = _plans(cache)
    stored = json.loads(plan.read_bytes())["cuts"]
    assert stored == [c.start for c in chunking.split(text, target_chars=pipeline._target(
        make_job(book, "-")))[1:]]
    assert len(stored) + 1 == first.chunks
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from gflite import pipeline, synth\n"
        "from gflite.gwasm.cache import ResultCache\n"
        f"job = pipeline.Job(source=pipeline.Source('file', {str(book)!r}), output={str(tmp_path / 'b.wav')!r},"
        " options=synth.SynthOptions(synth.resolve_voice('kal16')), workers=2)\n"
        f"s = pipeline.render(job, cache=ResultCache(Path({str(tmp_path / 'cache')!r})))\n"
        "print(s.chunks, s.from_cache, sorted(m for m in sys.modules if m.split('.')[0] == 'nltk'))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.split() == [str(first.chunks), str(first.chunks), "[]"], out.stderr
    assert (tmp_path / "b.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()


def test_a_damaged_plan_is_removed_and_made_again(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text(LONG * 2, "ascii")
    cache = ResultCache(tmp_path / "cache")
    pipeline.render(make_job(book, tmp_path / "a.wav", target_chars=600, workers=2), cache=cache)
    (plan,) = _plans(cache)
    good = plan.read_bytes()
    plan.write_bytes(good.replace(b'"cuts": [', b'"cuts": [1, '))  # a cut inside the first word
    pipeline.render(make_job(book, tmp_path / "b.wav", target_chars=600, workers=2), cache=cache)
    assert (tmp_path / "b.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()
    assert plan.read_bytes() == good  # dropped, then stored anew from the chunker


def test_a_wrong_but_sound_plan_cannot_change_kals_audio(tmp_path: Path) -> None:
    """A plan at other utterance starts than split's (as a chunker that cut
    elsewhere but kept its key would store) passes every check; since every
    cut is one of flite's own breaks, the audio is still flite's, sample for sample."""
    book = tmp_path / "book.txt"
    text = LONG * 2
    book.write_text(text, "ascii")
    cache = ResultCache(tmp_path / "cache")
    pipeline.render(make_job(book, tmp_path / "a.wav", target_chars=600, workers=2), cache=cache)
    (plan,) = _plans(cache)
    raw = json.loads(plan.read_bytes())
    other = list(chunking.utterance_starts(text)[1::7])
    assert other != raw["cuts"]
    plan.write_text(json.dumps({**raw, "cuts": other, "check": cutplan._check(raw["key"], other)}))
    summary = pipeline.render(make_job(book, tmp_path / "b.wav", target_chars=600, workers=2), cache=cache)
    assert summary.chunks == len(other) + 1  # the plan was taken
    assert (tmp_path / "b.wav").read_bytes() == (tmp_path / "a.wav").read_bytes()


def test_no_plan_without_the_cache_or_for_literal_text(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    book.write_text(LONG * 2, "ascii")
    cache = ResultCache(tmp_path / "cache")
    pipeline.render(make_job(book, "none", target_chars=600, workers=2, use_cache=False), cache=cache)
    assert _plans(cache) == []
    options = synth.SynthOptions(synth.resolve_voice("kal16"))
    pipeline.render(pipeline.Job(source=pipeline.Source("text", LONG[:2000]), output="none", options=options),
                    cache=cache)
    short = tmp_path / "short.txt"
    short.write_text(LONG[:500], "ascii")  # one chunk at any size: no nltk, nothing to keep
    pipeline.render(make_job(short, "none", workers=1), cache=cache)
    assert _plans(cache) == []
