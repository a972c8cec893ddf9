"""The requestor's dispatcher: runs a task's subtasks on an executor under the
run's :class:`~gflite.gwasm.terms.RunTerms` and hands results back in subtask
order however they finish.

It gives a provider no more attempts than it can start (its slots, plus the
executor's ``prefetch``), and fills free slots lowest subtask index first, so
the result the caller waits for next is made first; a provider that dies
takes only its own attempts with it. Each subtask's attempts are followed by
a state object from :mod:`gflite.gwasm.attempts`. A provider whose result
loses a vote is excluded with every provider of its operator; one that sends
a malformed answer is excluded; a result accepted from another machine may be
audited in this machine's sandbox, and a provider caught forging it is
excluded too. Accepted results carry their :class:`Provenance`.
"""
from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from dataclasses import dataclass, fields, replace

from gflite.errors import ClusterError, ExecutionError, GfliteError, VerificationError
from gflite.gwasm.attempts import State, SubtaskState, VerifiedState, without_data
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.market import Ledger, Reservation
from gflite.gwasm.outcomes import Accepted, Provenance, Trust
from gflite.gwasm.spool import release
from gflite.gwasm.subtask import Failure, Program, Subtask, SubtaskResult
from gflite.gwasm.terms import RunTerms, TaskReport

OnResult = Callable[[SubtaskResult, bool], None]
MakeState = Callable[[Subtask], State]

# How often the loop looks again for providers while work waits for one.
POLL = 1.0
# An audit that finds these in this machine's sandbox, where the provider
# returned a result, caught a forgery: the guest is deterministic.
_CAUGHT_BY = (Failure.GUEST, Failure.LIMIT, Failure.BAD_INPUT)


@dataclass(eq=False)
class _Running:
    """One attempt in flight: its subtask's state, provider and reservation."""
    state: State
    provider: str
    reservation: Reservation


def _seconds(s: float) -> str:
    return f"{s:g} s"


def failure_message(outcomes: Iterable[SubtaskResult], shown: int = 3) -> str:
    """One line naming the failed subtasks and why, e.g. ``2 of 5 subtasks failed: s2 (exit code 3), ...``."""
    outcomes = list(outcomes)
    failed = [r for r in outcomes if not r.ok]
    parts = [f"{r.name} ({r.reason[:120]})" for r in failed[:shown]]
    if len(failed) > shown:
        parts.append(f"and {len(failed) - shown} more")
    return f"{len(failed)} of {len(outcomes)} subtasks failed: {', '.join(parts)}"


