"""Run a task's subtasks on an executor: cache lookups, retries, verification by
redundancy, the requestor's bid and budget, the task timeout, and results
handed back in subtask order however they finish.

The loop is the requestor's dispatcher. It gives a provider no more attempts
than it can start (its slots, plus the executor's ``prefetch``), fills free
slots cheapest provider first and lowest subtask index first, so the result
the caller waits for next is made first, and a provider that dies takes only
its own attempts with it. Each subtask's attempts are followed by a small
state object: :class:`SubtaskState` (one attempt at a time, retried on
failure) or, for redundancy k > 1, :class:`VerifiedState` (k distinct
providers must return the same sha256 of all output files; see
:mod:`gflite.gwasm.verify`). Decisions depend only on the set of results a
subtask got, never on the order they arrived in.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gflite.errors import ClusterError, ExecutionError, VerificationError
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.market import Bill, Ledger, Market, Reservation
from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult
from gflite.gwasm.verify import Quorum

OnResult = Callable[[SubtaskResult, bool], None]

# How often the loop looks again for providers while work waits for one.
POLL = 1.0
# A verified result names every provider that agreed on it, joined by this.
AGREED = "+"


class State(Protocol):
    """What :func:`run` needs from the bookkeeping of one subtask.

    ``in_flight`` is maintained by run; ``final`` stays None until the subtask
    is decided. ``plan(candidates)`` names the providers (from ``candidates``,
    free ones in order of preference) to start attempts on now, without side
    effects; run calls ``start(provider)`` for each attempt it really starts.
    ``drop`` ends an attempt whose provider was excluded meanwhile: it is no
    result and no failure.
    """

    subtask: Subtask
    in_flight: int
    final: SubtaskResult | None
    from_cache: bool

    def wants(self) -> bool: ...
    def plan(self, candidates: Sequence[str]) -> list[str]: ...
    def start(self, provider: str) -> None: ...
    def record(self, result: SubtaskResult) -> None: ...
    def drop(self, provider: str, reason: str) -> None: ...
    def give_up(self, reason: str) -> None: ...

    @property
    def losers(self) -> frozenset[str]: ...
    @property
    def disagreed(self) -> bool: ...
    @property
    def verdict(self) -> str: ...


@dataclass
class SubtaskState:
    """The attempts of one subtask at redundancy 1: one attempt at a time, up to
    ``max_attempts`` of them, preferring a provider that has not failed it yet;
    the first success is final."""

    subtask: Subtask
    max_attempts: int
    attempts: list[SubtaskResult] = field(default_factory=list)
    in_flight: int = 0
    final: SubtaskResult | None = None
    from_cache: bool = False

    def wants(self) -> bool:
        return self.final is None and self.in_flight == 0

    def plan(self, candidates: Sequence[str]) -> list[str]:
        if not self.wants():
            return []
        failed_on = {r.provider for r in self.attempts}
        return sorted(candidates, key=lambda p: p in failed_on)[:1]

    def start(self, provider: str) -> None:
        pass

    def record(self, result: SubtaskResult) -> None:
        """Take an attempt's result; sets ``final`` once the subtask is decided."""
        # Only who failed and why is needed later: keeping outputs would hold
        # every result's data until the task ends.
        self.attempts.append(_without_data(result) if result.ok else result)
        if result.ok:
            self.final = result
        elif len(self.attempts) >= self.max_attempts:
            n = len(self.attempts)
            self.final = replace(result, reason=f"{result.reason} (after {n} attempts)") if n > 1 else result

    def drop(self, provider: str, reason: str) -> None:
        pass

    def give_up(self, reason: str) -> None:
        last = self.attempts[-1].reason if self.attempts else ""
        self.final = SubtaskResult(
            index=self.subtask.index,
            name=self.subtask.name,
            ok=False,
            reason=f"{reason} (last attempt: {last})" if last else reason,
        )

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
    """The replicas of one subtask at redundancy k: started on distinct providers
    until k of them, a strict majority of all results, return the same digest
    (see :class:`~gflite.gwasm.verify.Quorum`, bounded by ``max_replicas``).
    More than ``max_failures`` failed replicas fail the subtask too.

    The final result names every provider that agreed, joined by ``+``.
    """

    def __init__(self, subtask: Subtask, k: int, *, max_failures: int,
                 max_replicas: int | None = None) -> None:
        self.subtask = subtask
        self.quorum = Quorum(k, max_replicas, label=f"subtask {subtask.index} ({subtask.name})")
        self.max_failures = max_failures
        self.failures = 0
        self.in_flight = 0
        self.final: SubtaskResult | None = None
        self.from_cache = False
        # Votes need only digests: one full copy per distinct digest is kept
        # for the winner, so k replicas do not hold k copies of the audio.
        self._data: dict[str, SubtaskResult] = {}

    def wants(self) -> bool:
        return self.final is None and self.quorum.needed() > 0

    def plan(self, candidates: Sequence[str]) -> list[str]:
        if not self.wants():
            return []
        used = self.quorum.used
        return [p for p in candidates if p not in used][: self.quorum.needed()]

    def start(self, provider: str) -> None:
        self.quorum.start(provider)

    def record(self, result: SubtaskResult) -> None:
        if result.ok:
            self._data.setdefault(result.digest, result)
            self.quorum.add(_without_data(result))
        else:
            self.quorum.add(result)
            self.failures += 1
        self._decide()

    def drop(self, provider: str, reason: str) -> None:
        self.quorum.add(SubtaskResult(self.subtask.index, self.subtask.name, ok=False,
                                      reason=reason, provider=provider))
        self._decide()

    def give_up(self, reason: str) -> None:
        self.quorum.abandon(reason)
        self._decide()

    def _decide(self) -> None:
        q = self.quorum
        win = q.winner
        if win is not None:
            self.final = replace(self._data[win.digest], provider=AGREED.join(q.agreeing))
            self._data.clear()
            return
        if not q.failed and self.failures > self.max_failures:
            q.abandon(f"{self.failures} replicas failed")
        if q.failed:
            self.final = SubtaskResult(self.subtask.index, self.subtask.name, ok=False,
                                       reason=q.report())

    @property
    def losers(self) -> frozenset[str]:
        return self.quorum.losers

    @property
    def disagreed(self) -> bool:
        return self.quorum.disagreed

    @property
    def verdict(self) -> str:
        return self.quorum.report()


