"""The values the engine's stages pass: a program, its subtasks, limits and results.

All are small frozen dataclasses carrying an index (the subtask's place in the
task) and content hashes, so ordering, caching and verification never depend
on which provider finished first.
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from gflite.gwasm.spool import OutputFile


# What a guest can observe besides its program and inputs (the sandbox's
# virtual clock and random source, see sandbox.py): part of every result's key,
# so results from before it changed are never replayed as if made under it.
GUEST_WORLD = "virtual-clock-1"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Program:
    """A WASI command module, identified by the sha256 of its bytes.

    ``nan_canonicalization`` (on by default) makes NaN bit patterns the same on
    every CPU. It costs up to 4x on float-heavy code (flite's clustergen
    voices), so a program whose outputs provably cannot depend on NaN payloads
    may turn it off; it is part of every result's cache key.
    """

    path: Path
    sha256: str
    nan_canonicalization: bool = True

    @property
    def config_id(self) -> str:
        nan = "nan-canonical" if self.nan_canonicalization else "nan-native"
        return f"{GUEST_WORLD};{nan}"

    @classmethod
    def from_path(cls, path: Path | str, *, nan_canonicalization: bool = True) -> Program:
        p = Path(path)
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return cls(path=p, sha256=h.hexdigest(), nan_canonicalization=nan_canonicalization)


@dataclass(frozen=True)
class Limits:
    """What one guest may use. Exceeding any of them fails only that subtask."""

    memory_bytes: int = 1 << 30
    subtask_timeout: float = 600.0
    # What the guest's directory may grow by: bytes as the disk pays for them
    # (a file's size or its blocks, a directory's blocks), entries (inodes) and
    # directory levels.
    output_bytes: int = 1 << 30
    stdio_bytes: int = 64 << 10
    output_entries: int = 10_000
    output_depth: int = 64


@dataclass(frozen=True)
class Subtask:
    """One independent unit of work: argv for the guest plus the files it starts with.

    ``inputs`` are (relative path, bytes) pairs materialised into the guest's
    private working directory; ``outputs`` are the relative paths collected
    afterwards. ``digest`` covers everything that determines the result except
    the program, which callers combine via :meth:`key`.
    """

    index: int
    name: str
    args: tuple[str, ...]
    inputs: tuple[tuple[str, bytes], ...]
    outputs: tuple[str, ...]
    digest: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.digest:
            h = hashlib.sha256()
            h.update(json.dumps([list(self.args), list(self.outputs)]).encode())
            for rel, data in sorted(self.inputs):
                h.update(rel.encode() + b"\0" + sha256_bytes(data).encode())
            object.__setattr__(self, "digest", h.hexdigest())

    def key(self, program: Program) -> str:
        """Content address of this subtask's result: same key, same bytes."""
        return sha256_bytes(f"{program.sha256}:{program.config_id}:{self.digest}".encode())


class Failure(enum.Enum):
    """Why an attempt failed, as a type the engine decides on (``reason`` is the
    human-readable line that goes with it)."""

    GUEST = "guest"  # trap, non-zero exit, missing output: the same input fails the same way
    TIMEOUT = "timeout"  # the subtask's wall-time limit
    LIMIT = "limit"  # memory, output or stdio limit
    BAD_INPUT = "bad-input"  # the subtask's own files (a path escape, a clash)
    MALFORMED = "malformed"  # the provider's answer failed the requestor's checks
    LOST = "lost"  # the provider left, stopped answering, or its executor failed
    CANCELLED = "cancelled"
    TASK_TIMEOUT = "task-timeout"  # the whole task's time ran out first
    NO_PROVIDER = "no-provider"  # nobody eligible was left to run it
    DISAGREED = "disagreed"  # replicas disagreed past the redundancy bound


@dataclass(frozen=True)
class SubtaskResult:
    """The outcome of one attempt of one subtask on one provider."""

    index: int
    name: str
    ok: bool
    # (relative path, bytes), or (relative path, OutputFile) when the executor
    # was asked for files (see gflite.gwasm.spool): same digest either way.
    outputs: tuple[tuple[str, bytes | OutputFile], ...] = ()
    reason: str = ""
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    provider: str = "local"
    seconds: float = 0.0
    digest: str = field(default="", compare=False)
    # Set on every failed result by whoever made it; None on success.
    failure: Failure | None = None

    @classmethod
    def failed(cls, subtask: Subtask, reason: str, failure: Failure, *, provider: str = "local",
               **fields: object) -> SubtaskResult:
        """A failed attempt of ``subtask``: the one way every stage makes one."""
        return cls(subtask.index, subtask.name, ok=False, reason=reason, failure=failure,
                   provider=provider, **fields)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if not self.digest and self.ok:
            h = hashlib.sha256()
            for rel, data in self.outputs:
                digest = data.sha256 if isinstance(data, OutputFile) else sha256_bytes(data)
                h.update(rel.encode() + b"\0" + digest.encode())
            object.__setattr__(self, "digest", h.hexdigest())
