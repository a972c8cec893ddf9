"""Shared message validation and the restricted unpickler, without a cluster."""
from __future__ import annotations

import pickle
import resource

import msgpack
import pytest

from faulty_preload import Bomb, RunsACommand
from gflite.gwasm.executors.dask import messages, policies, unpickle
from gflite.gwasm.executors.dask.messages import Malformed
from gflite.gwasm.subtask import Failure, Limits, Subtask, SubtaskResult

ST = Subtask(4, "echo-4", ("x",), (("in.txt", b"hi"),), ("out.txt",))
LIMITS = Limits(stdio_bytes=64 << 10, output_bytes=1 << 20)


def answer(**fields: object) -> bytes:
    m = msgpack.unpackb(messages.encode_answer(SubtaskResult(
        4, "echo-4", ok=True, outputs=(("out.txt", b"x\0"),), exit_code=0, seconds=1.5)),
        raw=False)
    m.update(fields)
    return msgpack.packb(m, use_bin_type=True)


def test_a_request_round_trips_as_plain_data() -> None:
    blob = messages.encode_request(ST, LIMITS, False)
    assert b"gflite" not in blob  # names no code: it is msgpack, not a pickle
    req = messages.decode_request(blob)
    assert req.subtask == ST and req.subtask.digest == ST.digest
    assert req.limits == LIMITS and req.nan_canonicalization is False


def test_an_answer_becomes_a_result_of_our_own_making() -> None:
    r = messages.decode_answer(answer(), ST, LIMITS, "tcp://w:1", waited=2.0)
    assert r.ok and r.provider == "tcp://w:1" and r.seconds == 1.5
    assert r.digest == SubtaskResult(4, "echo-4", ok=True, outputs=(("out.txt", b"x\0"),)).digest
    # Billed no more than the wall time waited; a failure keeps its kind.
    assert messages.decode_answer(answer(seconds=99.0), ST, LIMITS, "p", 2.0).seconds == 2.0
    failed = messages.decode_answer(answer(ok=False, reason="exit code 3", failure="guest"),
                                    ST, LIMITS, "p", 1.0)
    assert not failed.ok and failed.failure is Failure.GUEST and failed.outputs == ()


@pytest.mark.parametrize("blob, why", [
    (b"\x80\x04K\x01.", "undecodable"),  # a pickle is not a message
    (answer(index=5), "subtask 5"),
    (answer(outputs=[["other.txt", b"x"]]), "outputs other than"),
    (answer(outputs=[["out.txt", 10**12]]), "name, bytes"),
    (answer(stdout="text"), "stdout"),
    (answer(stdout=b"x" * (65 << 10)), "over the limit"),
    (answer(outputs=[["out.txt", b"x" * (2 << 20)]]), "over the cap"),
    (answer(ok=False, failure="lost"), "only the requestor decides"),
    (answer(ok=False, failure="pwned"), "unknown failure"),
    (answer(reason="a\n  total: 0"), "control characters"),
    (answer(reason="\x1b[2J"), "control characters"),
    (answer(v=2), "version-1"),
    (msgpack.packb([1] * 10000), "undecodable"),  # over max_array_len
    ("a str", "not a message"),
])
def test_malformed_answers_are_refused(blob: object, why: str) -> None:
    with pytest.raises(Malformed, match=why):
        messages.decode_answer(blob, ST, LIMITS, "p", 1.0)


def test_an_answer_over_the_cap_is_refused_by_its_length_before_decoding() -> None:
    big = b"\0" * (messages.answer_cap(LIMITS) + 1)
    with pytest.raises(Malformed, match="over the cap"):
        messages.decode_answer(big, ST, LIMITS, "p", 1.0)


def test_a_msgpack_header_claiming_gigabytes_allocates_nothing() -> None:
    # bin32 header claiming 3 GB, followed by nothing.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(Malformed):
        messages.decode_answer(b"\xc6\xb2\xd0\x5e\x00", ST, LIMITS, "p", 1.0)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


