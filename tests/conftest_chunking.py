"""Native flite as the oracle for chunking and stitching tests (helpers, not fixtures).

Reads WAVs with the standard library's ``wave`` so the oracle does not share
code with gflite/stitching.py.
"""
from __future__ import annotations

import random
import shutil
import subprocess
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_texts"
FLITE = shutil.which("flite") or "/usr/bin/flite"


def sample(name: str, *, crlf: bool = False) -> str:
    text = (SAMPLES / name).read_text("ascii")
    return text.replace("\n", "\r\n") if crlf else text


def flite_wav(text: str, voice: str, workdir: Path, name: str = "in") -> bytes:
    """The WAV file ``flite -voice VOICE -f FILE`` makes from exactly ``text``'s bytes."""
    src, out = workdir / f"{name}.txt", workdir / f"{name}.wav"
    src.write_bytes(text.encode("utf-8"))
    subprocess.run([FLITE, "-voice", voice, "-f", str(src), "-o", str(out)], check=True)
    return out.read_bytes()


def pcm_of(wav_path_or_bytes: Path | bytes) -> tuple[int, bytes]:
    """(sample rate, PCM bytes) of a WAV file."""
    if isinstance(wav_path_or_bytes, bytes):
        import io

        f = wave.open(io.BytesIO(wav_path_or_bytes))
    else:
        f = wave.open(str(wav_path_or_bytes))
    with f:
        return f.getframerate(), f.readframes(f.getnframes())


def flite_pcm(text: str, voice: str, workdir: Path, name: str = "in") -> bytes:
    return pcm_of(flite_wav(text, voice, workdir, name))[1]


def pieces_pcm(texts: list[str], voice: str, workdir: Path) -> bytes:
    """flite run separately on each text, PCM put end to end."""
    return b"".join(flite_pcm(t, voice, workdir, f"piece{i}") for i, t in enumerate(texts))


# Tokens chosen to hit flite's tokenizer and break rules: abbreviations, all-caps
# words, Yahoo!, lone quotes and brackets (empty tokens), colons, questions,
# numbers, ellipses, closing quotes after periods.
SOUP_WORDS = (
    "Mr.", "Dr.", "St.", "Prof.", "U.S.", "NASA.", "Yahoo!", "yes", "no", "The", "Then",
    "it", "Is", "went", "home.", "away,", "why?", "Wait!", "Note:", '"Hello,"', '"Yes."',
    '"', "(", ")", "(see", "this)", "[a]", "...", "etc.", "A.", "I", "Ok.", "12.", "3:45",
    "Oh!", "`quote'", "'tis", "--", "-", "x.Y", "Ab.", "abc.", "ABC.", "Four.", 'end."',
    "go.)", '"Stop!"',
)  # fmt: skip
SOUP_SEPARATORS = (" ",) * 12 + ("  ", "\n", "\r\n", "\n\n", "\r\n\r\n", "\t", " \n", " \n \n", "\r", "\n\r\n")


def token_soup(rng: random.Random) -> str:
    n = rng.randint(3, 40)
    out = [rng.choice(SOUP_SEPARATORS)] if rng.random() < 0.2 else []
    for i in range(n):
        out.append(rng.choice(SOUP_WORDS))
        if i < n - 1 or rng.random() < 0.6:
            out.append(rng.choice(SOUP_SEPARATORS))
    return "".join(out)


def cut(text: str, offsets: list[int]) -> list[str]:
    edges = [0, *offsets, len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:])]


def _tokens(text: str):  # type: ignore[no-untyped-def]
    """flite's ``ts_get`` over ``text`` (src/utils/cst_tokenstream.c)."""
    from gflite.chunking import _WORD, _Token, _name_punc

    prev_end = 0
    for m in _WORD.finditer(text):
        name, punc = _name_punc(m.group())
        ws = text[prev_end : m.start()]
        yield _Token(prev_end, m.start(), name, punc, ws, m.end() == len(text))
        prev_end = m.end()
    if prev_end < len(text) or not text:
        # Trailing whitespace: the next ts_get reads it and returns an empty token.
        yield _Token(prev_end, len(text), "", "", text[prev_end:], True)


def reference_utterance_breaks(text: str) -> list[tuple[int, int]]:
    """flite's loop in ``flite_ts_to_speech`` (src/synth/flite.c), mirrored token
    by token with no shortcut: the oracle for :func:`gflite.chunking.iter_utterance_breaks`,
    which asks the break rule only where it could say yes."""
    from gflite.chunking import _MAX_UTT_TOKENS, _Token, _breaks

    out = []
    tokens = _tokens(text)
    end = _Token(len(text), len(text), "", "", "", True)
    eof = not text
    count = 0
    tail = None
    while not eof or count > 0:
        tok = next(tokens, end)
        eof = tok.eof
        if not tok.name or count > _MAX_UTT_TOKENS or (tail is not None and _breaks(tail, tok)):
            if eof:
                break
            count, tail = 0, None
            if tok.name and tok.start > 0:
                out.append((tok.ws_start, tok.start))
        count += 1
        tail = tok
    return out

