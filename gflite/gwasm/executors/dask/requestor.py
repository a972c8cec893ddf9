"""Hardening of the requestor's own process, for its Dask client.

- Dask unpickles only through the requestor policy: two type names, nothing
  callable (:mod:`.policies`).
- An error it cannot load becomes a plain Exception instead of an
  AssertionError that would leave its future pending forever.
- No message from the cluster is read past the largest answer the limits of
  the open executors' attempts allow (64 MiB at least).
"""
from __future__ import annotations

import contextvars
import threading
from typing import Any

from gflite.gwasm.executors.dask import messages, policies, unpickle
from gflite.gwasm.subtask import Limits


def harden() -> None:
    """Make this process a requestor: Dask unpickles only through the requestor
    policy, and an error it cannot load becomes a plain Exception instead of an
    AssertionError that would leave its future pending forever."""
    unpickle.install(policies.REQUESTOR)
    import types

    import distributed.client
    import distributed.core

    original = distributed.core.clean_exception
    if getattr(original, "_gflite", False):
        return

    def clean_exception(exception: Any = None, traceback: Any = None, **kwargs: Any) -> Any:
        if isinstance(exception, (bytes, bytearray)):
            try:
                exception = unpickle.loads_with(policies.REQUESTOR, exception)
            except Exception:
                exception = None
        if exception is not None and not isinstance(exception, BaseException):
            exception = Exception(f"an error the requestor refused to load ({exception!r:.100})")
        if not isinstance(traceback, types.TracebackType):
            traceback = None
        return type(exception), exception, traceback

    clean_exception._gflite = True  # type: ignore[attr-defined]
    distributed.core.clean_exception = clean_exception
    distributed.client.clean_exception = clean_exception
    _cap_reads()


class MessageTooLarge(OSError):
    """A message from the cluster larger than any honest answer could be."""


# The most bytes one message from the cluster may take: the largest answer the
# limits of the attempts of any open executor allow (at least READ_CAP_FLOOR).
READ_CAP_FLOOR = 64 << 20
_caps: dict[int, int] = {}  # id of an open executor -> the largest answer cap it used
_read_cap = READ_CAP_FLOOR
_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "gflite_read_budget", default=None)
_oversized: set[str] = set()  # peers that sent a message over the cap
_oversized_lock = threading.Lock()  # guards the cap's state and _oversized


def sent_too_much(address: str) -> bool:
    """Whether the peer at ``address`` sent this process a message over the cap."""
    with _oversized_lock:
        return address in _oversized


def raise_read_cap(owner: object, limits: Limits) -> None:
    """``owner`` submits an attempt under ``limits``: let its answer through."""
    global _read_cap
    with _oversized_lock:
        _caps[id(owner)] = max(_caps.get(id(owner), 0), messages.answer_cap(limits))
        _read_cap = max(READ_CAP_FLOOR, *_caps.values())


def read_cap() -> int:
    return _read_cap


def release_read_cap(owner: object) -> None:
    """``owner`` closed: its attempts' limits no longer raise the cap."""
    global _read_cap
    with _oversized_lock:
        _caps.pop(id(owner), None)
        _read_cap = max(READ_CAP_FLOOR, *_caps.values(), 0)


def _cap_reads() -> None:
    """Dask reads a whole message (its size is in its header) before anyone sees
    it, so a provider that under-reports its answer's size would get any amount
    read into memory. Refuse to read a TCP/TLS message over the cap: the comm is
    dropped instead, and the answer fails as too large."""
    import distributed.comm.tcp as tcp

    if getattr(tcp.read_bytes_rw, "_gflite", False):
        return
    read_bytes_rw, read = tcp.read_bytes_rw, tcp.TCP.read

    async def capped_read_bytes_rw(stream: Any, n: int) -> Any:
        budget = _budget.get()
        if budget is not None:
            budget[0] -= n
            if budget[0] < 0:
                raise MessageTooLarge(f"a message over the requestor's cap of {_read_cap} bytes")
        return await read_bytes_rw(stream, n)

    async def capped_read(self: Any, deserializers: Any = None) -> Any:
        token = _budget.set([_read_cap])
        try:
            return await read(self, deserializers)
        except MessageTooLarge:
            # Dask's gather swallows the error: remember who sent it.
            with _oversized_lock:
                _oversized.add(str(getattr(self, "peer_address", "")))
            raise
        finally:
            _budget.reset(token)

    capped_read_bytes_rw._gflite = True  # type: ignore[attr-defined]
    # inspect.unwrap finds Dask's own code behind ours (the canary test reads it).
    capped_read_bytes_rw.__wrapped__ = read_bytes_rw  # type: ignore[attr-defined]
    capped_read.__wrapped__ = read  # type: ignore[attr-defined]
    tcp.read_bytes_rw = capped_read_bytes_rw
    tcp.TCP.read = capped_read  # type: ignore[method-assign]
