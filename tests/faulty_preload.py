"""Test-only Dask worker preload: a hostile provider. Production code has no such switch.

    GFLITE_TEST_FAULT=SPEC dask worker ADDRESS \\
        --preload gflite.gwasm.executors.dask.provider --preload tests/faulty_preload.py

It replaces the attempt entry point in this worker process only (tasks name
their function by module and name). SPEC is one of:

- ``TAG`` (or ``keep-digest:TAG``): honest answers with ``[TAG]`` appended to
  every output, a liar that only redundancy catches;
- ``pickle-cmd:PATH``: answers with an object whose unpickling runs
  ``touch PATH``;
- ``exception-cmd:PATH``: raises an exception whose unpickling runs ``touch PATH``;
- ``bomb``: answers with a pickle of a few dozen bytes that allocates 3 GB
  (``bytes(3_000_000_000)``) when unpickled;
- ``flood``: a well-formed answer with 150 MB of stdout;
- ``lying-size``: 150 MB in an object that tells Dask it is 100 bytes;
- ``escapes``: a failed answer whose reason is full of terminal escapes and
  newlines (give the worker such a ``--name`` too);
- ``file:PATH``: the SPEC in that file, read at each attempt (``honest`` for
  none of the above), so one worker can play every part in turn.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack

FLOOD = 150 * 1000 * 1000


class RunsACommand:
    """Unpickling it runs ``touch PATH``: the payload is its __reduce__ alone (the
    attack tests send it too; the class itself need not be importable there)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


class CommandError(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


class Bomb:
    def __reduce__(self) -> tuple:
        return (bytes, (3_000_000_000,))


class Liar:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def __sizeof__(self) -> int:
        return 100

    def __reduce__(self) -> tuple:
        return (bytes, (self.data,))


def _rewrite(blob: bytes, **fields: Any) -> bytes:
    answer = msgpack.unpackb(blob, raw=False)
    answer.update(fields)
    return msgpack.packb(answer, use_bin_type=True)


def dask_setup(worker: Any) -> None:
    from gflite.gwasm.executors.dask import tasks

    fixed = os.environ.get("GFLITE_TEST_FAULT", "faulty")
    honest = tasks.attempt

    def hostile(*args: Any, **kwargs: Any) -> Any:
        spec = fixed
        if spec.startswith("file:"):
            spec = Path(spec.removeprefix("file:")).read_text().strip()
        kind, _, arg = spec.partition(":")
        if kind == "honest":
            return honest(*args, **kwargs)
        if kind == "pickle-cmd":
            return RunsACommand(arg)
        if kind == "exception-cmd":
            raise CommandError(arg)
        if kind == "bomb":
            return Bomb()
        if kind == "lying-size":
            return Liar(b"x" * FLOOD)
        blob = honest(*args, **kwargs)
        if kind == "flood":
            return _rewrite(blob, stdout=b"x" * FLOOD)
        if kind == "escapes":
            return _rewrite(blob, ok=False, outputs=[], failure="guest",
                            reason="\x1b[2J\x1b]0;pwned\x07\n  total: 0\r" + "\x1b[31m" * 500)
        tag = spec.removeprefix("keep-digest:").encode()
        answer = msgpack.unpackb(blob, raw=False)
        if answer["ok"]:
            answer["outputs"] = [[rel, data + b"[" + tag + b"]"] for rel, data in answer["outputs"]]
        return msgpack.packb(answer, use_bin_type=True)

    tasks.attempt = hostile
