"""Verification by redundancy (Golem's VbR, BOINC's quorum), as pure logic.

One :class:`Quorum` follows one subtask. It is told which providers were
started on it and what they returned, and says how many more replicas to
launch. A result is a *vote* for the sha256 digest of its outputs; a failed
attempt (guest error, timeout, provider left) is no vote, but its provider
still counts as used, so no provider ever runs two replicas of one subtask.

A digest *wins* when at least ``k`` providers returned it and they are a
strict majority of all votes. Providers that voted otherwise are the losers:
the caller excludes them from the rest of the task and does not pay them. The
decision depends only on the set of results, never on their order.
"""
from __future__ import annotations

from collections.abc import Iterable

from gflite.gwasm.subtask import SubtaskResult


class Quorum:
    """Replicas of one subtask on distinct providers until ``k`` of them agree.

    ``max_replicas`` bounds how many distinct providers may be started in all,
    failed attempts included (default ``2 * k + 1``); once a win is impossible
    within it, :attr:`failed` is true and :meth:`report` says why.
    """

    def __init__(self, k: int, max_replicas: int | None = None, label: str = "") -> None:
        if k < 1:
            raise ValueError(f"redundancy must be at least 1, not {k}")
        max_replicas = 2 * k + 1 if max_replicas is None else max_replicas
        if max_replicas < k:
            raise ValueError(f"max_replicas ({max_replicas}) is below the redundancy ({k})")
        self.k = k
        self.max_replicas = max_replicas
        self.label = label
        self._index: int | None = None
        self._started: set[str] = set()
        self._results: dict[str, SubtaskResult] = {}
        self._abandoned = ""

    # -- what happened --------------------------------------------------------

    def start(self, provider: str) -> None:
        """Record that a replica was launched on ``provider``."""
        if provider in self._started:
            raise ValueError(f"{provider} already ran a replica of {self._name()}")
        if len(self._started) >= self.max_replicas:
            raise ValueError(f"{self._name()} already used all {self.max_replicas} replicas")
        self._started.add(provider)

    def pick(self, candidates: Iterable[str]) -> list[str]:
        """Start :meth:`needed` replicas on the first unused ``candidates`` (in the
        caller's order of preference, e.g. cheapest first); returns the chosen ones."""
        chosen: list[str] = []
        want = self.needed()
        for provider in candidates:
            if len(chosen) == want:
                break
            if provider not in self._started and provider not in chosen:
                chosen.append(provider)
        for provider in chosen:
            self.start(provider)
        return chosen

    def add(self, result: SubtaskResult) -> None:
        """Record a replica's result (its provider is started implicitly if needed)."""
        if self._index is None:
            self._index = result.index
            self.label = self.label or f"subtask {result.index} ({result.name})"
        elif result.index != self._index:
            raise ValueError(f"result of subtask {result.index} added to {self._name()}")
        if result.provider in self._results:
            raise ValueError(f"{result.provider} already returned a result for {self._name()}")
        if result.provider not in self._started:
            self.start(result.provider)
        self._results[result.provider] = result

    def abandon(self, reason: str) -> None:
        """Give up (e.g. no unused provider is left); :attr:`failed` becomes true."""
        if self.winner is None:
            self._abandoned = reason

    # -- the decision -----------------------------------------------------------

    def _votes(self) -> dict[str, list[str]]:
        votes: dict[str, list[str]] = {}
        for provider, r in self._results.items():
            if r.ok:
                votes.setdefault(r.digest, []).append(provider)
        return votes

    def _leader(self) -> tuple[int, int]:
        """(votes for the best digest, votes in all)."""
        votes = self._votes()
        return max((len(v) for v in votes.values()), default=0), sum(map(len, votes.values()))

    def _short(self) -> int:
        """Fewest further votes that could make a winner: all for the leader."""
        best, total = self._leader()
        return max(self.k - best, total - 2 * best + 1, 0)

    @property
    def pending(self) -> frozenset[str]:
        """Providers started but not yet reported."""
        return frozenset(self._started - self._results.keys())

    @property
    def used(self) -> frozenset[str]:
        """Providers that ran or run a replica; none of them may run another."""
        return frozenset(self._started)

    @property
    def winner(self) -> SubtaskResult | None:
        """The agreed result (from the first agreeing provider by id), or None."""
        votes = self._votes()
        total = sum(map(len, votes.values()))
        for digest in sorted(votes):
            providers = votes[digest]
            if len(providers) >= self.k and 2 * len(providers) > total:
                return self._results[min(providers)]
        return None

    @property
    def agreeing(self) -> tuple[str, ...]:
        """The providers that returned the winning digest, sorted (empty until there is one)."""
        win = self.winner
        if win is None:
            return ()
        return tuple(sorted(p for p, r in self._results.items() if r.ok and r.digest == win.digest))

    @property
    def disagreed(self) -> bool:
        """True once two providers returned different digests."""
        return len(self._votes()) > 1

    @property
    def losers(self) -> frozenset[str]:
        """Providers whose result disagreed with the winner (empty until there is one)."""
        win = self.winner
        if win is None:
            return frozenset()
        return frozenset(p for p, r in self._results.items() if r.ok and r.digest != win.digest)

    @property
    def failed(self) -> bool:
        """No winner, and none is possible any more."""
        if self.winner is not None:
            return False
        if self._abandoned:
            return True
        room = self.max_replicas - len(self._started)
        return len(self.pending) + room < self._short()

    @property
    def done(self) -> bool:
        return self.failed or self.winner is not None

    def needed(self) -> int:
        """How many more replicas to launch now (0 when decided, failed or enough in flight)."""
        if self.done:
            return 0
        room = self.max_replicas - len(self._started)
        return max(0, min(self._short() - len(self.pending), room))

    # -- reporting ------------------------------------------------------------------

    def _name(self) -> str:
        return self.label or "this subtask"

    def report(self) -> str:
        """One line: who agreed, who lost, or why the subtask failed."""
        votes = self._votes()
        total = sum(map(len, votes.values()))
        win = self.winner
        if win is not None:
            agree = len(votes[win.digest])
            line = f"{self._name()}: {agree} of {total} replicas agree on {win.digest[:12]}"
            if self.losers:
                line += f"; rejected {', '.join(sorted(self.losers))}"
            return line
        parts = [f"{d[:12]} from {', '.join(sorted(p))}"
                 for d, p in sorted(votes.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
        parts += [f"{p} failed ({r.reason or 'no reason given'})"
                  for p, r in sorted(self._results.items()) if not r.ok]
        detail = "; ".join(parts) or "no results"
        if self._abandoned:
            return f"{self._name()}: abandoned ({self._abandoned}): {detail}"
        if self.failed:
            what = "providers disagreed" if len(votes) > 1 else "too few results"
            return (f"{self._name()}: {what}, no majority of {self.k} within "
                    f"{self.max_replicas} replicas: {detail}")
        return f"{self._name()}: waiting for {len(self.pending)} replicas: {detail}"
