"""The code a provider runs for a requestor: install a program, run one attempt.

These two functions are the only task functions a hardened provider (and the
requestor's scheduler) admits. Their arguments are plain data (a sha256 string,
program bytes, one msgpack request blob) and they never raise: an attempt's
answer, failures included, is one msgpack blob (:mod:`.messages`). Guests run
in the local executor's sandbox processes (one per worker thread, each with
the compiled-module cache), which kill a guest that overruns its time or
output limit, so a hung guest never wedges the worker.

Importing this module has no side effects: the scheduler imports it only to
name these functions in task graphs.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gflite.gwasm.executors.dask import messages
from gflite.gwasm.executors.local import LocalExecutor
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult

PROGRAM_CAP = 1 << 30
logger = logging.getLogger("distributed.gflite")
_SHA256 = re.compile(r"[0-9a-f]{64}")

_lock = threading.Lock()
_programs: dict[str, Path] = {}
_local: LocalExecutor | None = None


def _scratch() -> Path:
    try:
        from distributed import get_worker

        base = Path(get_worker().local_directory)
    except (ImportError, ValueError):
        base = Path(tempfile.gettempdir())
    d = base / "gflite-programs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def install(sha256: Any, data: Any) -> str:
    """Task: keep a program on this worker's disk, named by its sha256; the result
    (the sha256) orders later attempts after it."""
    if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise ValueError("not a sha256")
    if not isinstance(data, bytes) or len(data) > PROGRAM_CAP:
        raise ValueError("program is not bytes within the cap")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError("program bytes do not match their sha256")
    path = _scratch() / f"{sha256}.wasm"
    if not path.exists():
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    with _lock:
        _programs[sha256] = path
    logger.info("gflite provider: installed program %s", sha256)
    return sha256


def sandboxes() -> LocalExecutor:
    """This worker's sandbox processes: the local executor, one per worker thread."""
    global _local
    with _lock:
        if _local is None:
            try:
                from distributed import get_worker

                threads = get_worker().state.nthreads
            except (ImportError, ValueError):
                threads = 1
            _local = LocalExecutor(workers=max(1, threads))
        return _local


def close() -> None:
    """Stop this worker's sandbox processes and remove their files."""
    global _local
    with _lock:
        local, _local = _local, None
    if local is not None:
        local.close()


def _answer(subtask: Subtask, reason: str, failure: Failure) -> bytes:
    return messages.encode_answer(SubtaskResult.failed(subtask, reason, failure))


_caps: Limits | None = None


def declare_caps() -> Limits:
    """This provider's caps, read once from its environment (see messages.declared_caps)."""
    global _caps
    if _caps is None:
        _caps = messages.declared_caps()
    return _caps


def attempt(sha256: Any, request: Any) -> bytes:
    """Task: run one attempt in one of this worker's sandbox processes. Returns the
    answer blob; never raises."""
    try:
        req = messages.decode_request(request)
    except messages.Malformed as exc:
        return _answer(Subtask(0, "?", (), (), ()), f"bad request: {exc}", Failure.BAD_INPUT)
    subtask = req.subtask
    over = messages.over_caps(req.limits, declare_caps())
    if over:  # the requestor sets the limits, the provider decides what it accepts
        return _answer(subtask, f"refused: limits over this provider's caps ({over})", Failure.BAD_INPUT)
    with _lock:
        path = _programs.get(sha256) if isinstance(sha256, str) else None
    if path is None or not path.exists():
        return _answer(subtask, messages.NOT_INSTALLED, Failure.BAD_INPUT)
    try:
        program = Program(path, sha256, nan_canonicalization=req.nan_canonicalization)
        future = sandboxes().submit(program, subtask, req.limits)
        result = _wait(future, _still_wanted(), subtask)
        if not result.ok and result.failure is None:
            kind = Failure.TIMEOUT if result.reason.startswith("timeout") else Failure.GUEST
            result = replace(result, failure=kind)
        return messages.encode_answer(result)
    except Exception as exc:  # a provider-side fault is an answer too
        return _answer(subtask, f"provider error: {type(exc).__name__}", Failure.GUEST)


def _wait(future: cf.Future[SubtaskResult], wanted: Callable[[], bool],
          subtask: Subtask) -> SubtaskResult:
    while True:
        try:
            return future.result(timeout=0.5)
        except cf.CancelledError:
            return SubtaskResult.failed(subtask, "cancelled", Failure.CANCELLED)
        except cf.TimeoutError:
            # Dask cannot stop a running task; when the requestor has given up on
            # it (cancelled, verified already), kill the guest to free the slot.
            if not wanted():
                future.cancel()


def _still_wanted() -> Callable[[], bool]:
    """A check that the task running in this thread has not been released by the client."""
    try:
        from distributed import get_worker

        worker = get_worker()
        key = worker.get_current_task()
    except (ImportError, ValueError, KeyError):
        return lambda: True

    def check() -> bool:
        ts = worker.state.tasks.get(key)
        return ts is not None and ts.state not in ("cancelled", "released", "forgotten")

    return check