@dataclass
class TaskReport:
    """What a run leaves besides its results. Filled as the run goes; complete
    once it ended, also when it raised."""

    redundancy: int = 1
    bill: Bill | None = None
    names: dict[str, str] = field(default_factory=dict)  # provider id -> display name
    rejected: dict[str, str] = field(default_factory=dict)  # provider -> verdict that excluded it
    disagreements: list[str] = field(default_factory=list)  # verdicts of subtasks with a dispute
    verified: int = 0  # subtasks decided by agreement in this run

    def name(self, provider: str) -> str:
        name = self.names.get(provider, provider)
        return provider if name == provider else f"{name} ({provider})"

    def lines(self) -> list[str]:
        """The summary: verification, excluded providers, then the bill."""
        out = []
        if self.redundancy > 1:
            out.append(f"verified {self.verified} subtasks on {self.redundancy} providers each; "
                       f"{len(self.disagreements)} with disagreeing results")
        for provider, verdict in sorted(self.rejected.items()):
            out.append(f"excluded {self.name(provider)}: {verdict}")
        if self.bill is not None:
            out += self.bill.lines(self.names)
        return out


def _outcome(future: Future[SubtaskResult], subtask: Subtask, provider: str) -> SubtaskResult:
    """The attempt's result, as run on ``provider``; an executor failure counts as a
    failed attempt."""
    try:
        result = future.result()
    except CancelledError:
        reason = "cancelled"
    except Exception as exc:  # e.g. a lost cluster worker: retry like any failure
        reason = f"executor error: {type(exc).__name__}: {exc}"
    else:
        return result if result.provider == provider else replace(result, provider=provider)
    return SubtaskResult(index=subtask.index, name=subtask.name, ok=False, reason=reason,
                         provider=provider)


def _seconds(s: float) -> str:
    return f"{s:g} s"


def _without_data(result: SubtaskResult) -> SubtaskResult:
    # dataclasses.replace passes the digest on, so it is not recomputed.
    return replace(result, outputs=tuple((rel, b"") for rel, _ in result.outputs),
                   stdout=b"", stderr=b"")


def agreed_by(result: SubtaskResult) -> int:
    """How many providers agreed on a result (1 unless it was verified)."""
    return len(result.provider.split(AGREED))


def failure_message(outcomes: Iterable[SubtaskResult], shown: int = 3) -> str:
    """One line naming the failed subtasks and why, e.g. ``2 of 5 subtasks failed: s2 (exit code 3), ...``."""
    outcomes = list(outcomes)
    failed = [r for r in outcomes if not r.ok]
    parts = [f"{r.name} ({r.reason[:120]})" for r in failed[:shown]]
    if len(failed) > shown:
        parts.append(f"and {len(failed) - shown} more")
    return f"{len(failed)} of {len(outcomes)} subtasks failed: {', '.join(parts)}"


def _capacity(executor: Executor, offered: Sequence[Provider]) -> Callable[[str], int]:
    """How many attempts each provider may hold: its slots (a cluster worker's
    threads; 1 for a local worker slot) plus the executor's ``prefetch``, which
    hides a network round trip between one attempt and the next."""
    table = {p.id: max(1, p.slots) for p in offered}
    extra = executor.prefetch
    return lambda provider: table.get(provider, 1) + extra


