"""execution.run on a real LocalExecutor: ordered streaming, retries, failures that
report every subtask, the task timeout, resuming from the result cache,
cancelling on close, verification by redundancy, the bid and the budget.

Thin executor wrappers stand for what a network of providers does to us:
counting submissions, a provider that loses the first attempt, providers with
prices, and providers that lie about their outputs.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest

from gflite.errors import ExecutionError, MarketError, VerificationError
from gflite.gwasm import execution
from gflite.gwasm.cache import ResultCache
from gflite.gwasm.executors.base import Executor, Provider
from gflite.gwasm.executors.local import LocalExecutor
from gflite.gwasm.market import Market
from gflite.gwasm.subtask import Failure, Limits, Program, Subtask, SubtaskResult

WatProgram = Callable[[str], Program]
LIMITS = Limits(memory_bytes=64 << 20, subtask_timeout=20.0, output_bytes=1 << 20)


def T(**kw: object) -> execution.RunTerms:
    """The run's terms, with this module's limits unless given."""
    kw.setdefault("limits", LIMITS)
    return execution.RunTerms(**kw)  # type: ignore[arg-type]


class Counting(Executor):
    """Passes attempts to a real executor and remembers them: which subtask, on
    which provider, and the most attempts a provider held at once."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner
        self.on_this_machine = inner.on_this_machine
        self.submitted: list[tuple[str, Future[SubtaskResult]]] = []
        self.placed: list[tuple[str, str | None]] = []  # (subtask, provider)
        self.holding: dict[str | None, int] = {}
        self.most = 0

    def providers(self) -> tuple[Provider, ...]:
        return self.inner.providers()

    def submit(self, program: Program, subtask: Subtask, limits: Limits, provider: str | None = None):  # type: ignore[no-untyped-def]
        future = self.inner.submit(program, subtask, limits, provider)
        self.submitted.append((subtask.name, future))
        self.placed.append((subtask.name, provider))
        self.holding[provider] = self.holding.get(provider, 0) + 1
        self.most = max(self.most, self.holding[provider])

        def done(_: Future[SubtaskResult]) -> None:
            self.holding[provider] -= 1

        future.add_done_callback(done)
        return future

    def close(self) -> None:
        pass  # the inner executor belongs to its fixture

    def names(self) -> list[str]:
        return [name for name, _ in self.submitted]

    def on(self, name: str) -> list[str | None]:
        """The providers attempts of subtask ``name`` were placed on."""
        return [p for n, p in self.placed if n == name]


class LosesFirstAttempt(Counting):
    """A provider that drops the first attempt of each subtask: once as a failed
    result, once (``raises=True``) as an exception from the executor."""

    def __init__(self, inner: Executor, raises: bool = False) -> None:
        super().__init__(inner)
        self.raises = raises
        self.seen: set[str] = set()

    def submit(self, program: Program, subtask: Subtask, limits: Limits, provider: str | None = None):  # type: ignore[no-untyped-def]
        if subtask.name in self.seen:
            return super().submit(program, subtask, limits, provider)
        self.seen.add(subtask.name)
        future: Future[SubtaskResult] = Future()
        if self.raises:
            future.set_exception(ConnectionError("provider went away"))
        else:
            future.set_result(SubtaskResult(subtask.index, subtask.name, ok=False, reason="provider left"))
        self.submitted.append((subtask.name, future))
        return future


@pytest.fixture(scope="module")
def local() -> Iterator[LocalExecutor]:
    with LocalExecutor(3) as ex:
        yield ex


def upper(i: int, name: str | None = None) -> Subtask:
    return Subtask(i, name or f"s{i}", ("in.txt", "out.txt"), (("in.txt", b"number %d" % i),), ("out.txt",))


def sleeper(i: int, ms: int) -> Subtask:
    return Subtask(i, f"s{i}", (str(ms), f"slept {ms}"), (), ("out.txt",))


def test_results_come_in_index_order(local: LocalExecutor, wat_program: WatProgram) -> None:
    finished: list[int] = []
    subtasks = [sleeper(0, 1500), sleeper(1, 0), sleeper(2, 700)]
    results = list(
        execution.run(local, wat_program("sleep"), subtasks, T(), on_result=lambda r, _: finished.append(r.index))
    )
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.outputs[0][1] for r in results] == [b"slept 1500", b"slept 0", b"slept 700"]
    assert finished[0] == 1 and finished[-1] == 0  # on_result follows completion order


