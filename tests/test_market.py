from __future__ import annotations

import pytest

from gflite.errors import MarketError
from gflite.gwasm.executors.base import Provider
from gflite.gwasm.executors.local import LocalExecutor
from gflite.gwasm.market import MARGIN, Ledger, Market
from gflite.gwasm.subtask import Subtask, SubtaskResult

PROVIDERS = (
    Provider("tcp://h:4", 0.30),
    Provider("tcp://h:2", 0.10),
    Provider("tcp://h:3", 0.10),
    Provider("tcp://h:1", 0.50),
    Provider("tcp://h:5", 0.0),
)


def subtask(index: int = 0, size: int = 99) -> Subtask:
    return Subtask(index, f"s{index}", (), (("in.txt", b"x" * size),), ("out.txt",))


def result(provider: str, seconds: float, ok: bool = True, index: int = 0) -> SubtaskResult:
    return SubtaskResult(index, f"s{index}", ok=ok, outputs=(("out.txt", b"A"),) if ok else (),
                         reason="" if ok else "provider left", provider=provider, seconds=seconds)


def ids(providers) -> list[str]:
    return [p.id for p in providers]


def test_bid_admits_providers_at_or_under_it_cheapest_first_ties_by_id() -> None:
    assert ids(Market(bid=0.10).eligible(PROVIDERS)) == ["tcp://h:5", "tcp://h:2", "tcp://h:3"]
    assert ids(Market().eligible(PROVIDERS)) == [
        "tcp://h:5", "tcp://h:2", "tcp://h:3", "tcp://h:4", "tcp://h:1"]
    assert ids(Market(bid=0.3).eligible(reversed(PROVIDERS), exclude={"tcp://h:2"})) == [
        "tcp://h:5", "tcp://h:3", "tcp://h:4"]
    assert Market(bid=0.0).eligible(PROVIDERS[:4]) == ()
    # Ties by id whatever order the providers come in.
    assert ids(Market(bid=0.1).eligible(reversed(PROVIDERS))) == ["tcp://h:5", "tcp://h:2",
                                                                 "tcp://h:3"]


def test_too_few_eligible_providers_for_the_redundancy_is_an_error_up_front() -> None:
    m = Market(bid=0.10)
    assert ids(m.check(PROVIDERS, redundancy=3)) == ["tcp://h:5", "tcp://h:2", "tcp://h:3"]
    with pytest.raises(MarketError) as err:
        m.check(PROVIDERS, redundancy=4)
    msg = str(err.value)
    assert "only 3 of 5 providers at or under the bid 0.1/CPU-s" in msg and "redundancy 4" in msg
    assert err.value.exit_code == 7
    with pytest.raises(MarketError):
        Market().check([], redundancy=1)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "cheap", True])
def test_bad_terms_are_market_errors(bad) -> None:
    with pytest.raises(MarketError):
        Market(bid=bad)
    with pytest.raises(MarketError):
        Market(budget=bad)


def test_cost_is_price_times_cpu_seconds_and_failed_attempts_are_free() -> None:
    ledger = Ledger(Market(), PROVIDERS, first_estimate=10.0)
    r1 = ledger.reserve("tcp://h:2", subtask())
    r2 = ledger.reserve("tcp://h:1", subtask())
    r3 = ledger.reserve("tcp://h:1", subtask())
    assert ledger.settle(r1, result("tcp://h:2", 2.0)) == pytest.approx(0.2)
    assert ledger.settle(r2, result("tcp://h:1", 3.0)) == pytest.approx(1.5)
    assert ledger.settle(r3, result("tcp://h:1", 9.0, ok=False)) == 0.0
    bill = ledger.bill()
    assert bill.total == pytest.approx(1.7)
    lines = {c.provider: c for c in bill.providers}
    assert lines["tcp://h:1"].attempts == 2 and lines["tcp://h:1"].results == 1
    assert lines["tcp://h:1"].cost == pytest.approx(1.5)
    assert lines["tcp://h:2"].seconds == pytest.approx(2.0)
    text = bill.lines()
    assert text[-1] == "total: 1.7"
    assert any(line.startswith("tcp://h:1: 1/2 results, 3.000 CPU-s x 0.5 = 1.5") for line in text)
    with pytest.raises(ValueError):
        ledger.settle(r1, result("tcp://h:2", 1.0))  # settled twice
    with pytest.raises(ValueError):
        ledger.settle(ledger.reserve("tcp://h:2", subtask()), result("tcp://h:3", 1.0))