@dataclass(eq=False)
class _Running:
    state: Any
    provider: str
    reservation: Reservation


def run(
    executor: Executor,
    program: Program,
    subtasks: Iterable[Subtask],
    limits: Limits,
    *,
    retries: int = 2,
    task_timeout: float | None = None,
    cache: ResultCache | None = None,
    on_result: OnResult | None = None,
    make_state: Callable[[Subtask], Any] | None = None,
    redundancy: int = 1,
    max_replicas: int | None = None,
    market: Market | None = None,
    first_estimate: float | None = None,
    report: TaskReport | None = None,
) -> Iterator[SubtaskResult]:
    """Yield each subtask's successful result in index order, as soon as it and
    all before it are done.

    Cached results are used without executing (at redundancy k only those that
    k providers agreed on). A failed attempt is retried up to ``retries``
    times. At ``redundancy`` k > 1 each subtask runs on k distinct providers,
    and on more (up to ``max_replicas``, default 2k + 1) while they disagree;
    a provider whose result loses a vote is excluded for the rest of the task
    and not paid. ``market`` admits providers at or under its bid, cheapest
    first, and caps the task's cost at its budget (``first_estimate``:
    CPU-seconds to hold for an attempt before any has finished; default the
    subtask timeout). Too few eligible providers for the redundancy raise
    MarketError before anything runs.

    If a subtask still fails, the others run to the end (and are cached) and
    then ExecutionError is raised with every subtask's final outcome
    (VerificationError if providers disagreed past the bound); after
    ``task_timeout`` seconds the unfinished ones are cancelled and reported
    as timed out. Closing the generator early cancels everything still
    pending. ``report`` receives the bill and the verdicts. ``make_state``
    replaces the per-subtask bookkeeping (see :class:`State`).
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    if redundancy < 1:
        raise ValueError("redundancy must be >= 1")
    market = market or Market()
    report = report if report is not None else TaskReport()
    report.redundancy = redundancy
    if make_state is None:

        def make_state(subtask: Subtask) -> Any:
            if redundancy == 1:
                return SubtaskState(subtask, retries + 1)
            return VerifiedState(subtask, redundancy, max_failures=retries,
                                 max_replicas=max_replicas)

    states = [make_state(s) for s in sorted(subtasks, key=lambda s: s.index)]
    if len({st.subtask.index for st in states}) != len(states):
        raise ValueError("subtask indices must be unique")
    deadline = None if task_timeout is None else time.monotonic() + task_timeout
    grace = executor.rejoin_grace
    in_flight: dict[Future[SubtaskResult], _Running] = {}
    load: Counter[str] = Counter()
    excluded: set[str] = set()
    ledger: Ledger | None = None
    next_out = 0

    def finished(st: Any) -> None:
        assert st.final is not None
        if st.final.ok and cache is not None and not st.from_cache:
            cache.put(program, st.subtask, st.final)
        if on_result is not None:
            on_result(st.final, st.from_cache)

    def stop(future: Future[SubtaskResult]) -> _Running:
        """Cancel a running attempt that is no longer needed; it costs nothing."""
        future.cancel()
        r = in_flight.pop(future)
        load[r.provider] -= 1
        r.state.in_flight -= 1
        assert ledger is not None
        ledger.release(r.reservation)
        return r

    def conclude(st: Any) -> None:
        """A subtask was decided: stop its other replicas, exclude the providers that
        lost its vote, and keep its result (``on_result`` sees the verdict done)."""
        for future, r in list(in_flight.items()):
            if r.state is st:
                stop(future)
        if st.disagreed:
            report.disagreements.append(st.verdict)
        if st.final.ok and redundancy > 1 and not st.from_cache:
            report.verified += 1
        for loser in sorted(st.losers - excluded):
            excluded.add(loser)
            assert ledger is not None
            ledger.reject(loser)
            report.rejected[loser] = st.verdict
            for future, r in list(in_flight.items()):
                if r.provider == loser:
                    stop(future)
                    r.state.drop(loser, f"provider {loser} was excluded")
                    if r.state.final is not None:
                        conclude(r.state)
        finished(st)

    def launch(st: Any, provider: str, reservation: Reservation) -> None:
        assert ledger is not None
        try:
            future = executor.submit(program, st.subtask, limits, provider=provider)
        except ClusterError:
            ledger.release(reservation)
            raise
        except Exception as exc:  # refused: counts as a failed attempt, so this is bounded
            ledger.release(reservation)
            st.start(provider)
            st.record(SubtaskResult(st.subtask.index, st.subtask.name, ok=False,
                                    reason=f"cannot submit: {type(exc).__name__}: {exc}",
                                    provider=provider))
            if st.final is not None:
                conclude(st)
            return
        st.start(provider)
        st.in_flight += 1
        load[provider] += 1
        in_flight[future] = _Running(st, provider, reservation)

    def dispatch(waiting: list[Any]) -> bool:
        """Start attempts on free providers; False if some subtask has no provider
        it may use at all (everyone eligible has run it, or nobody is eligible)."""
        assert ledger is not None
        waiting = [st for st in waiting if st.final is None and st.wants()]
        if not waiting:
            return True
        offered = market.eligible(executor.providers(), excluded)
        ledger.add_providers(offered)
        report.names.update({p.id: p.display for p in offered})
        everyone = [p.id for p in offered]
        capacity = _capacity(executor, offered)
        free = [p for p in everyone if load[p] < capacity(p)]
        servable = True
        for st in waiting:
            if not free:
                break
            for provider in st.plan(free):
                reservation = ledger.reserve(provider, st.subtask)
                if reservation is None:  # the budget waits for running attempts to settle
                    return True
                launch(st, provider, reservation)
                if load[provider] >= capacity(provider):
                    free.remove(provider)
            if st.final is None and st.in_flight == 0 and not st.plan(everyone):
                servable = False
        return servable and bool(everyone)

    try:
        if cache is not None:
            for st in states:
                hit = cache.get(program, st.subtask)
                if hit is not None and agreed_by(hit) >= redundancy:
                    st.final, st.from_cache = hit, True
                    finished(st)
        open_states = [st for st in states if st.final is None]
        ledger = Ledger(market, executor.providers() if open_states else (),
                        first_estimate=limits.subtask_timeout if first_estimate is None
                        else first_estimate)
        if open_states:
            # Before any work: enough distinct providers at or under the bid?
            market.check(executor.providers(), redundancy)

        stuck_since: float | None = None
        while True:
            while next_out < len(states) and states[next_out].final is not None and states[next_out].final.ok:
                result = states[next_out].final
                yield result
                # Kept only for the error report: drop the data once handed over.
                states[next_out].final = _without_data(result)
                next_out += 1
            open_states = [st for st in open_states if st.final is None]
            if not open_states:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                for future in list(in_flight):
                    stop(future)
                for st in open_states:
                    st.give_up(f"task timeout of {_seconds(task_timeout or 0)} exceeded")
                    finished(st)
                break
            servable = dispatch(open_states)
            if in_flight:
                stuck_since = None
                # Waiting work looks again now and then: providers may join or free up.
                timeout = POLL if any(st.final is None and st.wants() for st in open_states) else None
                if deadline is not None:
                    left = max(0.0, deadline - time.monotonic())
                    timeout = left if timeout is None else min(timeout, left)
                done, _ = wait(list(in_flight), timeout=timeout, return_when=FIRST_COMPLETED)
                for future in done:
                    if future not in in_flight:  # stopped meanwhile (its provider was excluded)
                        continue
                    r = in_flight.pop(future)
                    load[r.provider] -= 1
                    st = r.state
                    st.in_flight -= 1
                    result = _outcome(future, st.subtask, r.provider)
                    ledger.settle(r.reservation, result)
                    if st.final is not None:
                        continue
                    if r.provider in excluded:
                        st.drop(r.provider, f"provider {r.provider} was excluded")
                    else:
                        st.record(result)
                    if st.final is not None:
                        conclude(st)
                continue
            if any(st.final is None for st in open_states):
                # Nothing runs and nothing could start: wait a little for providers to
                # (re)join a cluster, then give up on what is left.
                stuck_since = stuck_since or now
                if now - stuck_since < grace:
                    time.sleep(min(POLL, grace))
                    continue
                eligible = market.eligible(executor.providers(), excluded)
                why = ("no provider at or under the bid is left" if not eligible
                       else "no provider that has not run it is left" if not servable
                       else "no provider could take it")
                for st in open_states:
                    if st.final is None:
                        st.give_up(why)
                        conclude(st)

        outcomes = tuple(st.final for st in states)
        failed = [st for st in states if not st.final.ok]
        if failed:
            disputed = [st for st in failed if st.disagreed]
            if disputed:
                more = f" (and {len(disputed) - 1} more)" if len(disputed) > 1 else ""
                raise VerificationError(
                    f"{len(disputed)} of {len(states)} subtasks could not be verified: "
                    f"{disputed[0].verdict}{more}", outcomes)
            timed_out = any("task timeout" in st.final.reason for st in failed)
            message = failure_message(outcomes)
            if timed_out:
                message = f"task timeout of {_seconds(task_timeout or 0)} exceeded; {message}"
            raise ExecutionError(message, outcomes)
    finally:
        for future in list(in_flight):
            future.cancel()
            if ledger is not None:
                ledger.release(in_flight[future].reservation)
        in_flight.clear()
        if ledger is not None:
            report.bill = ledger.bill()
        for provider, why in executor.excluded().items():
            report.rejected.setdefault(provider, why)