def test_results_stream_while_work_continues(local: LocalExecutor, wat_program: WatProgram) -> None:
    finished: list[int] = []
    run = execution.run(local, wat_program("sleep"), [sleeper(0, 0), sleeper(1, 1500)], T(), on_result=lambda r, _: finished.append(r.index))
    first = next(run)
    assert first.index == 0 and finished == [0]  # subtask 1 is still running
    assert [r.index for r in run] == [1]


def test_a_provider_gets_its_next_attempt_before_the_caller_gets_the_result(wat_program: WatProgram) -> None:
    # One worker: while the caller holds result 0 (as gflite writes its audio),
    # subtask 1 is already running; it was not left waiting for the caller.
    with LocalExecutor(1) as one:
        counting = Counting(one)
        run = execution.run(counting, wat_program("upper"), [upper(i) for i in range(3)], T())
        first = next(run)
        assert first.index == 0
        assert [name for name, _ in counting.submitted] == ["s0", "s1"]
        assert [r.index for r in run] == [1, 2]


def test_order_by_index_not_by_position(local: LocalExecutor, wat_program: WatProgram) -> None:
    results = list(execution.run(local, wat_program("upper"), [upper(5), upper(2), upper(9)], T()))
    assert [r.index for r in results] == [2, 5, 9]
    assert list(execution.run(local, wat_program("upper"), [], T())) == []


def test_failure_reports_every_subtask_after_the_others_finish(
    local: LocalExecutor, wat_program: WatProgram, tmp_path: Path
) -> None:
    cache = ResultCache(tmp_path)
    program = wat_program("sleep")
    bad = Subtask(1, "s1", ("0",), (), ("out.txt",))  # no TEXT argument: the guest exits 100
    subtasks = [sleeper(0, 0), bad, sleeper(2, 500)]
    counting = Counting(local)
    yielded = []
    with pytest.raises(ExecutionError) as info:
        for result in execution.run(counting, program, subtasks, T(retries=1), cache=cache):
            yielded.append(result.index)
    error = info.value
    assert error.exit_code == 5
    assert yielded == [0]
    assert [(r.name, r.ok) for r in error.outcomes] == [("s0", True), ("s1", False), ("s2", True)]
    assert error.outcomes[1].reason == "exit code 100 (after 2 attempts)"
    assert str(error) == "1 of 3 subtasks failed: s1 (exit code 100 (after 2 attempts))"
    assert counting.names().count("s1") == 2
    # Finished subtasks are cached, so a rerun resumes.
    assert cache.get(program, subtasks[0]) is not None and cache.get(program, subtasks[2]) is not None
    assert cache.get(program, bad) is None


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_are_bounded(local: LocalExecutor, wat_program: WatProgram, retries: int) -> None:
    # Elsewhere a failure may be the provider's: retried up to `retries` times, each
    # time on a provider that has not failed it.
    remote = Elsewhere(local)
    with pytest.raises(ExecutionError):
        list(execution.run(remote, wat_program("exit3"), [Subtask(0, "s0", (), (), ("out.txt",))], T(retries=retries)))
    assert len(remote.submitted) == retries + 1
    assert len(set(remote.on("s0"))) == retries + 1
    # On this machine the guest is deterministic: a guest error is retried once at most.
    counting = Counting(local)
    with pytest.raises(ExecutionError) as info:
        list(execution.run(counting, wat_program("exit3"), [Subtask(0, "s0", (), (), ("out.txt",))], T(retries=retries)))
    assert len(counting.submitted) == min(retries + 1, 2)
    assert info.value.outcomes[0].failure is Failure.GUEST


def test_a_deterministic_timeout_is_not_retried_on_this_machine(local: LocalExecutor, wat_program: WatProgram) -> None:
    counting = Counting(local)
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=1.0)
    with pytest.raises(ExecutionError) as info:
        list(execution.run(counting, wat_program("loop"), [Subtask(0, "s0", (), (), ("out.txt",))],
                           T(limits=limits, retries=2)))
    assert len(counting.submitted) == 1
    (outcome,) = info.value.outcomes
    assert outcome.failure is Failure.TIMEOUT and outcome.reason.startswith("timeout: ")