def test_rejected_providers_are_not_paid() -> None:
    ledger = Ledger(Market(budget=100), PROVIDERS, first_estimate=1.0)
    ledger.settle(ledger.reserve("tcp://h:4", subtask()), result("tcp://h:4", 10.0))
    ledger.settle(ledger.reserve("tcp://h:2", subtask()), result("tcp://h:2", 10.0))
    assert ledger.paid == pytest.approx(4.0)
    ledger.reject("tcp://h:4")
    bill = ledger.bill()
    assert bill.total == pytest.approx(1.0)
    liar = next(c for c in bill.providers if c.provider == "tcp://h:4")
    assert liar.rejected and liar.cost == 0.0
    assert any("rejected (lost a vote), not paid" in line for line in bill.lines())


def test_budget_holds_estimates_of_running_attempts_and_stops_before_exceeding() -> None:
    ledger = Ledger(Market(bid=0.5, budget=1.0), PROVIDERS, first_estimate=4.0)
    st = subtask(size=99)  # input size 100 bytes counting the +1
    first = ledger.reserve("tcp://h:2", st)  # 0.1 x 4 s = 0.4 held
    second = ledger.reserve("tcp://h:3", st)  # 0.8 held
    assert first is not None and second is not None
    assert ledger.held == pytest.approx(0.8)
    assert ledger.reserve("tcp://h:4", st) is None  # 0.3 x 4 = 1.2 more: wait for the others
    ledger.settle(first, result("tcp://h:2", 1.0))  # 0.1 paid; now 0.01 s per byte learned
    assert ledger.estimate(st) == pytest.approx(MARGIN * 1.0)
    assert ledger.estimate(subtask(size=199)) == pytest.approx(MARGIN * 2.0)
    ledger.settle(second, result("tcp://h:3", 1.0))
    third = ledger.reserve("tcp://h:1", st)  # 0.2 paid + 0.5 x 1.5 = 0.95 <= 1
    assert third is not None
    assert ledger.reserve("tcp://h:1", st) is None
    ledger.settle(third, result("tcp://h:1", 1.5))  # 0.95 paid
    with pytest.raises(MarketError) as err:
        ledger.reserve("tcp://h:2", st)  # 0.95 + 0.1 x 1.5 > 1, nothing running
    assert "budget 1 would be exceeded" in str(err.value)
    assert ledger.bill().total <= 1.0
    free = ledger.reserve("tcp://h:5", st)  # price 0 still fits
    assert free is not None and free.amount == 0.0


def test_an_unaffordable_first_attempt_is_refused_before_any_work() -> None:
    ledger = Ledger(Market(budget=1.0), PROVIDERS, first_estimate=600.0)
    with pytest.raises(MarketError):
        ledger.reserve("tcp://h:2", subtask())  # 0.1 x 600 s worst case
    assert ledger.reserve("tcp://h:5", subtask()) is not None


def test_over_bid_and_unknown_providers_are_refused() -> None:
    ledger = Ledger(Market(bid=0.2), PROVIDERS, first_estimate=1.0)
    with pytest.raises(MarketError, match="over the bid"):
        ledger.reserve("tcp://h:1", subtask())
    with pytest.raises(MarketError, match="no price known"):
        ledger.reserve("tcp://new:1", subtask())
    ledger.add_providers([Provider("tcp://new:1", 0.2)])
    assert ledger.reserve("tcp://new:1", subtask()) is not None


def test_local_providers_are_free() -> None:
    with LocalExecutor(workers=2) as local:
        providers = local.providers()
    assert [p.price for p in providers] == [0.0, 0.0]
    market = Market(bid=0.0, budget=0.0)
    assert len(market.check(providers, redundancy=2)) == 2
    ledger = Ledger(market, providers, first_estimate=600.0)
    r = ledger.reserve(providers[0].id, subtask())
    ledger.settle(r, result(providers[0].id, 5.0))
    assert ledger.bill().total == 0.0


def test_a_cancelled_attempt_releases_its_hold_and_is_not_billed() -> None:
    ledger = Ledger(Market(budget=1.0), PROVIDERS, first_estimate=5.0)
    r = ledger.reserve("tcp://h:2", subtask())  # 0.5 held
    assert ledger.reserve("tcp://h:2", subtask()) is not None  # 1.0 held
    assert ledger.reserve("tcp://h:2", subtask()) is None
    ledger.release(r)
    assert ledger.held == pytest.approx(0.5)
    assert ledger.bill().providers == ()


def test_bill_lines_show_provider_names() -> None:
    ledger = Ledger(Market(), PROVIDERS, first_estimate=1.0)
    ledger.settle(ledger.reserve("tcp://h:2", subtask()), result("tcp://h:2", 2.0))
    lines = ledger.bill().lines({"tcp://h:2": "alice"})
    assert lines[0] == "alice (tcp://h:2): 1/1 results, 2.000 CPU-s x 0.1 = 0.2"
