"""What crosses between requestor and provider: one msgpack blob each way, plain data.

A request (what to run) and an answer (what came of it) are msgpack maps of
bytes, ints, floats, bools and strings, nothing that names code. Either side
decodes the other's blob with size caps that msgpack checks before it
allocates, then checks every field's type and size; anything else is
:class:`Malformed`. Errors travel as data in an answer, never as exceptions.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from gflite.gwasm.subtask import Failure, Limits, Subtask, SubtaskResult

VERSION = 1
# Room for names, numbers and msgpack headers around the payloads.
OVERHEAD = 64 << 10
MAX_TEXT = 4096  # a name, a reason, a path
MAX_ITEMS = 4096  # args, inputs, outputs
REQUEST_CAP = 1 << 30
# Key of the per-worker metadata a provider publishes in scheduler_info().
INFO_KEY = "gflite"
NOT_INSTALLED = "program not installed on provider"
# Failures a provider may report; LOST, MALFORMED and the rest are the requestor's to decide.
# An honest reason is one line of our own sandbox's making: no control characters.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
PROVIDER_FAILURES = frozenset({Failure.GUEST, Failure.TIMEOUT, Failure.LIMIT,
                               Failure.BAD_INPUT, Failure.CANCELLED})


PRICE_ENV = "GFLITE_PRICE"


def declared_price(environ: dict[str, str] | None = None) -> float:
    """The price per CPU-second a provider declares in ``GFLITE_PRICE`` (default 0)."""
    raw = (os.environ if environ is None else environ).get(PRICE_ENV, "").strip()
    if not raw:
        return 0.0
    try:
        price = float(raw)
    except ValueError:
        price = math.nan
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"{PRICE_ENV}={raw!r} is not a non-negative number")
    return price


# A provider's own caps on what a requestor may ask of it, declared as its price is.
CAPS_ENV = {"memory_bytes": "GFLITE_MAX_MEMORY", "subtask_timeout": "GFLITE_MAX_SECONDS",
            "output_bytes": "GFLITE_MAX_OUTPUT"}


def declared_caps(environ: dict[str, str] | None = None) -> Limits:
    """The caps a provider declares (``GFLITE_MAX_MEMORY=2G``, ``GFLITE_MAX_SECONDS=600``,
    ``GFLITE_MAX_OUTPUT=1G``); each one not set is the engine's default limit, so a
    provider that says nothing still refuses a requestor asking for more."""
    from gflite.gwasm.cache import parse_size

    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, name in CAPS_ENV.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value: float = float(raw) if field == "subtask_timeout" else parse_size(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name}={raw!r} is not a positive {'number' if field == 'subtask_timeout' else 'size'}")
        values[field] = value
    return Limits(**values)


def caps_info(caps: Limits) -> dict[str, float]:
    """The caps as plain data for the worker's published information."""
    return {field: getattr(caps, field) for field in (*CAPS_ENV, "stdio_bytes")}


def parse_caps(info: Any) -> Limits | None:
    """Caps a provider published (data from the provider: type- and range-checked);
    None if absent or malformed, which makes the provider ineligible."""
    if not isinstance(info, dict):
        return None
    values: dict[str, Any] = {}
    for field in (*CAPS_ENV, "stdio_bytes"):
        v = info.get(field)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 < v < 2 ** 62:
            return None
        values[field] = float(v) if field == "subtask_timeout" else int(v)
    return Limits(**values)


def over_caps(limits: Limits, caps: Limits) -> str:
    """What in ``limits`` exceeds ``caps``, or ""."""
    over = [f"{field} {getattr(limits, field):g} > {getattr(caps, field):g}"
            for field in (*CAPS_ENV, "stdio_bytes") if getattr(limits, field) > getattr(caps, field)]
    return ", ".join(over)


class Malformed(ValueError):
    """A blob that is not a well-formed message within its caps."""


@dataclass(frozen=True)
class Request:
    subtask: Subtask
    limits: Limits
    nan_canonicalization: bool


def answer_cap(limits: Limits) -> int:
    """The most bytes an honest answer under ``limits`` can take."""
    return limits.output_bytes + 2 * limits.stdio_bytes + OVERHEAD


def _unpack(blob: Any, cap: int, max_bin: int) -> Any:
    if not isinstance(blob, (bytes, bytearray)):
        raise Malformed(f"not a message but a {type(blob).__name__}")
    if len(blob) > cap:
        raise Malformed(f"{len(blob)} bytes, over the cap of {cap}")
    import msgpack  # comes with distributed (gflite[cluster]); imported when first used

    try:
        return msgpack.unpackb(
            bytes(blob), raw=False, strict_map_key=True, use_list=True, max_bin_len=max_bin, max_str_len=MAX_TEXT,
            max_array_len=MAX_ITEMS, max_map_len=64, max_ext_len=0)
    except Exception as exc:  # msgpack raises several kinds for bad or oversized data
        raise Malformed(f"undecodable ({type(exc).__name__})") from None


def _field(m: dict, name: str, kind: type | tuple[type, ...]) -> Any:
    value = m.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise Malformed(f"field {name!r} missing or not {getattr(kind, '__name__', kind)}")
    return value


