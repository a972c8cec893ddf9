from __future__ import annotations

import itertools
import random

import pytest

from gflite.gwasm.subtask import SubtaskResult
from gflite.gwasm.verify import Quorum


def vote(provider: str, data: bytes, index: int = 0) -> SubtaskResult:
    return SubtaskResult(index, f"s{index}", ok=True, outputs=(("out.txt", data),),
                         provider=provider, seconds=1.0)


def fail(provider: str, reason: str = "provider left", index: int = 0) -> SubtaskResult:
    return SubtaskResult(index, f"s{index}", ok=False, reason=reason, provider=provider)


def decision(q: Quorum) -> tuple:
    w = q.winner
    return (None if w is None else (w.digest, w.provider), q.losers, q.failed, q.needed())


def test_single_replica_wins_at_once() -> None:
    q = Quorum(1)
    assert q.needed() == 1
    assert q.pick(["p1", "p2"]) == ["p1"]
    assert q.needed() == 0  # one in flight is enough
    q.add(vote("p1", b"A"))
    assert q.winner is not None and q.winner.outputs == (("out.txt", b"A"),)
    assert q.done and not q.failed and q.losers == frozenset()


def test_agreement_of_k_wins() -> None:
    q = Quorum(2)
    assert q.pick(["p1", "p2", "p3"]) == ["p1", "p2"]
    q.add(vote("p2", b"A"))
    assert q.winner is None and q.needed() == 0  # p1 still running
    q.add(vote("p1", b"A"))
    assert q.winner is not None and q.winner.provider == "p1"
    assert q.losers == frozenset()
    assert "2 of 2 replicas agree" in q.report()


def test_disagreement_asks_for_more_until_majority_and_names_loser() -> None:
    q = Quorum(2)
    q.pick(["liar", "p1", "p2"])
    q.add(vote("liar", b"B"))
    q.add(vote("p1", b"A"))
    assert q.winner is None and not q.failed
    assert q.needed() == 1
    assert q.pick(["liar", "p1", "p2", "p3"]) == ["p2"]  # never a provider twice
    q.add(vote("p2", b"A"))
    assert q.winner is not None and q.winner.outputs[0][1] == b"A"
    assert q.losers == frozenset({"liar"})
    assert "rejected liar" in q.report()


def test_majority_must_be_strict() -> None:
    q = Quorum(2, max_replicas=7)
    for p, d in [("a", b"A"), ("b", b"A"), ("c", b"B"), ("d", b"B")]:
        q.add(vote(p, d))
    assert q.winner is None
    assert q.needed() == 1  # one more A (or B) makes 3 of 5
    q.add(vote("e", b"B"))
    assert q.winner is not None and q.winner.outputs[0][1] == b"B"
    assert q.losers == frozenset({"a", "b"})


def test_bounded_three_different_answers_fail() -> None:
    q = Quorum(2, max_replicas=3)
    for p, d in [("a", b"A"), ("b", b"B"), ("c", b"C")]:
        q.add(vote(p, d))
    assert q.failed and q.done and q.winner is None and q.needed() == 0
    report = q.report()
    assert "no majority of 2 within 3 replicas" in report
    assert all(p in report for p in "abc")
    assert q.losers == frozenset()


def test_fails_as_soon_as_a_win_is_impossible() -> None:
    q = Quorum(2, max_replicas=3)
    q.add(vote("a", b"A"))
    q.add(vote("b", b"B"))
    assert not q.failed and q.needed() == 1
    q.add(fail("c", "timeout: subtask time limit of 1 s exceeded"))
    assert q.failed
    assert "c failed (timeout" in q.report()


def test_failed_attempts_are_no_votes_but_use_up_their_provider() -> None:
    q = Quorum(2)
    q.pick(["a", "b"])
    q.add(fail("a"))
    q.add(vote("b", b"A"))
    assert q.winner is None and q.needed() == 1
    assert q.pick(["a", "b", "c"]) == ["c"]
    with pytest.raises(ValueError):
        q.start("a")
    q.add(vote("c", b"A"))
    assert q.winner is not None and q.losers == frozenset()


