"""Chunking: cuts only where flite ends an utterance, proven against native flite."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys

import pytest

from conftest_chunking import ROOT, cut, flite_pcm, pieces_pcm, reference_utterance_breaks, sample, token_soup
from gflite import chunking
from gflite.chunking import split, utterance_starts
from gflite.errors import UsageError

# --- flite's break rules, replayed --------------------------------------------


@pytest.mark.parametrize(
    "text, starts",
    [
        ("Hello. World.\n", ["World."]),
        ("Hello world.\n", []),
        ("Mr. Smith came.\n", []),  # short capitalised word: an abbreviation
        ("Prof. Smith came.\n", ["Smith"]),  # four letters: not one
        ("He met U.S. Army men.\n", []),  # ends in a capital: abbreviation
        ("Mr.\nSmith came.\n", []),
        ("Mr.\r\nSmith came.\n", ["Smith"]),  # two whitespace characters after the period
        ("Mr.  Smith came.\n", ["Smith"]),
        ("It ended. then more.\n", []),  # no capital after the period
        ("Note: it is so.\n", ["it"]),
        ("Why? because.\n", ["because."]),
        ("Yahoo! is a name.\n", []),  # flite's own special case
        ("Yahoo! Is it?\n", ["Is"]),
        ("one\n\ntwo\n", ["two"]),  # a blank line
        ("one\n \ntwo\n", ["two"]),
        ("one\r\rtwo\n", []),  # lone CRs are not newlines to flite
        ('He said. "Go on."\n', ['"Go']),  # pre-punctuation belongs to the token
        ('Stop. " Go.\n', []),  # a lone quote is an empty token: never cut before it
        ("Hello. World", []),  # flite drops a break-starting last token at end of file
        ("", []),
        ("   \n", []),
    ],
)
def test_utterance_starts_follow_flite_rules(text: str, starts: list[str]) -> None:
    got = [re.match(r"\S+", text[i:]).group() for i in utterance_starts(text)]
    assert got == starts


def _break_cases() -> list[str]:
    rng = random.Random(20261202)
    texts = [sample(name, crlf=crlf) for name in ("dialogue.txt", "long.txt", "hello.txt") for crlf in (False, True)]
    texts += [token_soup(rng) for _ in range(300)]
    # Stretches past the 500-token limit, with and without breaks inside, at the end or not.
    texts += ["word " * 1200, "word " * 700 + "End. Then " + "more " * 700, ("a. B " * 400).strip(), "x " * 501 + "y"]
    # What the rule looks at, in every order: marks, capitals, blank lines, lone quotes, Yahoo.
    alphabet = ["Mr.", "U.S.", "Prof.", "end.", "Why?", "Note:", "Yahoo!", "yes", "Is", '"', "'(", '"Go', "x.y",
                " ", "  ", "\n", "\n\n", "\r\n\r\n", "\n \n", "\t"]
    for _ in range(500):
        texts.append("".join(rng.choice(alphabet) + rng.choice([" ", "", "\n"]) for _ in range(rng.randint(0, 40))))
    corpus = ROOT.parent / "shared" / "corpus" / "news_from_nowhere.txt"
    if corpus.exists():  # the benchmark book, where this machine has it
        texts.append(corpus.read_text("utf-8"))
    return texts


def test_the_fast_break_scan_is_flites_loop_token_for_token() -> None:
    for text in _break_cases():
        assert list(chunking.iter_utterance_breaks(text)) == reference_utterance_breaks(text), text[:200]


def test_500_token_limit() -> None:
    text = "go " * 1300
    # flite breaks when the utterance already holds 501 tokens.
    assert utterance_starts(text) == (501 * 3, 1002 * 3)


def _unpunctuated(words: int) -> str:
    rng = random.Random(3)
    return " ".join(rng.choice(["go", "ran", "the", "big", "it"]) for _ in range(words)) + "\n"


def test_long_text_without_punctuation_is_cut_at_the_token_limit() -> None:
    text = _unpunctuated(1300)
    chunks = split(text, target_chars=2000)
    assert [c.start for c in chunks[1:]] == list(utterance_starts(text))
    assert len(chunks) == 3


@pytest.mark.slow
def test_token_limit_cuts_match_flite(tmp_path) -> None:
    text = _unpunctuated(1300)
    chunks = split(text, target_chars=2000)
    assert pieces_pcm([c.text for c in chunks], "kal16", tmp_path) == flite_pcm(text, "kal16", tmp_path)


# --- the chunk API --------------------------------------------------------------


def _check_chunks(text: str, chunks: tuple[chunking.Chunk, ...]) -> None:
    assert "".join(c.text for c in chunks) == text
    assert [c.index for c in chunks] == list(range(len(chunks)))
    starts = set(utterance_starts(text))
    pos = 0
    for c in chunks:
        assert (c.start, c.end) == (pos, pos + len(c.text))
        assert text[c.start : c.end] == c.text
        assert c.sha256 == hashlib.sha256(c.text.encode()).hexdigest()
        assert c.data == c.text.encode()
        assert c.start == 0 or c.start in starts
        pos = c.end


@pytest.mark.parametrize("name", ["dialogue.txt", "long.txt"])
@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("subtasks", [None, 1, 2, 3, 5, 8])
def test_chunks_tile_the_text_at_utterance_starts(name: str, crlf: bool, subtasks: int | None) -> None:
    text = sample(name, crlf=crlf)
    chunks = split(text, subtasks=subtasks)
    _check_chunks(text, chunks)
    if subtasks:
        assert len(chunks) == subtasks
        sizes = [len(c.text) for c in chunks]
        assert max(sizes) < 2 * min(sizes)


def test_chunks_end_at_sentence_ends() -> None:
    text = sample("long.txt")
    chunks = split(text, subtasks=12) + split(text, target_chars=1000)
    for c in chunks[:-1]:
        tail = c.text.rstrip()
        after = text[c.start + len(tail) : c.end]
        assert tail.endswith((".", "?", "!", '."', '?"', '!"')) or after.count("\n") >= 2, tail[-40:]


def test_default_chunks_depend_on_text_only_grow_and_taper() -> None:
    text = sample("long.txt") * 3
    n, target = len(text), 2000
    chunks = split(text, target_chars=target)
    assert chunks == split(text, target_chars=target)
    sizes = [len(c.text) for c in chunks]
    assert sizes[0] <= target // 8 * 1.5  # the first chunk is small: streaming starts soon
    assert all(s <= target * 1.5 for s in sizes)
    body = [len(c.text) for c in chunks[4:] if c.start < n - chunking.TAPER_DIVISOR * target]
    assert len(body) >= 5 and 1000 <= sum(body) / len(body) <= 2400  # the middle: about the target
    # The end tapers, so the workers finish together: the last chunks are
    # short, and the very last is no longer than the first.
    tail = [c for c in chunks if c.start >= n - chunking.TAPER_DIVISOR * target]
    assert len(tail) >= 4
    assert all(len(c.text) <= target / 2 for c in tail[-3:]), [len(c.text) for c in tail]
    assert sizes[-1] <= target // 8 * 1.5


def test_taper_keeps_the_body_cuts(monkeypatch) -> None:
    """The taper decides from the text left after a chunk's start, which an
    edit further on does not change: the body's cuts are those of the same
    text without a taper (the cache keeps every chunk before the tail)."""
    text = sample("long.txt") * 3
    tapered = split(text, target_chars=1000)
    body = [c for c in tapered if c.start < len(text) - chunking.TAPER_DIVISOR * 1000]
    monkeypatch.setattr(chunking, "TAPER_DIVISOR", 1e-9)  # no taper
    plain = split(text, target_chars=1000)
    assert len(body) >= 10 and body == list(plain[: len(body)])


def test_an_edit_changes_only_the_chunks_around_it() -> None:
    """Cuts are content-defined, so re-rendering an edited book re-synthesises
    only the chunks next to the edit; every other chunk keeps its bytes."""
    text = sample("long.txt") * 3
    before = {c.sha256 for c in split(text, target_chars=1000)}
    counts = []
    for frac in (0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85):
        at = text.index(". ", int(len(text) * frac)) + 1
        edited = text[:at] + " And then, quite unexpectedly, it rained all afternoon." + text[at:]
        after = split(edited, target_chars=1000)
        changed = [c.index for c in after if c.sha256 not in before]
        assert 1 <= len(changed) <= 4, (frac, changed, len(after))
        counts.append(len(changed))
    assert sum(counts) <= 2 * len(counts), counts


def test_subtasks_beyond_the_break_points_gives_fewer_chunks() -> None:
    text = "Hello there. Goodbye now.\n\nThe end.\n"
    chunks = split(text, subtasks=10)
    assert [c.text for c in chunks] == ["Hello there. ", "Goodbye now.\n\n", "The end.\n"]
    # flite reads "One." as an abbreviation (short, capitalised), so no cut after it.
    assert [c.text for c in split("One. Two.\n", subtasks=2)] == ["One. Two.\n"]


def test_short_text_is_one_chunk_without_nltk() -> None:
    code = (
        "import sys\n"
        "from gflite import chunking, text, stitching\n"
        "c = chunking.split(text.from_string('Hello. How are you?').text)\n"
        "assert len(c) == 1, c\n"
        "assert 'nltk' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_bad_arguments() -> None:
    with pytest.raises(UsageError):
        split("Hello.", subtasks=0)
    with pytest.raises(UsageError):
        split("Hello.", target_chars=0)


def test_huge_subtasks_is_clamped_at_once() -> None:
    """--subtasks 99999999999999999999 spun for minutes in a loop to N; now clamped to the cuts there are."""
    import threading

    text = "One sentence here. " * 40 + "\n\nAnother paragraph. And more. " * 40
    out: list = []
    worker = threading.Thread(target=lambda: out.append(split(text, subtasks=99999999999999999999)), daemon=True)
    worker.start()
    worker.join(60)  # minutes of work before the fix; a fraction of a second after it
    assert out, "split() did not return"
    chunks = out[0]
    assert "".join(c.text for c in chunks) == text
    assert chunks == split(text, subtasks=len(utterance_starts(text)) + 1)
    assert len(chunks) > 40


def test_shipped_punkt_params_match_their_script() -> None:
    # The trained part may vary with nltk's version; the curated list must not.
    script = (ROOT / "scripts" / "make_punkt_params.py").read_text()
    listed = script.split('ABBREVIATIONS = """')[1].split('"""')[0].split()
    shipped = chunking.shipped_params()
    assert {"mr", "dr", "st", "mrs"} <= set(listed) <= shipped.abbrev_types
    assert shipped.ortho_context and shipped.sent_starters is not None
    for name in json.loads(chunking.PARAMS_PATH.read_text())["trained_on"]:
        assert (ROOT / name).is_file()


def test_punkt_keeps_abbreviations_inside_sentences() -> None:
    text = "I saw Dr. Patel on St. Agnes Street today. She waved.\n"
    ends = chunking.sentence_ends(text)
    assert text.index("today.") + len("today.") in ends
    assert text.index("Dr.") + 3 not in ends and text.index("St.") + 3 not in ends


# --- the proof: chunks' audio equals the whole file's -------------------------

ORACLE_CASES = [
    ("dialogue.txt", False, "kal16", [None, 2, 5]),
    ("dialogue.txt", True, "kal16", [None, 3]),
    ("dialogue.txt", False, "kal", [None, 4]),
    ("long.txt", False, "kal16", [None, 3, 7]),
    ("long.txt", True, "kal16", [None, 4]),
]


@pytest.mark.parametrize("name, crlf, voice, variants", ORACLE_CASES)
def test_stitched_chunks_equal_whole_file(tmp_path, name, crlf, voice, variants) -> None:
    text = sample(name, crlf=crlf)
    whole = flite_pcm(text, voice, tmp_path, "whole")
    assert len(whole) > 0
    for subtasks in variants:
        chunks = split(text, subtasks=subtasks, target_chars=2000)
        assert len(chunks) > 1
        assert pieces_pcm([c.text for c in chunks], voice, tmp_path) == whole, subtasks


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dialogue.txt", "long.txt"])
@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("voice", ["kal16", "kal"])
def test_every_utterance_alone_equals_whole_file(tmp_path, name, crlf, voice) -> None:
    text = sample(name, crlf=crlf)
    pieces = cut(text, list(utterance_starts(text)))
    assert pieces_pcm(pieces, voice, tmp_path) == flite_pcm(text, voice, tmp_path, "whole")


def _soup_cases(seed: int, n: int, tmp_path) -> None:
    rng = random.Random(seed)
    checked = 0
    for _ in range(n):
        text = token_soup(rng)
        starts = utterance_starts(text)
        if not starts:
            continue
        offsets = sorted(rng.sample(starts, rng.randint(1, len(starts))))
        whole = flite_pcm(text, "kal16", tmp_path, "whole")
        assert pieces_pcm(cut(text, offsets), "kal16", tmp_path) == whole, (text, offsets)
        checked += 1
    assert checked > n // 2


def test_random_token_soup_cut_anywhere_flite_breaks(tmp_path) -> None:
    _soup_cases(seed=2024, n=15, tmp_path=tmp_path)


@pytest.mark.slow
def test_random_token_soup_many(tmp_path) -> None:
    _soup_cases(seed=7, n=200, tmp_path=tmp_path)


@pytest.mark.parametrize(
    "text, bad_cut",
    [
        # After "Mr." flite keeps going: cutting there changes the prosody.
        ("Then Mr. Smith went home, and that was all.\n", "Smith"),
        # A one-word utterance at the very end of a chunk is dropped by flite, so
        # the whitespace before the next utterance must stay with it.
        ("Chapter Five: Afterwards\n\nIt rained all day.\n", "\n\nIt"),
    ],
)
def test_oracle_catches_a_wrong_cut(tmp_path, text: str, bad_cut: str) -> None:
    whole = flite_pcm(text, "kal16", tmp_path, "whole")
    at = text.index(bad_cut)
    assert at not in utterance_starts(text)
    assert pieces_pcm(cut(text, [at]), "kal16", tmp_path) != whole


# --- forced cuts (a book's chapters, pauses) ------------------------------------


def test_forced_cuts_start_chunks_and_split_each_stretch_as_its_own_text() -> None:
    text = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
    starts = utterance_starts(text)
    forced = (starts[len(starts) // 3], starts[2 * len(starts) // 3])
    chunks = split(text, target_chars=1000, forced=forced)
    assert "".join(c.text for c in chunks) == text
    assert {c.start for c in chunks} >= set(forced)
    bounds = [0, *forced, len(text)]
    for a, b in zip(bounds, bounds[1:]):
        alone = split(text[a:b], target_chars=1000)
        assert [(c.start - a, c.text) for c in chunks if a <= c.start < b] == [(c.start, c.text) for c in alone]
    # No forced cut (plain text): exactly the cuts as before.
    assert split(text, target_chars=1000, forced=()) == split(text, target_chars=1000)
    assert split(text, target_chars=1000, forced=(0, len(text))) == split(text, target_chars=1000)


def test_chunks_cut_exactly_where_told() -> None:
    assert [c.text for c in chunking.at("ab cd ef", [3, 6])] == ["ab ", "cd ", "ef"]
    assert [c.text for c in chunking.at("ab", [0, 2])] == ["ab"]


def test_valid_cuts_are_exactly_flites_utterance_starts() -> None:
    """valid_cuts (what a stored cut plan must pass) accepts every utterance
    start, a break after 500 tokens too (checked by tokenising the whole text),
    and nothing else."""
    long = (ROOT / "sample_texts" / "long.txt").read_text("ascii")
    no_punct = " ".join(re.sub(r"[^A-Za-z]", " ", long).split()) * 3  # flite's 500-token breaks only
    for text in (long, long.replace(". ", ".\n\n"), no_punct, 'He said " Yes. Mr. Smith went. U.S. Army!'):
        starts = chunking.utterance_starts(text)
        assert chunking.valid_cuts(text, starts)
        others = [c for c in range(1, len(text)) if c not in set(starts)]
        # The local rule never proves a break that is not one...
        assert not any(chunking._breaks_at(text, c) for c in others)
        # ...and the whole-text check refuses the rest (a sample: each call tokenises the text).
        assert not any(chunking.valid_cuts(text, [c]) for c in random.Random(7).sample(others, min(40, len(others))))
    # There, some breaks are the 500-token ones, which only the whole-text check proves.
    assert not all(chunking._breaks_at(no_punct, c) for c in chunking.utterance_starts(no_punct))
    starts = chunking.utterance_starts(long)
    assert not chunking.valid_cuts(long, [starts[1], starts[0]])  # not rising
    assert not chunking.valid_cuts(long, [starts[0], starts[0]])
    assert not chunking.valid_cuts(long, [True])
    assert not chunking.valid_cuts(long, [0]) and not chunking.valid_cuts(long, [len(long)])


def test_punkt_without_nltks_package_import_is_nltks_punkt_and_leaves_nltk_importable() -> None:
    """chunking.punkt() imports Punkt without nltk/__init__.py (in a fresh
    process, where nothing imported nltk yet): it trains the same parameters
    as the real nltk's Punkt, leaves no nltk module behind, and a later
    ``import nltk`` is the whole real package."""
    script = r"""