def _text(m: dict, name: str) -> str:
    return _field(m, name, str)


def _strings(m: dict, name: str) -> tuple[str, ...]:
    items = _field(m, name, list)
    if not all(isinstance(s, str) for s in items):
        raise Malformed(f"field {name!r} holds a non-string")
    return tuple(items)


def _pairs(m: dict, name: str, cap: int) -> tuple[tuple[str, bytes], ...]:
    out, total = [], 0
    for item in _field(m, name, list):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], bytes)):
            raise Malformed(f"field {name!r} holds something other than (name, bytes)")
        total += len(item[1])
        out.append((item[0], item[1]))
    if total > cap:
        raise Malformed(f"field {name!r} holds {total} bytes, over the limit of {cap}")
    return tuple(out)


def _count(m: dict, name: str) -> int:
    value = _field(m, name, int)
    if value < 0:
        raise Malformed(f"field {name!r} is negative")
    return value


# -- request: requestor -> provider -------------------------------------------------


def encode_request(subtask: Subtask, limits: Limits, nan_canonicalization: bool) -> bytes:
    import msgpack

    return msgpack.packb({
        "v": VERSION, "index": subtask.index, "name": subtask.name,
        "args": list(subtask.args), "inputs": [[rel, data] for rel, data in subtask.inputs],
        "outputs": list(subtask.outputs),
        "limits": [limits.memory_bytes, float(limits.subtask_timeout), limits.output_bytes,
                   limits.stdio_bytes],
        "nan": bool(nan_canonicalization),
    }, use_bin_type=True)


def decode_request(blob: Any) -> Request:
    m = _unpack(blob, REQUEST_CAP, REQUEST_CAP)
    if not isinstance(m, dict) or m.get("v") != VERSION:
        raise Malformed("not a version-1 request")
    lim = _field(m, "limits", list)
    if len(lim) != 4 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                and math.isfinite(x) and x > 0 for x in lim) \
            or not all(isinstance(lim[i], int) for i in (0, 2, 3)):
        raise Malformed("bad limits")
    subtask = Subtask(_count(m, "index"), _text(m, "name"), _strings(m, "args"),
                      _pairs(m, "inputs", REQUEST_CAP), _strings(m, "outputs"))
    return Request(subtask, Limits(lim[0], float(lim[1]), lim[2], lim[3]),
                   _field(m, "nan", bool))


# -- answer: provider -> requestor ----------------------------------------------------


def encode_answer(result: SubtaskResult) -> bytes:
    import msgpack

    return msgpack.packb({
        "v": VERSION, "index": result.index, "ok": bool(result.ok),
        "outputs": [[rel, data] for rel, data in result.outputs],
        "reason": result.reason[:MAX_TEXT], "exit_code": result.exit_code,
        "stdout": result.stdout, "stderr": result.stderr, "seconds": float(result.seconds),
        "failure": result.failure.value if result.failure is not None else None,
    }, use_bin_type=True)


def decode_answer(blob: Any, subtask: Subtask, limits: Limits, provider: str,
                  waited: float) -> SubtaskResult:
    """A provider's answer as a result of our own making: the digest recomputed from
    the outputs (the answer carries none), only the outputs asked for, and no more
    CPU-seconds than the ``waited`` wall time. Raises Malformed."""
    m = _unpack(blob, answer_cap(limits), max(limits.output_bytes, limits.stdio_bytes))
    if not isinstance(m, dict) or m.get("v") != VERSION:
        raise Malformed("not a version-1 answer")
    if _count(m, "index") != subtask.index:
        raise Malformed(f"the answer of subtask {m['index']}")
    ok = _field(m, "ok", bool)
    outputs = _pairs(m, "outputs", limits.output_bytes)
    stdout, stderr = _field(m, "stdout", bytes), _field(m, "stderr", bytes)
    if max(len(stdout), len(stderr)) > limits.stdio_bytes:
        raise Malformed(f"stdout or stderr over the limit of {limits.stdio_bytes} bytes")
    exit_code = m.get("exit_code")
    if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
        raise Malformed("field 'exit_code' not an int")
    seconds = _field(m, "seconds", (int, float))
    seconds = min(float(seconds), waited) if math.isfinite(seconds) and seconds > 0 else 0.0
    reason = _text(m, "reason")
    if _CONTROL.search(reason):
        raise Malformed("a reason with control characters")
    failure = None
    if not ok:
        try:
            failure = Failure(_text(m, "failure"))
        except ValueError:
            raise Malformed("an unknown failure kind") from None
        if failure not in PROVIDER_FAILURES:
            raise Malformed(f"a failure kind ({failure.value}) only the requestor decides")
        outputs = ()
    elif tuple(rel for rel, _ in outputs) != subtask.outputs:
        raise Malformed("outputs other than the ones asked for")
    return SubtaskResult(subtask.index, subtask.name, ok=ok, outputs=outputs, reason=reason,
                         exit_code=exit_code, stdout=stdout, stderr=stderr, provider=provider,
                         seconds=seconds, failure=failure)
