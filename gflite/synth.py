"""Chunks → gwasm subtasks: one ``flite -f in.txt -o out.wav`` per chunk.

Every subtask carries all it needs (the chunk's bytes, a voice file if one was
given) so any provider can run it, and its digest (hence its result-cache key)
changes exactly when its text, voice or flags do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gflite.chunking import Chunk
from gflite.errors import InputError, UsageError
from gflite.flitewasm import VOICES
from gflite.gwasm.subtask import Subtask

IN_NAME = "in.txt"
OUT_NAME = "out.wav"
VOICE_FILE = "voice.flitevox"
# flite's --seti/--setf/--sets/--set take NAME=VALUE; NAME is a feature name.
_FEATURE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*=.*$", re.S)
FEATURE_FLAGS = ("--seti", "--setf", "--sets", "-s")


@dataclass(frozen=True)
class Voice:
    """A built-in voice by name, or a ``.flitevox`` file shipped with every subtask."""

    name: str
    flitevox: bytes | None = None

    @property
    def rate(self) -> int:
        """Sample rate flite gives this voice (a voice file may say otherwise)."""
        return 8000 if self.name == "kal" else 16000


@dataclass(frozen=True)
class SynthOptions:
    voice: Voice
    features: tuple[tuple[str, str], ...] = ()  # (flag, "NAME=VALUE") in command-line order
    ssml: bool = False

    def flite_args(self) -> tuple[str, ...]:
        args: list[str] = []
        for flag, fv in self.features:
            args += [flag, fv]
        args += ["-voice", VOICE_FILE if self.voice.flitevox is not None else self.voice.name]
        if self.ssml:
            args.append("-ssml")
        return tuple(args)


def resolve_voice(name: str) -> Voice:
    """A built-in voice name or a path to a ``.flitevox`` file.

    Native flite silently falls back to kal for a name it does not know; a
    typo should not cost a user an hour of the wrong voice, so we refuse it.
    """
    if name in VOICES:
        return Voice(name)
    path = Path(name[len("file://"):] if name.startswith("file://") else name)
    if path.suffix == ".flitevox" or "/" in name:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read voice file {path}: {exc.strerror or exc}") from None
        # flite's voice files start with this magic; anything else would make it fall back silently.
        if not data.startswith(b"CMU_FLITE_CG_VOXDATA"):
            raise InputError(f"{path} is not a flite voice file (.flitevox)")
        return Voice(path.stem, data)
    raise InputError(f"unknown voice {name!r}; flite.wasm has {', '.join(VOICES)} (or give a .flitevox file)")


def parse_feature(flag: str, fv: str) -> tuple[str, str]:
    if not _FEATURE.match(fv):
        raise UsageError(f"{flag} takes NAME=VALUE, not {fv!r}")
    return (flag, fv)


def subtasks(chunks: tuple[Chunk, ...], options: SynthOptions, *, literal: bool = False) -> tuple[Subtask, ...]:
    """One subtask per chunk, named ``chunk00001``…, in chunk order.

    ``literal`` is flite's ``-t TEXT``: the text is one utterance, however many
    sentences it holds, so it must stay one chunk and reach flite as ``-t``.
    """
    if literal and len(chunks) != 1:
        raise ValueError("literal text is spoken as one utterance: give exactly one chunk")
    voice = ((VOICE_FILE, options.voice.flitevox),) if options.voice.flitevox is not None else ()
    width = max(5, len(str(len(chunks))))
    return tuple(
        Subtask(
            index=c.index,
            name=f"chunk{c.index + 1:0{width}d}",
            args=(*(("-t", c.text) if literal else ("-f", IN_NAME)), "-o", OUT_NAME, *options.flite_args()),
            inputs=(*(() if literal else ((IN_NAME, c.data),)), *voice),
            outputs=(OUT_NAME,),
        )
        for c in chunks
    )