@pytest.mark.parametrize("policy", [policies.REQUESTOR, policies.SCHEDULER, policies.PROVIDER])
def test_the_unpickler_runs_nothing_and_allocates_nothing(policy, tmp_path) -> None:
    sentinel = tmp_path / "sentinel"
    for proto in (2, 5):
        out = unpickle.loads_with(policy, pickle.dumps(RunsACommand(str(sentinel)), proto))
        assert isinstance(out, unpickle.Refused) and not sentinel.exists()
        with pytest.raises(PermissionError, match="refused"):
            out()
    bomb = pickle.dumps(Bomb())
    assert len(bomb) < 64
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert isinstance(unpickle.loads_with(policy, bomb), unpickle.Refused)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    # Protocol 0's spelling of a call is not accepted at all.
    with pytest.raises(pickle.UnpicklingError):
        unpickle.loads_with(policy, b"cos\nsystem\n(S'true'\ni__main__\nX\n.")


def test_allowed_callables_are_called_only_with_the_arguments_dask_sends(tmp_path) -> None:
    from dask._expr import Expr, LLGExpr
    from dask._task_spec import Alias, Task

    from gflite.gwasm.executors.dask import tasks

    class Crafted:
        """Expr._reconstruct(install, sha, data, ...): calls an entry point while unpickling."""

        def __reduce__(self) -> tuple:
            return (Expr._reconstruct, (tasks.install, "0" * 64, b"x", "t", {}))

    out = unpickle.loads_with(policies.SCHEDULER, pickle.dumps(Crafted()))
    assert isinstance(out, unpickle.Refused)
    alias = unpickle.loads_with(policies.SCHEDULER, pickle.dumps(Alias("a", "b")))
    assert isinstance(alias, Alias) and alias.target == "b"
    task = Task("k", tasks.attempt, "sha", b"req")
    back = unpickle.loads_with(policies.PROVIDER, pickle.dumps(task))
    assert isinstance(back, Task) and back.func is tasks.attempt
    # The requestor builds and calls nothing, not even what the others may.
    assert isinstance(unpickle.loads_with(policies.REQUESTOR, pickle.dumps(task)),
                      unpickle.Refused)
    expr = LLGExpr({"k": task})
    assert isinstance(unpickle.loads_with(policies.SCHEDULER, pickle.dumps(expr)), LLGExpr)
    assert isinstance(unpickle.loads_with(policies.PROVIDER, pickle.dumps(expr)),
                      unpickle.Refused)


# --- a provider's own caps ------------------------------------------------------------


def test_a_provider_declares_caps_and_unset_ones_are_the_engine_defaults() -> None:
    caps = messages.declared_caps({"GFLITE_MAX_MEMORY": "2G", "GFLITE_MAX_SECONDS": "90"})
    assert caps == Limits(memory_bytes=2 << 30, subtask_timeout=90.0)
    assert messages.parse_caps(messages.caps_info(caps)) == caps
    for bad in ({"GFLITE_MAX_MEMORY": "lots"}, {"GFLITE_MAX_SECONDS": "-1"}, {"GFLITE_MAX_OUTPUT": "nan"}):
        with pytest.raises(ValueError, match="GFLITE_MAX_"):
            messages.declared_caps(bad)


@pytest.mark.parametrize("info", [None, "x", {}, {**messages.caps_info(Limits()), "memory_bytes": True},
                                  {**messages.caps_info(Limits()), "output_bytes": 2 ** 70},
                                  {**messages.caps_info(Limits()), "subtask_timeout": float("inf")}])
def test_published_caps_are_checked_as_data(info: object) -> None:
    assert messages.parse_caps(info) is None  # such a provider gets no work


def test_a_provider_refuses_limits_over_its_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: Limits(memory_bytes=4 GiB) ran 3 GiB on a provider; the requestor set its limits."""
    from gflite.gwasm.executors.dask import tasks

    monkeypatch.setattr(tasks, "_caps", None)
    monkeypatch.setenv("GFLITE_MAX_MEMORY", "1G")
    blob = tasks.attempt("0" * 64, messages.encode_request(ST, Limits(memory_bytes=4 << 30), False))
    r = messages.decode_answer(blob, ST, Limits(memory_bytes=4 << 30), "tcp://w:1", waited=1.0)
    assert not r.ok and r.failure is Failure.BAD_INPUT
    assert r.reason.startswith("refused: limits over this provider's caps (memory_bytes")