import sys
from gflite import chunking
text = open(sys.argv[1], encoding="ascii").read() * 3
lean = chunking.punkt()
assert not [m for m in sys.modules if m.split(".")[0] == "nltk"], "left in sys.modules"
ours = chunking.split(text, target_chars=600)
lean_params = chunking._params_for(text)
import nltk
import nltk.tokenize.punkt as real
from nltk.tokenize import PunktSentenceTokenizer, sent_tokenize  # the real package, whole
assert nltk.corpus and nltk.tokenize.punkt is real and real is not lean
real_params = real.PunktTrainer()
real_params.train(text[:chunking._TRAIN_CHARS], finalize=True)
p = real_params.get_params()
assert lean_params.abbrev_types >= p.abbrev_types and lean_params.collocations >= p.collocations
chunking._punkt = None  # the next split takes the real, already imported Punkt
assert chunking.punkt() is real
assert chunking.split(text, target_chars=600) == ours
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script, str(ROOT / "sample_texts" / "long.txt")],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "ok", out.stderr


def test_punkt_falls_back_to_the_normal_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise ImportError("no stand-ins today")

    monkeypatch.setattr(chunking, "_punkt", None)
    monkeypatch.setattr(chunking, "_punkt_alone", broken)
    import nltk.tokenize.punkt as real

    assert chunking.punkt() is real
