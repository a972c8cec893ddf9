"""Chunks → subtasks: voices, flite's feature flags, and what each subtask carries."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gflite import synth
from gflite.chunking import split
from gflite.errors import InputError, UsageError
from gflite.flitewasm import VOICES

FLITE = shutil.which("flite") or "/usr/bin/flite"


@pytest.fixture(scope="module")
def slt_vox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real voice file, dumped by native flite."""
    path = tmp_path_factory.mktemp("vox") / "slt.flitevox"
    subprocess.run([FLITE, "-voice", "slt", "-voicedump", str(path)], check=True)
    return path


@pytest.mark.parametrize("name", VOICES)
def test_builtin_voices(name: str) -> None:
    voice = synth.resolve_voice(name)
    assert voice == synth.Voice(name)
    assert voice.flitevox is None
    assert voice.rate == (8000 if name == "kal" else 16000)
    assert synth.SynthOptions(voice).flite_args() == ("-voice", name)


@pytest.mark.parametrize("alias, name", [("cmu_us_kal", "kal"), ("cmu_us_kal_diphone", "kal"),
                                         ("cmu_us_kal16", "kal16"), ("cmu_us_awb", "awb"),
                                         ("cmu_us_rms", "rms"), ("cmu_us_slt", "slt")])
def test_flites_long_voice_names(alias: str, name: str, tmp_path: Path) -> None:
    assert synth.resolve_voice(alias) == synth.Voice(name)
    # Native flite gives the same voice for both names (kal is also its fallback).
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    subprocess.run([FLITE, "-voice", alias, "-t", "Hello.", "-o", str(a)], check=True)
    subprocess.run([FLITE, "-voice", name, "-t", "Hello.", "-o", str(b)], check=True)
    assert a.read_bytes() == b.read_bytes()


def test_voice_file(slt_vox: Path) -> None:
    voice = synth.resolve_voice(str(slt_vox))
    assert voice.name == "slt" and voice.flitevox == slt_vox.read_bytes()
    assert voice.cost_name == "slt" and voice.rate == 16000
    assert synth.resolve_voice(f"file://{slt_vox}") == voice
    # The file goes to every subtask under a fixed name, which flite loads as a path.
    assert synth.SynthOptions(voice).flite_args() == ("-voice", synth.VOICE_FILE)


@pytest.mark.parametrize(
    "name, message",
    [
        ("foo", "unknown voice 'foo'"),
        ("Slt", "unknown voice 'Slt'"),  # flite's names are case-sensitive
        ("awb_time", "'awb_time' is not built into flite.wasm"),  # native flite has it; flite.wasm does not
        ("cmu_time_awb", "is not built into flite.wasm"),
        ("", "unknown voice"),
        ("missing.flitevox", "cannot read voice file missing.flitevox"),
        ("http://example.invalid/slt.flitevox", "voice URLs are not supported"),
    ],
)
def test_bad_voices(name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        synth.resolve_voice(name)


def test_voice_file_must_be_a_voice(tmp_path: Path) -> None:
    fake = tmp_path / "fake.flitevox"
    fake.write_bytes(b"RIFF not a voice")
    with pytest.raises(InputError, match="not a flite voice file"):
        synth.resolve_voice(str(fake))
    empty = tmp_path / "kal.flitevox"  # what `flite -voice kal -voicedump` writes
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="not a flite voice file"):
        synth.resolve_voice(str(empty))
    with pytest.raises(InputError, match="cannot read voice file"):
        synth.resolve_voice(str(tmp_path))  # a directory


@pytest.mark.parametrize(
    "flag, fv",
    [
        ("--setf", "duration_stretch=1.5"),
        ("--setf", "duration_stretch=2"),
        ("--setf", "int_f0_target_mean=-.5e2"),
        ("--seti", "verbose=+3"),
        ("--sets", "name=any thing = at all"),
        ("--sets", "empty="),
        ("-s", "x.y:z-w=abc"),
    ],
)
def test_good_features(flag: str, fv: str) -> None:
    assert synth.parse_feature(flag, fv) == (flag, fv)