def test_default_bound_is_2k_plus_1_attempts() -> None:
    q = Quorum(1)
    for p in "abc":
        assert q.needed() == 1
        q.add(fail(p))
    assert q.failed and "no majority of 1 within 3 replicas" in q.report()


def test_needed_counts_pending_and_room() -> None:
    q = Quorum(3, max_replicas=4)
    assert q.needed() == 3
    q.start("a")
    assert q.needed() == 2
    q.add(vote("a", b"A"))
    q.pick(["b", "c"])
    q.add(vote("b", b"B"))
    # leader 1 of 2 votes, c pending: 3 - 1 = 2 more needed, one is in flight, room for 1
    assert q.needed() == 1
    q.start("d")
    assert q.needed() == 0
    q.add(vote("c", b"A"))
    q.add(vote("d", b"A"))
    assert q.winner is not None and q.losers == frozenset({"b"})


def test_order_of_arrival_does_not_change_the_decision() -> None:
    results = [vote("a", b"A"), vote("b", b"B"), vote("c", b"A"), fail("d"), vote("e", b"A"),
               vote("f", b"C")]
    seen = set()
    for order in itertools.permutations(results):
        q = Quorum(3, max_replicas=6)
        for r in order:
            q.add(r)
        seen.add(decision(q))
    assert len(seen) == 1
    (winner, losers, failed, needed), = seen
    assert winner is not None and winner[1] == "a"
    assert losers == frozenset({"b", "f"}) and not failed and needed == 0


def test_order_independent_driver_runs() -> None:
    """Simulated runs where replicas finish in random order reach the same outcome."""
    honest = {p: b"A" for p in ["p1", "p2", "p4", "p5"]}
    answers = {**honest, "p0": b"X", "p3": b"Y"}
    outcomes = set()
    for seed in range(30):
        rng = random.Random(seed)
        q = Quorum(2, max_replicas=6)
        running: list[str] = []
        while not q.done:
            running += q.pick(sorted(answers))
            assert running, q.report()
            p = running.pop(rng.randrange(len(running)))
            q.add(vote(p, answers[p]))
        outcomes.add((q.winner.digest if q.winner else None, q.failed))
        assert q.losers <= {"p0", "p3"}
    assert len(outcomes) == 1


def test_abandon_and_misuse() -> None:
    q = Quorum(2)
    q.add(vote("a", b"A"))
    q.abandon("no unused provider left")
    assert q.failed and "abandoned (no unused provider left)" in q.report()
    with pytest.raises(ValueError):
        q.add(vote("a", b"A"))  # a provider reports twice
    with pytest.raises(ValueError):
        q.add(vote("b", b"A", index=1))  # another subtask's result
    with pytest.raises(ValueError):
        Quorum(0)
    with pytest.raises(ValueError):
        Quorum(3, max_replicas=2)


def test_report_names_the_subtask() -> None:
    q = Quorum(2, max_replicas=2, label="subtask 7 (chunk-7)")
    q.add(vote("a", b"A", index=7))
    q.add(vote("b", b"B", index=7))
    assert q.failed
    assert q.report().startswith("subtask 7 (chunk-7): providers disagreed")
    q2 = Quorum(1)
    q2.add(vote("a", b"A", index=4))
    assert q2.report().startswith("subtask 4 (s4): 1 of 1 replicas agree")


def test_agreeing_and_disagreed() -> None:
    q = Quorum(2)
    q.add(vote("b", b"A"))
    assert q.agreeing == () and not q.disagreed
    q.add(vote("x", b"B"))
    assert q.disagreed and q.agreeing == ()
    q.add(fail("y"))
    q.add(vote("a", b"A"))
    assert q.agreeing == ("a", "b") and q.losers == frozenset({"x"})
