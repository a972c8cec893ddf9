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
from gflite import voices
from gflite.gwasm.subtask import Subtask

IN_NAME = "in.txt"
OUT_NAME = "out.wav"
TIMINGS_NAME = "out.tim"  # flite.wasm's word timings (gflite.timings_file), only when asked
VOICE_FILE = "voice.flitevox"
LEX_FILE = "addenda.lex"
# flite's print flags: each chunk's flite prints to its stdout, gflite prints those in order.
PRINT_FLAGS = ("-pw", "-ps", "-psdur")
# flite's --seti/--setf/--sets/--set take NAME=VALUE; NAME is a feature name.
_FEATURE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*=.*$", re.S)
FEATURE_FLAGS = ("--seti", "--setf", "--sets", "-s")
VOX_MAGIC = b"CMU_FLITE_CG_VOXDATA"


@dataclass(frozen=True)
class Voice:
    """A built-in voice by name, or a ``.flitevox`` file shipped with every subtask."""

    name: str  # the built-in name, or the voice file's stem
    flitevox: bytes | None = None

    @property
    def info(self) -> voices.VoiceInfo:
        """The built-in voice this one is (or, for a voice file, whose speed it has)."""
        return voices.info(self.name if self.flitevox is None else voices.VOICE_FILE_LIKE)

    @property
    def rate(self) -> int:
        """Sample rate flite gives this voice; used only when no chunk has any audio."""
        return self.info.sample_rate

    @property
    def cost_name(self) -> str:
        """The built-in voice whose speed this one has, for sizing chunks."""
        return self.info.name


@dataclass(frozen=True)
class SynthOptions:
    """How flite is asked to speak: the voice, its feature settings, SSML, printouts."""
    voice: Voice
    features: tuple[tuple[str, str], ...] = ()  # (flag, "NAME=VALUE") in command-line order
    ssml: bool = False
    prints: tuple[str, ...] = ()  # flite's -pw/-ps/-psdur/-pr REL, as given
    lex_addenda: bytes | None = None  # -add_lex FILE's bytes, shipped with every subtask
    timings: bool = False  # also write TIMINGS_NAME (--subtitles/--timings); off keeps digests as before

    def flite_args(self) -> tuple[str, ...]:
        args: list[str] = []
        for flag, fv in self.features:
            args += [flag, fv]
        args += ["-voice", VOICE_FILE if self.voice.flitevox is not None else self.voice.name]
        if self.ssml:
            args.append("-ssml")
        if self.lex_addenda is not None:
            args += ["-add_lex", LEX_FILE]
        if self.timings:
            args += ["--sets", f"timings_file={TIMINGS_NAME}"]
        return (*args, *self.prints)

    def outputs(self) -> tuple[str, ...]:
        """Files every subtask returns (and every verification compares)."""
        return (OUT_NAME, TIMINGS_NAME) if self.timings else (OUT_NAME,)

    def inputs(self) -> tuple[tuple[str, bytes], ...]:
        """Files every subtask carries besides its text."""
        out: list[tuple[str, bytes]] = []
        if self.voice.flitevox is not None:
            out.append((VOICE_FILE, self.voice.flitevox))
        if self.lex_addenda is not None:
            out.append((LEX_FILE, self.lex_addenda))
        return tuple(out)


# A lexicon addendum is a small text file; flite reads it whole.
MAX_LEX_BYTES = 1 << 20


def read_lex_addenda(path: str) -> bytes:
    """``-add_lex FILE``: its bytes, checked to be a small text file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read lexicon addenda {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_LEX_BYTES or b"\0" in data:
        raise InputError(f"{path} is not a lexicon addenda file (lines 'word : phones')")
    return data


def resolve_voice(name: str) -> Voice:
    """A built-in voice name or a path to a ``.flitevox`` file.

    Native flite silently falls back to kal for a name it does not know; a
    typo should not cost a user an hour of the wrong voice, so we refuse it.
    """
    known = voices.lookup(name)
    if known is not None:
        if not known.in_wasm:
            raise InputError(f"voice {name!r} is not built into flite.wasm; it has {', '.join(voices.BUILT_IN)} "
                             f"(or give a .flitevox file)")
        return Voice(known.name)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", name) and not name.startswith("file://"):
        # flite would fetch it; subtasks get no network, and neither does gflite.
        raise InputError(f"voice URLs are not supported ({name}): download the .flitevox file and give its path")
    path = Path(name[len("file://"):] if name.startswith("file://") else name)
    if path.suffix == ".flitevox" or "/" in name:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read voice file {path}: {exc.strerror or exc}") from None
        # flite's voice files start with this magic; anything else would make it fall back silently.
        if not data.startswith(VOX_MAGIC):
            raise InputError(f"{path} is not a flite voice file (.flitevox)")
        return Voice(path.stem, data)
    raise InputError(f"unknown voice {name!r}; flite.wasm has {', '.join(voices.BUILT_IN)} (or give a .flitevox file)")


# What flite's own parser (flite_main.c's ef_set) takes for each type.
_INT = re.compile(r"^[+-]?[0-9]+$")
_FLOAT = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")


def parse_feature(flag: str, fv: str) -> tuple[str, str]:
    """Check one ``--seti/--setf/--sets/-s NAME=VALUE`` and return ``(flag, fv)``.

    flite reads a bad number as 0 without a word (``atoi``/``atof``), which
    would silently make e.g. ``duration_stretch`` zero; we refuse it instead.
    """
    if flag not in FEATURE_FLAGS:
        raise ValueError(f"not a feature flag: {flag}")
    if not _FEATURE.match(fv):
        raise UsageError(f"{flag} takes NAME=VALUE, not {fv!r}")
    value = fv.split("=", 1)[1]
    if flag == "--seti" and not _INT.match(value):
        raise UsageError(f"{flag} {fv}: {value!r} is not an integer")
    if flag == "--setf" and not _FLOAT.match(value):
        raise UsageError(f"{flag} {fv}: {value!r} is not a number")
    if len(fv.encode("utf-8")) > 4096:
        raise UsageError(f"{flag} value is too long")
    return (flag, fv)


def subtasks(chunks: tuple[Chunk, ...], options: SynthOptions, *, literal: bool = False) -> tuple[Subtask, ...]:
    """One subtask per chunk, named ``chunk00001``…, in chunk order.

    ``literal`` is flite's ``-t TEXT``: the text is one utterance, however many
    sentences it holds, so it must stay one chunk and reach flite as ``-t``.
    """
    if literal and len(chunks) != 1:
        raise ValueError("literal text is spoken as one utterance: give exactly one chunk")
    width = max(5, len(str(len(chunks))))
    return tuple(subtask(c, options, width=width, literal=literal) for c in chunks)


def subtask(chunk: Chunk, options: SynthOptions, *, width: int = 5, literal: bool = False) -> Subtask:
    """The subtask of one chunk (see :func:`subtasks`; ``width`` digits in its
    name, which is no part of its cache key)."""
    return Subtask(
        index=chunk.index,
        name=f"chunk{chunk.index + 1:0{width}d}",
        args=(*(("-t", chunk.text) if literal else ("-f", IN_NAME)), "-o", OUT_NAME, *options.flite_args()),
        inputs=(*(() if literal else ((IN_NAME, chunk.data),)), *options.inputs()),
        outputs=options.outputs(),
    )
