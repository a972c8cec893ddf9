"""Where a text is cut, remembered: a rerun of the same text skips nltk.

Cutting a whole book costs seconds (nltk's import, Punkt's training, the text
tokenised twice: see :mod:`gflite.chunkstream`), and a rerun of a fully cached
book otherwise costs little more than copying its audio. The cuts are a pure
function of the text, the chunking options and the chunker itself, so they
are stored under a key made of exactly those (:func:`key`), beside the result
cache's entries (``ResultCache.get_plan``), and are cleared with them.

A stored plan is data this process does not trust: it is parsed with size
caps, its checksum must match, its cuts must rise strictly inside the text,
and every cut must be one of flite's utterance starts
(:func:`gflite.chunking.valid_cuts`). A plan that passes therefore cuts where
flite itself ends an utterance, so even a wrong one (made by a chunker that
cut elsewhere but kept its version) could not change kal's audio: only which
chunks are cached, and with the clustergen voices the noise excitation,
which is why the key covers the chunker's own source. Anything else is
dropped and the text is cut anew.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gflite.gwasm.cache import ResultCache

FORMAT = 1
# Raise when the cuts for the same text and options change on purpose; edits to
# the chunker's files and a different nltk change the key by themselves.
CUTTER_VERSION = 1
_SOURCES = ("chunking.py", "chunkstream.py", "data/punkt_en.json")


@lru_cache(maxsize=1)
def cutter_id() -> str:
    """The chunker's identity: its version, its sources' sha256 and nltk's version."""
    h = hashlib.sha256(f"gflite-cutter\0{CUTTER_VERSION}\0{_nltk_version()}".encode())
    here = Path(__file__).parent
    for name in _SOURCES:
        try:
            h.update(b"\0" + (here / name).read_bytes())
        except OSError:
            h.update(b"\0missing " + name.encode())
    return h.hexdigest()


def _nltk_version() -> str:
    """nltk's installed version, read from its dist-info's name (importing
    nltk is what a plan saves)."""
    spec = importlib.util.find_spec("nltk")
    if spec is None or not spec.submodule_search_locations:
        return "none"
    site = Path(next(iter(spec.submodule_search_locations))).parent
    try:
        for entry in os.scandir(site):
            if entry.name.startswith("nltk-") and entry.name.endswith(".dist-info"):
                return entry.name[len("nltk-") : -len(".dist-info")]
    except OSError:
        pass
    return "unknown"


def key(text: str, *, target_chars: int, subtasks: int | None = None) -> str:
    """The plan's name: the text's sha256, every option the cuts depend on, the chunker."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    ident = json.dumps(["gflite-cutplan", FORMAT, cutter_id(), digest, len(text), target_chars, subtasks])
    return hashlib.sha256(ident.encode()).hexdigest()


def _check(plan_key: str, cuts: Sequence[int]) -> str:
    return hashlib.sha256(f"{plan_key}:{','.join(map(str, cuts))}".encode()).hexdigest()


def encode(plan_key: str, text: str, cuts: Sequence[int]) -> bytes:
    return json.dumps({"format": FORMAT, "key": plan_key, "chars": len(text), "cuts": list(cuts),
                       "check": _check(plan_key, cuts)}).encode()


def decode(data: bytes, plan_key: str, text: str) -> tuple[int, ...] | None:
    """The cuts in ``data`` if it is a sound plan for ``text`` under ``plan_key``, else None."""
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict) or set(raw) != {"format", "key", "chars", "cuts", "check"}:
        return None
    cuts = raw["cuts"]
    if (raw["format"] != FORMAT or raw["key"] != plan_key or raw["chars"] != len(text)
            or not isinstance(cuts, list) or len(cuts) >= max(1, len(text))):
        return None
    if any(isinstance(c, bool) or not isinstance(c, int) for c in cuts) or raw["check"] != _check(plan_key, cuts):
        return None
    from gflite.chunking import valid_cuts

    return tuple(cuts) if valid_cuts(text, cuts) else None


def load(cache: ResultCache, plan_key: str, text: str) -> tuple[int, ...] | None:
    """The stored cuts for ``text``; a plan that is not sound is removed."""
    data = cache.get_plan(plan_key)
    if data is None:
        return None
    cuts = decode(data, plan_key, text)
    if cuts is None:
        cache.drop_plan(plan_key)
    return cuts


def store(cache: ResultCache, plan_key: str, text: str, cuts: Sequence[int]) -> bool:
    """Remember ``cuts`` for ``text`` (never an error: the plan only saves time)."""
    return cache.put_plan(plan_key, encode(plan_key, text, cuts))
