"""Voice facts: the one table everything reads, and the chunk sizes that keep cuts (and cached chunks) stable."""
from __future__ import annotations

import shutil
import subprocess

from gflite import flitewasm, synth, voices

FLITE = shutil.which("flite") or "/usr/bin/flite"


def test_chunk_sizes_are_unchanged() -> None:
    # These sizes decide every cut: changing them re-synthesises every cached book.
    sizes = {name: voices.chunk_chars(name) for name in voices.BUILT_IN}
    assert sizes == {"kal": 10400, "kal16": 20000, "awb": 1300, "rms": 1200, "slt": 1300}
    assert voices.chunk_chars("unknown") == 1200  # costed as the slowest voice
    assert voices.MEMORY_CHUNK_CHARS == 4000


def test_one_table_for_every_module() -> None:
    assert flitewasm.VOICES == voices.BUILT_IN == ("kal", "kal16", "awb", "rms", "slt")
    for v in voices.ALL:
        if v.in_wasm:
            assert synth.Voice(v.name).rate == v.sample_rate
            for alias in v.aliases:
                assert synth.resolve_voice(alias) == synth.Voice(v.name)


def test_native_flite_lists_the_same_voices() -> None:
    listed = subprocess.run([FLITE, "-lv"], check=True, capture_output=True, text=True).stdout.split()[2:]
    assert sorted(listed) == sorted(v.name for v in voices.ALL)