class Dispatcher:
    """One run of one task. Create it, then iterate :meth:`results` once.

    ``cache`` replays results that meet the run's :class:`Trust` and stores
    new ones; ``auditor`` runs audits (an executor on this machine);
    ``on_result(result, from_cache)`` sees every subtask's final outcome in
    completion order; ``report`` receives the bill and the verdicts;
    ``make_state`` replaces the per-subtask bookkeeping; ``files``: results
    are files (the executor's spool, the cache's entries; see
    :mod:`gflite.gwasm.spool`), never read whole here.
    """

    def __init__(self, executor: Executor, program: Program, subtasks: Iterable[Subtask],
                 terms: RunTerms, *, cache: ResultCache | None = None,
                 auditor: Executor | None = None, on_result: OnResult | None = None,
                 report: TaskReport | None = None, make_state: MakeState | None = None,
                 files: bool = False) -> None:
        self.executor = executor
        # files: cached results are replayed as OutputFiles (checked as they
        # are copied out), and spool files are removed once handed over.
        self.files = files
        self.program = program
        self.terms = terms
        self.cache = cache if terms.use_cache else None
        self.auditor = auditor if not executor.on_this_machine and terms.audit > 0 else None
        self.on_result = on_result
        self.report = report if report is not None else TaskReport()
        self.report.redundancy = terms.redundancy
        self.local = executor.on_this_machine
        self.owners: dict[str, str] = {}  # provider -> operator, as last declared
        self._new_state = make_state or self._make_state
        self.states: list[State] = []
        # A collection is taken whole (in index order); an iterator (a chunker
        # still cutting) is drawn from as work is needed, so the first subtask
        # runs before the last is made. It must give indices in rising order.
        self._source: Iterator[Subtask] | None = None
        if isinstance(subtasks, Iterator):
            self._source = subtasks
        else:
            self.states = [self._new_state(s) for s in sorted(subtasks, key=lambda s: s.index)]
            if len({st.subtask.index for st in self.states}) != len(self.states):
                raise ValueError("subtask indices must be unique")
        self.open: list[State] = []
        self.cached: set[int] = set()  # subtask indices replayed from the cache
        self.running: dict[Future[SubtaskResult], _Running] = {}
        self.audits: dict[Future[SubtaskResult], State] = {}
        self.load: Counter[str] = Counter()
        self.excluded: set[str] = set()  # providers
        self.excluded_operators: set[str] = set()
        self.ledger: Ledger | None = None
        self.next_out = 0
        self.deadline: float | None = None
        # Decided subtasks whose on_result is still due: told from the main loop,
        # once the attempt's future and raw answer are no longer referenced.
        self.decided: list[State] = []

    # -- per-subtask state -------------------------------------------------------

    def owner(self, provider: str) -> str:
        return self.owners.get(provider, provider)

    def _make_state(self, subtask: Subtask) -> State:
        t = self.terms
        if t.redundancy == 1:
            return SubtaskState(subtask, t.retries + 1,
                                attempts_after=lambda f: t.attempts_after(f, local=self.local),
                                exclusive=not self.local)
        return VerifiedState(subtask, t.redundancy, max_failures=t.retries,
                             max_replicas=t.max_replicas, owner=self.owner, seed=t.seed)

    # -- the run -------------------------------------------------------------------

    def results(self) -> Iterator[SubtaskResult]:
        """Yield each subtask's accepted result in index order, as soon as it and
        all before it are done.

        If a subtask still fails, the others run to the end (and are cached)
        and then ExecutionError is raised with every subtask's final outcome
        (VerificationError if providers disagreed past the bound); after the
        task timeout the unfinished ones are cancelled and reported as timed
        out. Closing the generator early cancels everything still pending.
        Too few eligible operators for the redundancy raise MarketError
        before anything runs.
        """
        t = self.terms
        if t.task_timeout is not None:
            self.deadline = time.monotonic() + t.task_timeout
        try:
            self._replay(self.states)
            self.open = [st for st in self.states if st.final is None]
            self._pull()
            providers = self._learn(self.executor.providers()) if self.open else ()
            self.ledger = Ledger(
                t.market, providers, max_claim=t.limits.subtask_timeout,
                first_estimate=t.limits.subtask_timeout if t.first_estimate is None else t.first_estimate)
            checked = False
            stuck_since: float | None = None
            while True:
                self._tell()
                yield from self._hand_out()
                self.open = [st for st in self.open if self._undecided(st)]
                self._pull()
                if not self.open and self._source is None:
                    break
                if self.open and not checked:
                    # Before any work: enough distinct operators at or under the bid?
                    t.market.check(self._learn(self.executor.providers()), t.redundancy, t.limits)
                    checked = True
                if not self.open:
                    continue
                now = time.monotonic()
                if self.deadline is not None and now >= self.deadline:
                    self._time_out()
                    break
                servable = self._dispatch()
                if self.running or self.audits:
                    stuck_since = None
                    self._collect()
                    if self.deadline is None or time.monotonic() < self.deadline:
                        # Refill the providers that just finished before handing the
                        # results out: the caller's work on them (writing audio,
                        # reading on in its source) must not keep a provider idle.
                        # What stops the dispatch (the budget, a lost cluster) waits
                        # until the results in hand are out: the loop's own dispatch
                        # meets it again then.
                        with contextlib.suppress(GfliteError):
                            self._dispatch()
                    continue
                # Nothing runs and nothing could start: wait a little for providers
                # to (re)join a cluster, then give up on what is left.
                stuck_since = stuck_since or now
                if now - stuck_since < self.executor.rejoin_grace:
                    time.sleep(min(POLL, self.executor.rejoin_grace))
                    continue
                self._pull(everything=True)
                eligible = self._eligible()
                why = ("no provider at or under the bid is left" if not eligible
                       else "no provider that has not run it is left" if not servable
                       else "no provider could take it")
                for st in self.open:
                    if st.final is None:
                        st.give_up(why, Failure.NO_PROVIDER)
                        self._conclude(st)
            self._tell()
            self._raise_failures()
        finally:
            for future in list(self.running):
                future.cancel()
                if self.ledger is not None:
                    self.ledger.release(self.running[future].reservation)
            self.running.clear()
            for future in list(self.audits):
                future.cancel()
            self.audits.clear()
            if self.ledger is not None:
                self.report.bill = self.ledger.bill()

    def _pull(self, everything: bool = False) -> None:
        """Draw subtasks from an iterator source until enough wait to keep every
        provider busy (cached ones are replayed on the way and wait for nothing),
        or until it is exhausted."""
        if self._source is None:
            return
        want = 2 * max(1, len(self.owners)) * (1 + self.executor.prefetch) + 2
        while everything or sum(1 for st in self.open if st.final is None and st.in_flight == 0) < want:
            subtask = next(self._source, None)
            if subtask is None:
                self._source = None
                return
            if self.states and subtask.index <= self.states[-1].subtask.index:
                raise ValueError("an iterator of subtasks must give rising, unique indices")
            st = self._new_state(subtask)
            self.states.append(st)
            self._replay([st])
            if st.final is None:
                self.open.append(st)
            elif not everything and not self.open:
                return  # nothing to start: hand the hit out before reading on

    def _replay(self, states: Iterable[State]) -> None:
        if self.cache is None:
            return
        trust = Trust.for_run(redundancy=self.terms.redundancy, local=self.local)
        look = self.cache.lookup if self.files else self.cache.get
        for st in states:
            hit = look(self.program, st.subtask, trust)
            if hit is not None:
                st.final = hit
                self.cached.add(st.subtask.index)
                self._finish(st)

    def _undecided(self, st: State) -> bool:
        return st.final is None or st.subtask.index in {s.subtask.index for s in self.audits.values()}

    def _hand_out(self) -> Iterator[SubtaskResult]:
        auditing = {s.subtask.index for s in self.audits.values()}
        while self.next_out < len(self.states):
            st = self.states[self.next_out]
            if st.final is None or not st.final.ok or st.subtask.index in auditing:
                return
            yield st.final
            # Kept only for the error report: drop the data once handed over.
            release(st.final.outputs)
            st.final = without_data(st.final)
            self.next_out += 1

    # -- providers -------------------------------------------------------------------

    def _learn(self, providers: Sequence[Provider]) -> tuple[Provider, ...]:
        for p in providers:
            self.owners[p.id] = p.owner
        self.report.names.update({p.id: p.display for p in providers})
        return tuple(providers)

    def _eligible(self) -> tuple[Provider, ...]:
        offered = [p for p in self._learn(self.executor.providers())
                   if p.owner not in self.excluded_operators]
        return self.terms.market.eligible(offered, self.excluded, self.terms.limits)

    def _capacity(self, offered: Sequence[Provider]) -> Callable[[str], int]:
        """How many attempts each provider may hold: its slots (a cluster worker's
        threads; 1 for a local worker slot) plus the executor's ``prefetch``,
        which hides a network round trip between one attempt and the next."""
        table = {p.id: max(1, p.slots) for p in offered}
        extra = self.executor.prefetch
        return lambda provider: table.get(provider, 1) + extra

    def _exclude(self, provider: str, verdict: str, *, operator: bool) -> None:
        """Stop giving work to ``provider`` (and, if ``operator``, to every provider
        of its operator) for the rest of the task; it is not paid."""
        assert self.ledger is not None
        who = {provider}
        if operator:
            op = self.owner(provider)
            self.excluded_operators.add(op)
            who |= {p for p, o in self.owners.items() if o == op}
        for p in sorted(who - self.excluded):
            self.excluded.add(p)
            self.ledger.reject(p)
            self.report.rejected[p] = verdict
            for future, r in list(self.running.items()):
                if r.provider == p:
                    self._stop(future)
                    r.state.drop(p, f"provider {p} was excluded")
                    if r.state.final is not None:
                        self._conclude(r.state)

    # -- attempts ------------------------------------------------------------------------

    def _dispatch(self) -> bool:
        """Start attempts on free providers; False if some subtask has no provider
        it may use at all (everyone eligible has run it, or nobody is eligible)."""
        assert self.ledger is not None
        waiting = [st for st in self.open if st.final is None and st.wants()]
        if not waiting:
            return True
        offered = self._eligible()
        self.ledger.add_providers(offered)
        everyone = [p.id for p in offered]
        capacity = self._capacity(offered)
        free = [p for p in everyone if self.load[p] < capacity(p)]
        servable = True
        for st in waiting:
            if not free:
                break
            for provider in st.plan(free):
                reservation = self.ledger.reserve(provider, st.subtask)
                if reservation is None:  # the budget waits for running attempts to settle
                    return True
                self._launch(st, provider, reservation)
                if self.load[provider] >= capacity(provider):
                    free.remove(provider)
            if st.final is None and st.in_flight == 0 and not st.plan(everyone):
                servable = False
        return servable and bool(everyone)

    def _launch(self, st: State, provider: str, reservation: Reservation) -> None:
        assert self.ledger is not None
        try:
            future = self.executor.submit(self.program, st.subtask, self.terms.limits, provider=provider)
        except ClusterError:
            self.ledger.release(reservation)
            raise
        except Exception as exc:  # refused: counts as a failed attempt, so this is bounded
            self.ledger.release(reservation)
            st.start(provider)
            st.record(SubtaskResult.failed(st.subtask, f"cannot submit: {type(exc).__name__}: {exc}",
                                           Failure.LOST, provider=provider))
            if st.final is not None:
                self._conclude(st)
            return
        st.start(provider)
        st.in_flight += 1
        self.load[provider] += 1
        self.running[future] = _Running(st, provider, reservation)

    def _stop(self, future: Future[SubtaskResult]) -> _Running:
        """Cancel a running attempt that is no longer needed; it costs nothing."""
        assert self.ledger is not None
        future.cancel()
        r = self.running.pop(future)
        self.load[r.provider] -= 1
        r.state.in_flight -= 1
        self.ledger.release(r.reservation)
        return r

    def _collect(self) -> None:
        """Wait for the next attempts or audits to finish and take their results."""
        assert self.ledger is not None
        # Waiting work looks again now and then: providers may join or free up.
        timeout = POLL if any(st.final is None and st.wants() for st in self.open) else None
        if self.deadline is not None:
            left = max(0.0, self.deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        done, _ = wait([*self.running, *self.audits], timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            if future in self.audits:
                st = self.audits.pop(future)
                self._audited(st, _outcome(future, st.subtask, "audit"))
                continue
            if future not in self.running:  # stopped meanwhile (its provider was excluded)
                continue
            r = self.running.pop(future)
            self.load[r.provider] -= 1
            st = r.state
            st.in_flight -= 1
            result = _outcome(future, st.subtask, r.provider)
            self.ledger.settle(r.reservation, result)
            if st.final is not None:
                continue
            if r.provider in self.excluded:
                st.drop(r.provider, f"provider {r.provider} was excluded")
            else:
                st.record(result)
                if result.failure is Failure.MALFORMED:
                    self._exclude(r.provider, f"malformed answer: {result.reason}", operator=False)
            if st.final is not None:
                self._conclude(st)

    # -- verdicts ------------------------------------------------------------------------

    def _conclude(self, st: State) -> None:
        """A subtask was decided: stop its other replicas, exclude the operators
        that lost its vote, pay agreeing replicas the least claim, then audit
        or keep its result."""
        assert self.ledger is not None and st.final is not None
        for future, r in list(self.running.items()):
            if r.state is st:
                self._stop(future)
        if st.disagreed:
            self.report.disagreements.append(st.verdict)
        if st.final.ok and self.terms.redundancy > 1:
            self.report.verified += 1
            self.ledger.agree(st.subtask.index, st.agreeing)
        for loser in sorted(st.losers):
            self._exclude(loser, st.verdict, operator=True)
        if st.final.ok and self._audit_due(st):
            self._start_audit(st)
            return
        self._finish(st)

    def _provenance(self, st: State, *, local: bool) -> Provenance:
        agreeing = st.agreeing or (st.final.provider,)  # type: ignore[union-attr]
        return Provenance(local=local, operators=tuple(self.owner(p) for p in agreeing),
                          providers=agreeing)

    def _finish(self, st: State, provenance: Provenance | None = None) -> None:
        """Keep a decided subtask: accept a result with its provenance (default:
        who agreed on it in this run) and cache it; ``on_result`` is told soon."""
        assert st.final is not None
        from_cache = st.subtask.index in self.cached
        if st.final.ok and not from_cache:
            st.final = Accepted.of(st.final, provenance or self._provenance(st, local=self.local))
            if self.cache is not None:
                self.cache.put(self.program, st.subtask, st.final)
        self.decided.append(st)

    def _tell(self) -> None:
        decided, self.decided = self.decided, []
        if self.on_result is not None:
            for st in decided:
                assert st.final is not None
                self.on_result(st.final, st.subtask.index in self.cached)

    # -- audits ----------------------------------------------------------------------------

    def _audit_due(self, st: State) -> bool:
        if self.auditor is None:
            return False
        draw = random.Random(f"audit:{self.terms.seed}:{st.subtask.digest}").random()
        return draw < self.terms.audit

    def _start_audit(self, st: State) -> None:
        assert self.auditor is not None
        future = self.auditor.submit(self.program, st.subtask, self.terms.limits)
        self.audits[future] = st

    def _audited(self, st: State, local: SubtaskResult) -> None:
        """This machine's sandbox ran ``st`` again: the same digest makes the result
        ours too; another digest, or a deterministic failure where the provider
        claimed success, catches the providers that returned it."""
        assert st.final is not None
        self.report.audited += 1
        agreeing = st.agreeing or (st.final.provider,)
        provenance = self._provenance(st, local=True)
        if local.ok and local.digest == st.final.digest:
            pass
        elif local.ok or local.failure in _CAUGHT_BY:
            self.report.caught += 1
            what = local.digest[:12] if local.ok else f"failed ({local.reason})"
            verdict = (f"audit of subtask {st.subtask.index} ({st.subtask.name}): returned "
                       f"{st.final.digest[:12]}, this machine's sandbox {what}")
            for p in agreeing:
                self._exclude(p, verdict, operator=True)
            provenance = Provenance(local=True, operators=(), providers=())
            st.final = local if local.ok else replace(local, reason=f"audit: {local.reason}")
        else:  # this machine lost the attempt: the result stands as the run verified it
            provenance = None
        self._finish(st, provenance)

    # -- the end ------------------------------------------------------------------------------

    def _time_out(self) -> None:
        self._pull(everything=True)
        for future in list(self.running):
            self._stop(future)
        for future, st in list(self.audits.items()):
            future.cancel()
            del self.audits[future]
            self._finish(st)  # verified as the run asked, just not audited
        reason = f"task timeout of {_seconds(self.terms.task_timeout or 0)} exceeded"
        for st in self.open:
            if st.final is None:
                st.give_up(reason, Failure.TASK_TIMEOUT)
                self._finish(st)

    def _raise_failures(self) -> None:
        outcomes = tuple(st.final for st in self.states)
        failed = [st for st in self.states if not st.final.ok]  # type: ignore[union-attr]
        if not failed:
            return
        disputed = [st for st in failed if st.disagreed]
        if disputed:
            more = f" (and {len(disputed) - 1} more)" if len(disputed) > 1 else ""
            raise VerificationError(
                f"{len(disputed)} of {len(self.states)} subtasks could not be verified: "
                f"{disputed[0].verdict}{more}", outcomes)
        message = failure_message(outcomes)  # type: ignore[arg-type]
        if any(st.final.failure is Failure.TASK_TIMEOUT for st in failed):  # type: ignore[union-attr]
            message = f"task timeout of {_seconds(self.terms.task_timeout or 0)} exceeded; {message}"
        raise ExecutionError(message, outcomes)


def _outcome(future: Future[SubtaskResult], subtask: Subtask, provider: str) -> SubtaskResult:
    """The attempt's result, as run on ``provider``; an executor failure counts as a
    failed attempt."""
    try:
        result = future.result()
    except CancelledError:
        reason, failure = "cancelled", Failure.CANCELLED
    except Exception as exc:  # e.g. a lost cluster worker: retry like any failure
        reason, failure = f"executor error: {type(exc).__name__}: {exc}", Failure.LOST
    else:
        # The answer is the provider's data: a plain result, named for the provider
        # we asked, with the digest of its outputs (never the one it states).
        untyped = not result.ok and result.failure is None
        if (type(result) is SubtaskResult and result.provider == provider and not untyped
                and (not result.ok or result.digest == _digest(result))):
            return result
        values = {f.name: getattr(result, f.name) for f in fields(SubtaskResult)}
        values.update(provider=provider, digest="")
        if untyped:
            values["failure"] = Failure.LOST  # maybe the provider's fault: retry elsewhere
        return SubtaskResult(**values)
    return SubtaskResult.failed(subtask, reason, failure, provider=provider)


def _digest(result: SubtaskResult) -> str:
    return replace(result, digest="").digest
