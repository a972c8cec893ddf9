"""Facts about flite's voices, in one place: names, aliases, sample rates, speed.

Everything else (flite.wasm's voice list, voice resolution, chunk sizes, the
budget's first estimate and the per-chunk timeout) reads them from here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VoiceInfo:
    """One built-in voice's facts: its names, rate and what it costs to synthesise."""
    name: str  # flite's short name, what flite.wasm is given
    aliases: tuple[str, ...]  # other names flite accepts (its voices' "name" feature, library names)
    sample_rate: int
    seconds_per_kchar: float  # native flite CPU seconds per 1000 characters of English prose
    in_wasm: bool = True  # built into flite.wasm


# Native flite 2.2 CPU seconds per 1000 characters, measured on this project's
# reference machine. In the order flite lists them; the first is flite's default.
# kal's alias list holds "cmu_us_kal" too: not a name flite knows, but flite falls
# back to kal for it, so it gets kal either way.
ALL: tuple[VoiceInfo, ...] = (
    VoiceInfo("kal", ("cmu_us_kal_diphone", "cmu_us_kal"), 8000, 0.12),
    VoiceInfo("kal16", ("cmu_us_kal16",), 16000, 0.04),
    VoiceInfo("awb", ("cmu_us_awb",), 16000, 0.9),
    VoiceInfo("rms", ("cmu_us_rms",), 16000, 1.0),
    VoiceInfo("slt", ("cmu_us_slt",), 16000, 0.9),
    # flite's talking clock (a limited-domain voice: it can only say times); native
    # flite has it, flite.wasm is not built with it.
    VoiceInfo("awb_time", ("cmu_time_awb",), 16000, 0.9, in_wasm=False),
)

BUILT_IN: tuple[str, ...] = tuple(v.name for v in ALL if v.in_wasm)  # flite.wasm's voices, in flite's order
DEFAULT = "kal"
# Voice files are clustergen voices (kal's diphones cannot be dumped); their
# speed is taken as slt's, the voice they are usually dumped from.
VOICE_FILE_LIKE = "slt"

# flite.wasm's cost relative to native flite when chunk sizes were tuned. The
# patches in wasm_bin/patches/ have since made it 0.6-0.9x native, so a chunk is
# now about 0.75-1.1 s of CPU. Kept: it sizes chunks, and chunks twice as big
# measured the same, while unchanged sizes keep the cuts (hence cached chunks and
# slt's noise-dependent audio) as they were.
WASM_FACTOR = 2.0
CHUNK_CPU_SECONDS = 2.5  # aim: 1-5 s of CPU per chunk at WASM_FACTOR
MIN_CHUNK_CHARS = 1000
MAX_CHUNK_CHARS = 20000
# A chunk's audio is about 1.9 kB of 16 kHz samples per character, and its WAV is
# held several times over in flight (guest memory, the worker's and the parent's
# pickles, the parent's read buffer). 4000 characters (~7.5 MB) keeps a fast
# voice's process tree well under 300 MB (kal16 would take 20000: ~390 MB on 2
# cores) at no cost in speed (measured on the whole corpus). It is the size
# chunking aims at, not a hard limit: see chunking.split.
MEMORY_CHUNK_CHARS = 4000

_BY_NAME: dict[str, VoiceInfo] = {n: v for v in ALL for n in (v.name, *v.aliases)}


def lookup(name: str) -> VoiceInfo | None:
    """The voice flite knows by ``name`` (short name or alias), or None."""
    return _BY_NAME.get(name)


def info(name: str) -> VoiceInfo:
    """A voice by short name; an unknown one is costed as the slowest built-in voice."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    return max((v for v in ALL if v.in_wasm), key=lambda v: v.seconds_per_kchar)


def chunk_chars(name: str) -> int:
    """Default chunk size for a voice: CHUNK_CPU_SECONDS of CPU at WASM_FACTOR times its native cost,
    within [MIN_CHUNK_CHARS, MAX_CHUNK_CHARS], rounded down to 100."""
    chars = int(CHUNK_CPU_SECONDS / (WASM_FACTOR * info(name).seconds_per_kchar) * 1000)
    return max(MIN_CHUNK_CHARS, min(MAX_CHUNK_CHARS, chars // 100 * 100))


def cpu_seconds(name: str, characters: int) -> float:
    """Expected flite.wasm CPU seconds for ``characters`` of text (at WASM_FACTOR: on the safe side)."""
    return WASM_FACTOR * info(name).seconds_per_kchar * characters / 1000