@pytest.mark.parametrize("raises", [False, True])
def test_a_lost_attempt_is_retried(local: LocalExecutor, wat_program: WatProgram, raises: bool) -> None:
    flaky = LosesFirstAttempt(local, raises=raises)
    results = list(execution.run(flaky, wat_program("upper"), [upper(0), upper(1)], T(retries=1)))
    assert [r.outputs for r in results] == [(("out.txt", b"NUMBER 0"),), (("out.txt", b"NUMBER 1"),)]
    assert sorted(flaky.names()) == ["s0", "s0", "s1", "s1"]
    with pytest.raises(ExecutionError, match="provider (left|went away)"):
        list(execution.run(LosesFirstAttempt(local, raises=raises), wat_program("upper"), [upper(0)], T(retries=0)))


def test_task_timeout(local: LocalExecutor, wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=60.0)
    looping = Subtask(1, "s1", (), (), ("out.txt",))
    started = time.monotonic()
    with pytest.raises(ExecutionError) as info:
        list(execution.run(local, wat_program("loop"), [looping], T(limits=limits, task_timeout=1.0)))
    assert time.monotonic() - started < 5
    assert str(info.value).startswith("task timeout of 1 s exceeded; 1 of 1 subtasks failed")
    assert info.value.outcomes[0].reason.startswith("task timeout of 1 s exceeded")


