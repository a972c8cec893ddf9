"""SSML: named prosody made numeric (flite 2.2 hangs on rate="slow"), breaks as
exact silence, long SSML cut into pieces. Native flite is the oracle."""
from __future__ import annotations

import subprocess
from pathlib import Path

from gflite import ssml
from clirun import GFLITE, native, ok, pcm

RATE = 16000


def test_named_and_percent_prosody_become_flites_numbers() -> None:
    assert [ssml.rate_value(v) for v in ("x-slow", "slow", "medium", "fast", "x-fast")] == [0.5, 0.75, 1.0, 1.3, 1.7]
    assert ssml.rate_value("150%") == 1.5 and ssml.rate_value("+20%") == 1.2 and ssml.rate_value("-50%") == 0.5
    assert ssml.rate_value("0") == 1.0 and ssml.rate_value("nonsense") == 1.0 and ssml.rate_value("1e9") == 4.0
    assert ssml.volume_value("loud") == 130 and ssml.volume_value("silent") == 0 and ssml.volume_value("50") == 50
    out = ssml.translate_prosody('<speak><prosody pitch="high" rate="slow" volume=\'x-soft\'>a</prosody></speak>')
    assert out == '<speak><prosody pitch="high" rate="0.75" volume="30">a</prosody></speak>'


def test_break_times_and_strengths() -> None:
    assert ssml.break_seconds('<break time="500ms"/>') == 0.5
    assert ssml.break_seconds('<break time="1.5s"/>') == 1.5
    assert ssml.break_seconds('<break strength="x-strong"/>') == 1.2
    assert ssml.break_seconds("<break/>") == ssml.STRENGTHS["medium"]


def test_a_break_inside_an_element_closes_and_reopens_it() -> None:
    parts = ssml.pieces('<speak><prosody rate="fast">One <break time="200ms"/> two.</prosody></speak>')
    assert [p.text for p in parts] == ['<speak><prosody rate="1.3">One </prosody></speak>\n',
                                       '<speak><prosody rate="1.3"> two.</prosody></speak>\n']
    assert [p.silence for p in parts] == [0.0, 0.2]


def test_slow_rate_finishes_quickly(tmp_path: Path) -> None:
    # flite 2.2 (native too) loops forever on this 90-byte file.
    src = tmp_path / "slow.ssml"
    src.write_text('<speak><prosody rate="slow">This is said slowly, as a new user tries.</prosody></speak>\n')
    assert len(src.read_bytes()) <= 90
    done = subprocess.run([*GFLITE, "-ssml", str(src), "-o", str(tmp_path / "s.wav"), "--subtask-timeout", "20"],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fast = tmp_path / "n.ssml"
    fast.write_text('<speak><prosody rate="0.75">This is said slowly, as a new user tries.</prosody></speak>\n')
    assert pcm(tmp_path / "s.wav") == native(tmp_path, "-ssml", str(fast))


def test_breaks_are_exact_silence_and_long_ssml_runs_in_pieces(capsys, tmp_path: Path) -> None:
    body = " ".join(f"Sentence number {i} is here." for i in range(1, 180))
    doc = f'<speak>{body} <break time="750ms"/> <p>After the break.</p></speak>\n'
    src = tmp_path / "long.ssml"
    src.write_text(doc)
    err = ok(capsys, "-v", "-ssml", "-voice", "kal16", str(src), "-o", str(tmp_path / "l.wav"))
    parts = ssml.pieces(doc, 4000)  # kal16's chunk aim
    assert len(parts) == 3 and f"in {len(parts)} chunks" in err
    want = bytearray()
    for p in parts:
        want += bytes(2 * round(p.silence * RATE))
        (tmp_path / "p.ssml").write_text(p.text)
        want += native(tmp_path, "-voice", "kal16", "-ssml", str(tmp_path / "p.ssml"))[1]
    assert pcm(tmp_path / "l.wav")[1] == bytes(want)
    assert [p.silence for p in parts] == [0.0, 0.0, 0.75]
    # Cut at a top-level sentence end, the first two pieces are flite's audio of the text before the break.
    (tmp_path / "before.ssml").write_text(f"<speak>{body} </speak>\n")
    first_two = len(want) - 2 * round(0.75 * RATE) - len(native(tmp_path, "-voice", "kal16", "-ssml",
                                                                  str(tmp_path / "p.ssml"))[1])
    assert bytes(want[:first_two]) == native(tmp_path, "-voice", "kal16", "-ssml", str(tmp_path / "before.ssml"))[1]


def test_replacements_touch_words_not_tags() -> None:
    from gflite.replacements import parse

    rules = parse("speak → talk\nrate → pace\n", name="r")
    out = ssml.map_text('<speak><prosody rate="1">We speak at a rate.</prosody></speak>', rules.apply)
    assert out == ('<speak><prosody rate="1">We talk at a pace.</prosody></speak>', 2)
