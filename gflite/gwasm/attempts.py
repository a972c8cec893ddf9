"""The bookkeeping of one subtask's attempts: when it wants another, on whom,
and when it is decided. Pure logic: the :class:`~gflite.gwasm.dispatch.Dispatcher`
starts the attempts and hands their results in.

:class:`SubtaskState` runs one attempt at a time (redundancy 1);
:class:`VerifiedState` runs replicas on distinct operators until K agree
(see :mod:`gflite.gwasm.verify`). Decisions depend only on the set of results a
subtask got, never on the order they arrived in.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from gflite.gwasm.spool import release
from gflite.gwasm.subtask import Failure, Subtask, SubtaskResult
from gflite.gwasm.verify import Quorum


class State(Protocol):
    """What the dispatcher needs from the bookkeeping of one subtask.

    ``in_flight`` is maintained by the dispatcher; ``final`` stays None until
    the subtask is decided. ``plan(candidates)`` names the providers (from
    ``candidates``, free ones in order of preference) to start attempts on now,
    without side effects; the dispatcher calls ``start(provider)`` for each
    attempt it really starts. ``drop`` ends an attempt whose provider was
    excluded meanwhile: it is no result and no failure. ``agreeing``: the
    providers whose result was accepted (one at redundancy 1).
    """

    subtask: Subtask
    in_flight: int
    final: SubtaskResult | None

    def wants(self) -> bool: ...
    def plan(self, candidates: Sequence[str]) -> list[str]: ...
    def start(self, provider: str) -> None: ...
    def record(self, result: SubtaskResult) -> None: ...
    def drop(self, provider: str, reason: str) -> None: ...
    def give_up(self, reason: str, failure: Failure) -> None: ...

    @property
    def agreeing(self) -> tuple[str, ...]: ...
    @property
    def losers(self) -> frozenset[str]: ...
    @property
    def disagreed(self) -> bool: ...
    @property
    def verdict(self) -> str: ...


def without_data(result: SubtaskResult) -> SubtaskResult:
    """The result with its bytes (or its files' names: they may be removed
    once handed over) dropped; ``replace`` keeps the digest and the class."""
    return replace(result, outputs=tuple((rel, b"") for rel, _ in result.outputs),
                   stdout=b"", stderr=b"")


@dataclass
class SubtaskState:
    """The attempts of one subtask at redundancy 1: one attempt at a time, up to
    ``max_attempts`` of them (fewer after a failure ``attempts_after`` says
    will repeat); the first success is final.

    ``exclusive``: a provider that failed the subtask never runs it again (on
    a cluster a failure may be the provider's); otherwise one that has not
    failed it is only preferred (this machine's worker slots are one machine).
    """

    subtask: Subtask
    max_attempts: int
    attempts_after: Callable[[Failure | None], int] | None = None
    exclusive: bool = False
    attempts: list[SubtaskResult] = field(default_factory=list)
    in_flight: int = 0
    final: SubtaskResult | None = None

    def wants(self) -> bool:
        return self.final is None and self.in_flight == 0

    def plan(self, candidates: Sequence[str]) -> list[str]:
        if not self.wants():
            return []
        failed_on = {r.provider for r in self.attempts}
        if self.exclusive:
            return [p for p in candidates if p not in failed_on][:1]
        return sorted(candidates, key=lambda p: p in failed_on)[:1]

    def start(self, provider: str) -> None:
        pass

    def record(self, result: SubtaskResult) -> None:
        """Take an attempt's result; sets ``final`` once the subtask is decided."""
        # Only who failed and why is needed later: keeping outputs would hold
        # every result's data until the task ends.
        self.attempts.append(without_data(result) if result.ok else result)
        if result.ok:
            self.final = result
            return
        n = len(self.attempts)
        allowed = self.max_attempts
        if self.attempts_after is not None:
            allowed = min(allowed, self.attempts_after(result.failure))
        if n >= allowed:
            failure = result.failure or Failure.LOST
            self.final = replace(result, failure=failure,
                                 reason=f"{result.reason} (after {n} attempts)" if n > 1 else result.reason)

    def drop(self, provider: str, reason: str) -> None:
        pass

    def give_up(self, reason: str, failure: Failure) -> None:
        last = self.attempts[-1].reason if self.attempts else ""
        self.final = SubtaskResult.failed(
            self.subtask, f"{reason} (last attempt: {last})" if last else reason, failure)

    @property
    def agreeing(self) -> tuple[str, ...]:
        return (self.final.provider,) if self.final is not None and self.final.ok else ()

    @property
    def losers(self) -> frozenset[str]:
        return frozenset()

    @property
    def disagreed(self) -> bool:
        return False

    @property
    def verdict(self) -> str:
        return ""


class VerifiedState:
    """The replicas of one subtask at redundancy k: started on providers of
    distinct operators (``owner`` maps a provider to its operator), chosen at
    random among the free ones (reproducibly, from ``seed`` and the subtask),
    until k of them, a strict majority of all results, return the same digest
    (see :class:`~gflite.gwasm.verify.Quorum`, bounded by ``max_replicas``).
    More than ``max_failures`` failed replicas fail the subtask too.
    """

    def __init__(self, subtask: Subtask, k: int, *, max_failures: int,
                 max_replicas: int | None = None, owner: Callable[[str], str] = str,
                 seed: int = 0) -> None:
        self.subtask = subtask
        self.quorum = Quorum(k, max_replicas, label=f"subtask {subtask.index} ({subtask.name})")
        self.max_failures = max_failures
        self.owner = owner
        self.seed = seed
        self.failures = 0
        self.in_flight = 0
        self.final: SubtaskResult | None = None
        self._last_failure: Failure | None = None
        # Votes need only digests: one full copy per distinct digest is kept
        # for the winner, so k replicas do not hold k copies of the audio.
        self._data: dict[str, SubtaskResult] = {}

    def wants(self) -> bool:
        return self.final is None and self.quorum.needed() > 0

    def plan(self, candidates: Sequence[str]) -> list[str]:
        """Up to :meth:`Quorum.needed` providers, each of an operator that has
        not run this subtask, picked at random: the cheapest are not the
        likeliest, so an operator cannot win every vote by underbidding."""
        if not self.wants():
            return []
        used = {self.owner(p) for p in self.quorum.used}
        by_operator: dict[str, list[str]] = {}
        for p in candidates:
            o = self.owner(p)
            if o not in used:
                by_operator.setdefault(o, []).append(p)
        rng = random.Random(f"{self.seed}:{self.subtask.digest}:{sorted(self.quorum.used)}")
        operators = sorted(by_operator)
        rng.shuffle(operators)
        return [rng.choice(sorted(by_operator[o])) for o in operators[: self.quorum.needed()]]

    def start(self, provider: str) -> None:
        self.quorum.start(provider)

    def record(self, result: SubtaskResult) -> None:
        if result.ok:
            if self._data.setdefault(result.digest, result) is not result:
                release(result.outputs)  # the same bytes again: one copy is kept
            self.quorum.add(without_data(result))
        else:
            self.quorum.add(result)
            self.failures += 1
            self._last_failure = result.failure
        self._decide()

    def drop(self, provider: str, reason: str) -> None:
        self.quorum.add(SubtaskResult.failed(self.subtask, reason, Failure.CANCELLED, provider=provider))
        self._decide()

    def give_up(self, reason: str, failure: Failure) -> None:
        self._last_failure = failure
        self.quorum.abandon(reason)
        self._decide()

    def _decide(self) -> None:
        q = self.quorum
        win = q.winner
        if win is not None:
            self.final = self._data.pop(win.digest)
            for loser in self._data.values():
                release(loser.outputs)
            self._data.clear()
            return
        if not q.failed and self.failures > self.max_failures:
            q.abandon(f"{self.failures} replicas failed")
        if q.failed:
            failure = Failure.DISAGREED if q.disagreed else (self._last_failure or Failure.NO_PROVIDER)
            self.final = SubtaskResult.failed(self.subtask, q.report(), failure)

    @property
    def agreeing(self) -> tuple[str, ...]:
        return self.quorum.agreeing

    @property
    def losers(self) -> frozenset[str]:
        return self.quorum.losers

    @property
    def disagreed(self) -> bool:
        return self.quorum.disagreed

    @property
    def verdict(self) -> str:
        return self.quorum.report()