def test_second_run_executes_nothing(local: LocalExecutor, wat_program: WatProgram, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    program = wat_program("upper")
    subtasks = [upper(i) for i in range(4)]
    first = list(execution.run(local, program, subtasks, T(), cache=cache))
    counting = Counting(local)
    sources: list[bool] = []
    second = list(execution.run(counting, program, subtasks, T(), cache=cache, on_result=lambda r, c: sources.append(c)))
    assert counting.submitted == []
    assert sources == [True] * 4
    assert [r.outputs for r in second] == [r.outputs for r in first]


def test_closing_early_cancels_pending_work(local: LocalExecutor, wat_program: WatProgram) -> None:
    limits = Limits(memory_bytes=64 << 20, subtask_timeout=120.0)
    counting = Counting(local)
    run = execution.run(counting, wat_program("sleep"), [sleeper(0, 0), sleeper(1, 60000), sleeper(2, 60000)], T(limits=limits))
    assert next(run).index == 0
    started = time.monotonic()
    run.close()
    pending = [future for name, future in counting.submitted if name != "s0"]
    assert len(pending) == 2
    for future in pending:
        # Cancelled while running: the worker is killed and the attempt reports it.
        assert future.result(timeout=10).reason == "cancelled"
    assert time.monotonic() - started < 5


class Priced(Counting):
    """Local worker slots that ask a price per CPU-second (``prices``), and may bill a
    fixed number of CPU-seconds per result (``bills``), as a provider reports them."""

    def __init__(self, inner: Executor, prices: dict[str, float], bills: float | None = None) -> None:
        super().__init__(inner)
        self.prices = prices
        self.bills = bills

    def providers(self) -> tuple[Provider, ...]:
        return tuple(Provider(p.id, self.prices.get(p.id, 0.0)) for p in self.inner.providers())

    def submit(self, program: Program, subtask: Subtask, limits: Limits, provider: str | None = None):  # type: ignore[no-untyped-def]
        inner = super().submit(program, subtask, limits, provider)
        if self.bills is None:
            return inner
        outer: Future[SubtaskResult] = Future()
        inner.add_done_callback(lambda f: outer.set_result(replace(f.result(), seconds=self.bills)))
        return outer


class Elsewhere(Counting):
    """Local worker slots standing for providers on other machines, run by
    ``operators`` (provider -> operator; default: each its own), with ``caps``."""

    def __init__(self, inner: Executor, operators: dict[str, str] | None = None,
                 caps: dict[str, Limits] | None = None) -> None:
        super().__init__(inner)
        self.on_this_machine = False
        self.operators = operators or {}
        self.caps = caps or {}

    def providers(self) -> tuple[Provider, ...]:
        return tuple(replace(p, operator=self.operators.get(p.id, ""), caps=self.caps.get(p.id))
                     for p in self.inner.providers())


class Lying(Elsewhere):
    """Providers in ``liars`` append their tag to every output they return."""

    def __init__(self, inner: Executor, liars: dict[str, bytes], operators: dict[str, str] | None = None) -> None:
        super().__init__(inner, operators)
        self.liars = liars

    def submit(self, program: Program, subtask: Subtask, limits: Limits, provider: str | None = None):  # type: ignore[no-untyped-def]
        inner = super().submit(program, subtask, limits, provider)
        tag = self.liars.get(provider or "")
        if tag is None:
            return inner
        outer: Future[SubtaskResult] = Future()

        def lie(f: Future[SubtaskResult]) -> None:
            r = f.result()
            if r.ok:
                r = replace(r, outputs=tuple((rel, data + tag) for rel, data in r.outputs), digest="")
            if not outer.cancelled():
                outer.set_result(r)

        outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
        inner.add_done_callback(lie)
        return outer


def outputs(results) -> list:  # type: ignore[no-untyped-def]
    return [r.outputs for r in results]


HONEST = [(("out.txt", b"NUMBER %d" % i),) for i in range(6)]


def test_work_goes_to_free_providers_one_attempt_each(local: LocalExecutor, wat_program: WatProgram) -> None:
    counting = Counting(local)
    results = list(execution.run(counting, wat_program("sleep"), [sleeper(i, 300) for i in range(6)], T()))
    assert [r.outputs[0][1] for r in results] == [b"slept 300"] * 6
    assert counting.most == 1  # never queued behind another attempt on a provider
    assert {p for _, p in counting.placed} == {"local-0", "local-1", "local-2"}


def test_redundancy_runs_each_subtask_on_k_distinct_providers_same_output(
    local: LocalExecutor, wat_program: WatProgram
) -> None:
    counting = Counting(local)
    report = execution.TaskReport()
    results = list(execution.run(counting, wat_program("upper"), [upper(i) for i in range(6)], T(redundancy=2), report=report))
    assert outputs(results) == HONEST
    for i in range(6):
        placed = counting.on(f"s{i}")
        assert len(placed) == 2 and len(set(placed)) == 2
    # A verified result names the providers and operators that agreed on it.
    for i, r in enumerate(results):
        assert set(r.provenance.providers) == set(counting.on(f"s{i}"))
        assert len(r.provenance.operators) == 2 and r.provenance.local
    assert report.verified == 6 and report.disagreements == [] and report.rejected == {}
    assert report.lines()[0] == "verified 6 subtasks on 2 operators each; 0 with disagreeing results"
    with pytest.raises(MarketError, match="redundancy 4 needs 4 distinct operators"):
        list(execution.run(counting, wat_program("upper"), [upper(0)], T(redundancy=4)))


def test_a_liar_is_outvoted_excluded_named_and_unpaid(local: LocalExecutor, wat_program: WatProgram) -> None:
    prices = {"local-0": 0.01, "local-1": 0.02, "local-2": 0.03}
    liar = Lying(Priced(local, prices), {"local-0": b"[lie]"})
    liar.providers = liar.inner.providers  # type: ignore[method-assign]
    report = execution.TaskReport()
    placed_before_exclusion: list[int] = []

    def on_result(result: SubtaskResult, cached: bool) -> None:
        if report.rejected and not placed_before_exclusion:
            placed_before_exclusion.append(len(liar.placed))

    results = list(execution.run(liar, wat_program("upper"), [upper(i) for i in range(6)], T(redundancy=2), report=report, on_result=on_result))
    assert outputs(results) == HONEST
    assert list(report.rejected) == ["local-0"]
    assert "rejected local-0" in report.rejected["local-0"]
    assert len(report.disagreements) >= 1
    # Excluded once it lost: nothing more was sent to it.
    (mark,) = placed_before_exclusion
    assert [p for _, p in liar.placed[mark:] if p == "local-0"] == []
    assert [p for _, p in liar.placed[:mark] if p == "local-0"]  # it did get work first (cheapest)
    bill = {c.provider: c for c in report.bill.providers}
    assert bill["local-0"].rejected and bill["local-0"].cost == 0.0
    assert report.bill.total == pytest.approx(
        sum(c.price * c.seconds for c in bill.values() if not c.rejected))
    assert any(line.startswith("excluded local-0: subtask ") for line in report.lines())
    assert report.lines()[-1].startswith("total: ")


def test_disagreement_past_the_bound_is_a_verification_error(
    local: LocalExecutor, wat_program: WatProgram
) -> None:
    # Three providers, three different answers: no two agree within 3 replicas.
    liars = Lying(local, {"local-0": b"[A]", "local-1": b"[B]"})
    with pytest.raises(VerificationError) as info:
        list(execution.run(liars, wat_program("upper"), [upper(0)], T(redundancy=2, max_replicas=3)))
    assert info.value.exit_code == 6
    message = str(info.value)
    assert message.startswith("1 of 1 subtasks could not be verified: subtask 0 (s0): providers disagreed, "
                              "no majority of 2 within 3 replicas: ")
    assert all(p in message for p in ("local-0", "local-1", "local-2")) and "\n" not in message
    # Two providers that disagree, and nobody left to break the tie.
    with LocalExecutor(2) as two:
        with pytest.raises(VerificationError, match="no provider that has not run it is left"):
            list(execution.run(Lying(two, {"local-1": b"[B]"}), wat_program("upper"), [upper(0)], T(redundancy=2)))


def test_a_lost_replica_is_replaced_on_another_provider(local: LocalExecutor, wat_program: WatProgram) -> None:
    flaky = LosesFirstAttempt(local)
    results = list(execution.run(flaky, wat_program("upper"), [upper(0), upper(1)], T(redundancy=2)))
    assert outputs(results) == HONEST[:2]
    assert sorted(flaky.names()) == ["s0", "s0", "s0", "s1", "s1", "s1"]


def test_bid_admits_only_providers_at_or_under_it_cheapest_first(
    local: LocalExecutor, wat_program: WatProgram
) -> None:
    priced = Priced(local, {"local-0": 0.5, "local-1": 0.1, "local-2": 0.2})
    report = execution.TaskReport()
    results = list(execution.run(priced, wat_program("upper"), [upper(0)], T(market=Market(bid=0.2)), report=report))
    assert outputs(results) == HONEST[:1]
    assert priced.placed == [("s0", "local-1")]  # the cheapest
    list(execution.run(priced, wat_program("sleep"), [sleeper(i, 200) for i in range(4)], T(market=Market(bid=0.2))))
    assert {p for _, p in priced.placed} == {"local-1", "local-2"}  # never over the bid
    with pytest.raises(MarketError, match="only 1 of 3 providers at or under the bid 0.1/CPU-s"):
        list(execution.run(priced, wat_program("upper"), [upper(0)], T(market=Market(bid=0.1), redundancy=2)))
    assert len(priced.placed) == 5  # refused before anything ran


def test_budget_caps_the_task_and_the_bill_adds_up(local: LocalExecutor, wat_program: WatProgram) -> None:
    # Each result bills 1 CPU-second at price 1: two results fit in 2.5, a third
    # (estimated at 1.5 from what was learned) does not.
    priced = Priced(local, {p.id: 1.0 for p in local.providers()}, bills=1.0)
    report = execution.TaskReport()
    got = []
    with pytest.raises(MarketError) as info:
        for r in execution.run(priced, wat_program("upper"), [upper(i) for i in range(4)], T(market=Market(budget=2.5), first_estimate=1.0), report=report):
            got.append(r.index)
    assert info.value.exit_code == 7
    assert "budget 2.5 would be exceeded: 2 spent" in str(info.value)
    assert got == [0, 1] and len(priced.placed) == 2
    assert report.bill.total == pytest.approx(2.0)
    assert report.lines()[-1] == "total: 2 of budget 2.5"
    # A first attempt that cannot fit is refused before anything runs.
    with pytest.raises(MarketError, match="budget 0.5 would be exceeded"):
        list(execution.run(priced, wat_program("upper"), [upper(0)], T(market=Market(budget=0.5), first_estimate=1.0)))
    assert len(priced.placed) == 2


def test_cached_results_count_only_if_as_many_providers_agreed(
    local: LocalExecutor, wat_program: WatProgram, tmp_path: Path
) -> None:
    cache = ResultCache(tmp_path)
    program = wat_program("upper")
    subtasks = [upper(i) for i in range(3)]
    assert outputs(execution.run(local, program, subtasks, T(), cache=cache)) == HONEST[:3]
    counting = Counting(local)
    assert outputs(execution.run(counting, program, subtasks, T(redundancy=2), cache=cache)) == HONEST[:3]
    assert len(counting.placed) == 6  # one provider's word was not enough
    again = Counting(local)
    for k in (2, 1):
        assert outputs(execution.run(again, program, subtasks, T(redundancy=k), cache=cache)) == HONEST[:3]
    assert again.placed == []


class TwoReplicas(execution.SubtaskState):
    """Redundancy 2 through the ``make_state`` hook: one replica on each of two
    providers; final once both agree on the output digest."""

    def wants(self) -> bool:
        return len(self.attempts) + self.in_flight < 2

    def plan(self, candidates):  # type: ignore[no-untyped-def]
        used = {r.provider for r in self.attempts}
        return [p for p in candidates if p not in used][: 2 - len(self.attempts) - self.in_flight]

    def record(self, result: SubtaskResult) -> None:
        self.attempts.append(result)
        if len(self.attempts) == 2:
            a, b = self.attempts
            agree = a.ok and b.ok and a.digest == b.digest
            self.final = a if agree else SubtaskResult(a.index, a.name, ok=False, reason="replicas disagree")


def test_per_subtask_state_is_replaceable(local: LocalExecutor, wat_program: WatProgram) -> None:
    counting = Counting(local)
    results = list(
        execution.run(counting, wat_program("upper"), [upper(0), upper(1)], T(), make_state=lambda st: TwoReplicas(st, max_attempts=2))
    )
    assert outputs(results) == HONEST[:2]
    assert sorted(counting.on("s0")) == ["local-0", "local-1"]
    assert len(counting.placed) == 4


def test_results_report_cpu_seconds_not_wall_time(local: LocalExecutor, wat_program: WatProgram) -> None:
    # A guest that sleeps a second uses next to no CPU: that is what a provider bills.
    started = time.monotonic()
    (result,) = execution.run(local, wat_program("sleep"), [sleeper(0, 1000)], T())
    assert time.monotonic() - started >= 1.0
    assert 0.0 < result.seconds < 0.3


class Vanishing(Counting):
    """All providers disappear while ``gone`` is set (a cluster whose workers restart)."""

    def __init__(self, inner: Executor, rejoin_grace: float) -> None:
        super().__init__(inner)
        self.rejoin_grace = rejoin_grace
        self.gone = False

    def providers(self) -> tuple[Provider, ...]:
        return () if self.gone else self.inner.providers()


@pytest.mark.parametrize("back_after", [0.5, None])
def test_work_waits_a_grace_for_providers_to_come_back(
    local: LocalExecutor, wat_program: WatProgram, back_after: float | None
) -> None:
    import threading

    executor = Vanishing(local, rejoin_grace=3.0)

    first = [True]

    def vanish(result: SubtaskResult, cached: bool) -> None:
        # On the first result, whichever it is: with 2 slots, at least 3 subtasks are still unstarted.
        if first[0]:
            first[0] = False
            executor.gone = True
            if back_after is not None:
                threading.Timer(back_after, lambda: setattr(executor, "gone", False)).start()

    started = time.monotonic()
    run = execution.run(executor, wat_program("upper"), [upper(i) for i in range(5)], T(), on_result=vanish)
    if back_after is not None:
        assert outputs(run) == HONEST[:5]
        assert time.monotonic() - started < 3.0
    else:
        with pytest.raises(ExecutionError, match="no provider at or under the bid is left"):
            list(run)
        assert 3.0 <= time.monotonic() - started < 6.0


# --- Sybil-proof redundancy, audits, the cache's trust, fair bills -------------------


@pytest.fixture(scope="module")
def four() -> Iterator[LocalExecutor]:
    with LocalExecutor(4) as ex:
        yield ex


def test_two_workers_of_one_operator_cannot_outvote_two_honest_ones(
    four: LocalExecutor, wat_program: WatProgram
) -> None:
    # Mallory runs two cheap workers that return the same forgery; alice and bob
    # are honest and dearer. Cheapest-first would send both replicas to Mallory.
    prices = {"local-0": 0.001, "local-1": 0.001, "local-2": 0.5, "local-3": 0.5}
    operators = {"local-0": "mallory", "local-1": "mallory", "local-2": "alice", "local-3": "bob"}
    sybil = Lying(Priced(four, prices), {"local-0": b"[forged]", "local-1": b"[forged]"}, operators)
    sybil.inner.providers = lambda: tuple(  # type: ignore[method-assign]
        replace(p, operator=operators[p.id]) for p in Priced(four, prices).providers())
    report = execution.TaskReport()
    results = list(execution.run(sybil, wat_program("upper"), [upper(i) for i in range(4)], T(redundancy=2),
                                 report=report))
    assert outputs(results) == HONEST[:4]
    for i, r in enumerate(results):
        # Never two replicas of one subtask on one operator.
        assert len({operators[p] for p in sybil.on(f"s{i}")}) == len(sybil.on(f"s{i}"))
        assert "mallory" not in r.provenance.operators and len(r.provenance.operators) == 2
    # Caught once, Mallory loses every worker it runs.
    assert set(report.rejected) == {"local-0", "local-1"}


def test_audit_reruns_accepted_results_here_and_excludes_a_forger(
    local: LocalExecutor, wat_program: WatProgram
) -> None:
    liar = Lying(local, {"local-0": b"[lie]", "local-1": b"[lie]", "local-2": b"[lie]"})
    report = execution.TaskReport()
    with LocalExecutor(1) as auditor:
        results = list(execution.run(liar, wat_program("upper"), [upper(i) for i in range(3)],
                                     T(audit=1.0), auditor=auditor, report=report))
    # Every result was audited, so none of the forgeries is handed out.
    assert outputs(results) == HONEST[:3]
    assert all(r.provenance.local for r in results)
    assert report.audited >= 1 and report.caught >= 1
    assert report.rejected and all(v.startswith("audit of subtask ") for v in report.rejected.values())
    # An honest provider passes its audits and keeps its work.
    honest = Elsewhere(local)
    report = execution.TaskReport()
    with LocalExecutor(1) as auditor:
        results = list(execution.run(honest, wat_program("upper"), [upper(i) for i in range(3)],
                                     T(audit=1.0), auditor=auditor, report=report))
    assert outputs(results) == HONEST[:3] and report.audited == 3 and report.caught == 0
    assert report.rejected == {}


def test_audit_fraction_is_a_reproducible_sample(local: LocalExecutor, wat_program: WatProgram) -> None:
    def audited(seed: int) -> int:
        report = execution.TaskReport()
        with LocalExecutor(1) as auditor:
            list(execution.run(Elsewhere(local), wat_program("upper"), [upper(i) for i in range(12)],
                               T(audit=0.5, seed=seed), auditor=auditor, report=report))
        return report.audited

    n = audited(7)
    assert 0 < n < 12 and audited(7) == n


def test_a_local_run_does_not_replay_one_liars_unverified_answer(
    local: LocalExecutor, wat_program: WatProgram, tmp_path: Path
) -> None:
    cache = ResultCache(tmp_path)
    program = wat_program("upper")
    subtasks = [upper(i) for i in range(3)]
    liar = Lying(local, {p.id: b"[lie]" for p in local.providers()})
    forged = outputs(execution.run(liar, program, subtasks, T(), cache=cache))
    assert forged != HONEST[:3]
    # The local run synthesises afresh and gets the honest output, then replays its own.
    counting = Counting(local)
    assert outputs(execution.run(counting, program, subtasks, T(), cache=cache)) == HONEST[:3]
    assert len(counting.placed) == 3
    again = Counting(local)
    assert outputs(execution.run(again, program, subtasks, T(), cache=cache)) == HONEST[:3]
    assert again.placed == []


def test_a_result_two_operators_agreed_on_is_replayed_by_a_local_run(
    local: LocalExecutor, wat_program: WatProgram, tmp_path: Path
) -> None:
    cache = ResultCache(tmp_path)
    program = wat_program("upper")
    cluster = Elsewhere(local, {"local-0": "alice", "local-1": "bob", "local-2": "carol"})
    assert outputs(execution.run(cluster, program, [upper(0)], T(redundancy=2), cache=cache)) == HONEST[:1]
    counting = Counting(local)
    (hit,) = execution.run(counting, program, [upper(0)], T(), cache=cache)
    assert counting.placed == [] and len(hit.provenance.operators) == 2 and not hit.provenance.local


def test_every_agreeing_replica_is_paid_the_smallest_claim(local: LocalExecutor, wat_program: WatProgram) -> None:
    # local-0 bills 25.6 CPU-s for work its peers did in a few milliseconds.
    class Overbilling(Priced):
        def submit(self, program, subtask, limits, provider=None):  # type: ignore[no-untyped-def]
            inner = super().submit(program, subtask, limits, provider)
            if provider != "local-0":
                return inner
            outer: Future[SubtaskResult] = Future()
            inner.add_done_callback(lambda f: outer.set_result(replace(f.result(), seconds=25.6)))
            return outer

    prices = {"local-0": 1.0, "local-1": 1.0, "local-2": 1.0}
    ex = Overbilling(local, prices)
    report = execution.TaskReport()
    results = list(execution.run(ex, wat_program("upper"), [upper(i) for i in range(3)], T(redundancy=3),
                                 report=report))
    assert outputs(results) == HONEST[:3]
    bill = {c.provider: c for c in report.bill.providers}
    assert bill["local-0"].results == 3
    honest_max = max(bill["local-1"].seconds, bill["local-2"].seconds)
    assert bill["local-0"].seconds <= honest_max < 1.0  # not 3 x 25.6
    assert report.bill.total < 3.0


def test_a_claim_is_capped_at_the_subtask_timeout(local: LocalExecutor, wat_program: WatProgram) -> None:
    priced = Priced(local, {p.id: 2.0 for p in local.providers()}, bills=1e6)
    report = execution.TaskReport()
    list(execution.run(priced, wat_program("upper"), [upper(0)], T(), report=report))
    assert report.bill.total == pytest.approx(2.0 * LIMITS.subtask_timeout)


def test_work_goes_only_where_the_providers_own_caps_fit(local: LocalExecutor, wat_program: WatProgram) -> None:
    small = Limits(memory_bytes=16 << 20, subtask_timeout=20.0, output_bytes=1 << 20)
    capped = Elsewhere(local, caps={"local-0": small, "local-1": small})
    results = list(execution.run(capped, wat_program("upper"), [upper(i) for i in range(4)], T()))
    assert outputs(results) == HONEST[:4]
    assert {p for _, p in capped.placed} == {"local-2"}  # only it allows 64 MiB
    with pytest.raises(MarketError, match="caps fit the task's limits"):
        list(execution.run(capped, wat_program("upper"), [upper(0)], T(redundancy=2)))


def test_a_malformed_answer_excludes_its_provider_from_the_task(
    local: LocalExecutor, wat_program: WatProgram
) -> None:
    class Malformed(Elsewhere):
        def submit(self, program, subtask, limits, provider=None):  # type: ignore[no-untyped-def]
            if provider != "local-0":
                return super().submit(program, subtask, limits, provider)
            self.placed.append((subtask.name, provider))
            future: Future[SubtaskResult] = Future()
            future.set_result(SubtaskResult(subtask.index, subtask.name, ok=False, reason="answer over its cap",
                                            provider=provider, failure=Failure.MALFORMED))
            return future

    ex = Malformed(local)
    report = execution.TaskReport()
    results = list(execution.run(ex, wat_program("upper"), [upper(i) for i in range(6)], T(), report=report))
    assert outputs(results) == HONEST
    assert [p for _, p in ex.placed].count("local-0") == 1
    assert report.rejected == {"local-0": "malformed answer: answer over its cap"}