@pytest.mark.parametrize(
    "flag, fv, message",
    [
        ("--setf", "duration_stretch=abc", "not a number"),
        ("--setf", "duration_stretch=", "not a number"),
        ("--setf", "duration_stretch=1.5x", "not a number"),  # flite's atof would take 1.5 silently
        ("--setf", "duration_stretch=nan", "not a number"),
        ("--seti", "n=1.5", "not an integer"),
        ("--seti", "n=", "not an integer"),
        ("--setf", "duration_stretch", "takes NAME=VALUE"),
        ("--sets", "=value", "takes NAME=VALUE"),
        ("-s", "1x=2", "takes NAME=VALUE"),
        ("--sets", "x=" + "y" * 5000, "too long"),
    ],
)
def test_bad_features(flag: str, fv: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        synth.parse_feature(flag, fv)


def test_features_and_ssml_reach_flite_in_order() -> None:
    options = synth.SynthOptions(
        synth.Voice("kal16"), features=(("--setf", "duration_stretch=1.2"), ("-s", "a=b")), ssml=True
    )
    assert options.flite_args() == ("--setf", "duration_stretch=1.2", "-s", "a=b", "-voice", "kal16", "-ssml")


TEXT = "First sentence here. Second one follows!\n\nA new paragraph? Yes.\n"


def test_subtasks_carry_their_chunk_as_a_file() -> None:
    chunks = split(TEXT, subtasks=3)
    assert len(chunks) == 3
    tasks = synth.subtasks(chunks, synth.SynthOptions(synth.Voice("kal16")))
    assert [t.index for t in tasks] == [0, 1, 2]
    assert [t.name for t in tasks] == ["chunk00001", "chunk00002", "chunk00003"]
    for t, c in zip(tasks, chunks):
        assert t.args == ("-f", synth.IN_NAME, "-o", synth.OUT_NAME, "-voice", "kal16")
        assert t.inputs == ((synth.IN_NAME, c.text.encode("ascii")),)
        assert t.outputs == (synth.OUT_NAME,)


def test_literal_text_is_one_utterance() -> None:
    chunk = split(TEXT, subtasks=1)
    (task,) = synth.subtasks(chunk, synth.SynthOptions(synth.Voice("kal")), literal=True)
    assert task.args[:2] == ("-t", TEXT) and task.inputs == ()
    with pytest.raises(ValueError):
        synth.subtasks(split(TEXT, subtasks=2), synth.SynthOptions(synth.Voice("kal")), literal=True)


def test_voice_file_ships_with_every_subtask(slt_vox: Path) -> None:
    voice = synth.resolve_voice(str(slt_vox))
    tasks = synth.subtasks(split(TEXT, subtasks=2), synth.SynthOptions(voice))
    for t in tasks:
        assert dict(t.inputs)[synth.VOICE_FILE] == slt_vox.read_bytes()


def test_digest_changes_exactly_with_text_voice_and_flags() -> None:
    def digests(options: synth.SynthOptions, text: str = TEXT) -> list[str]:
        return [t.digest for t in synth.subtasks(split(text, subtasks=3), options)]

    base = digests(synth.SynthOptions(synth.Voice("kal16")))
    assert base == digests(synth.SynthOptions(synth.Voice("kal16")))
    assert len(set(base)) == 3
    for other in (
        synth.SynthOptions(synth.Voice("kal")),
        synth.SynthOptions(synth.Voice("kal16"), features=(("--setf", "duration_stretch=1.1"),)),
        synth.SynthOptions(synth.Voice("kal16"), ssml=True),
        synth.SynthOptions(synth.Voice("kal16", b"CMU_FLITE_CG_VOXDATA...")),
    ):
        assert not set(digests(other)) & set(base)
    # Same chunk text, same digest, wherever the chunk sits: an edit elsewhere
    # in the book leaves this chunk's cached result usable.
    edited = digests(synth.SynthOptions(synth.Voice("kal16")), TEXT.replace("Yes.", "No, never."))
    assert edited[:2] == base[:2] and edited[2] != base[2]
