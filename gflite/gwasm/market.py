"""Prices, the requestor's bid and budget: who gets work and what it costs.

Each provider declares a price per CPU-second (a cluster worker through its
``GFLITE_PRICE``; local worker slots are free) and may declare its own caps
(memory, subtask time, output size): work goes only where the requestor's
limits fit them. The requestor's *bid* is the most it pays per CPU-second:
only providers at or under it get work, cheapest first, ties broken by
provider id. An attempt's *claim* is the CPU-seconds its result reports,
capped at the subtask timeout; it costs ``price * claim``. Only results are
paid: failed attempts deliver nothing, providers whose result lost a vote
(see ``verify``) are refused payment, and every replica that agreed on a
verified result is paid the smallest claim among them, as BOINC grants the
smaller claimed credit (so an inflated claim earns nothing extra).

The *budget* caps the cost of the whole task. It is enforced when an attempt
is about to start: the paid total so far, plus what running attempts are
expected to cost, plus what this one is expected to cost must fit. The
expected CPU-seconds of an attempt are, before anything has finished, the
caller's ``first_estimate`` (pass the subtask timeout for a hard worst case),
and afterwards ``MARGIN`` times the largest CPU-seconds per byte of input
seen so far, times this subtask's input size. The task can therefore only end
above its budget by as much as running attempts overrun their estimates.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from gflite.errors import MarketError
from gflite.gwasm.executors.base import Provider
from gflite.gwasm.subtask import Limits, Subtask, SubtaskResult

MARGIN = 1.5


def _amount(label: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MarketError(f"{label} must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise MarketError(f"{label} must be a non-negative number, not {value!r}")
    return float(value)


def _money(x: float) -> str:
    return f"{x:.6g}"


@dataclass(frozen=True)
class Market:
    """The requestor's terms: ``bid`` per CPU-second and ``budget`` per task (None: no limit)."""

    bid: float | None = None
    budget: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bid", _amount("the bid", self.bid))
        object.__setattr__(self, "budget", _amount("the budget", self.budget))

    def eligible(
        self, providers: Iterable[Provider], exclude: Collection[str] = (),
        limits: Limits | None = None,
    ) -> tuple[Provider, ...]:
        """Providers at or under the bid, not excluded, and (given ``limits``) whose
        own caps fit them; cheapest first, then by id."""
        found = [p for p in providers
                 if p.id not in exclude and (self.bid is None or p.price <= self.bid)
                 and (limits is None or fits(limits, p))]
        return tuple(sorted(found, key=lambda p: (p.price, p.id)))

    def check(self, providers: Iterable[Provider], redundancy: int = 1,
              limits: Limits | None = None) -> tuple[Provider, ...]:
        """:meth:`eligible`, or MarketError if they belong to fewer than
        ``redundancy`` distinct operators: run this before any work starts."""
        everyone = list(providers)
        chosen = self.eligible(everyone, limits=limits)
        operators = len({p.owner for p in chosen})
        if operators < redundancy or not chosen:
            where = "" if self.bid is None else f" at or under the bid {_money(self.bid)}/CPU-s"
            fit = "" if limits is None or len(chosen) == len(self.eligible(everyone)) \
                else " whose caps fit the task's limits"
            raise MarketError(
                f"only {len(chosen)} of {len(everyone)} providers{where}{fit}, run by "
                f"{operators} operators; redundancy {redundancy} needs {redundancy} distinct operators")
        return chosen


def fits(limits: Limits, provider: Provider) -> bool:
    """True if the requestor's ``limits`` are within what ``provider`` declares it allows."""
    caps = provider.caps
    if caps is None:
        return True
    return (limits.memory_bytes <= caps.memory_bytes
            and limits.subtask_timeout <= caps.subtask_timeout
            and limits.output_bytes <= caps.output_bytes
            and limits.stdio_bytes <= caps.stdio_bytes)


@dataclass(frozen=True)
class Reservation:
    """Budget held for one running attempt until :meth:`Ledger.settle`."""

    id: int
    provider: str
    price: float
    amount: float
    size: int  # the subtask's input size, to learn CPU-seconds per byte from the result


@dataclass(frozen=True)
class ProviderCost:
    """One provider's line of the bill."""

    provider: str
    price: float
    attempts: int  # settled attempts, failed ones included
    results: int  # attempts that delivered a result
    seconds: float  # CPU-seconds of those results
    cost: float  # what the provider is paid (0 if rejected)
    rejected: bool  # lost a vote: excluded and not paid


@dataclass(frozen=True)
class Bill:
    """What a run cost: per provider, in total, against the bid."""
    providers: tuple[ProviderCost, ...]
    total: float
    bid: float | None
    budget: float | None

    def lines(self, names: Mapping[str, str] | None = None) -> list[str]:
        """Human-readable summary, one line per provider and a total; ``names`` gives
        providers a display name (e.g. a Dask worker's ``--name``) beside their id."""
        out = []
        for c in self.providers:
            name = (names or {}).get(c.provider, c.provider)
            who = c.provider if name == c.provider else f"{name} ({c.provider})"
            note = "  rejected (lost a vote), not paid" if c.rejected else ""
            out.append(f"{who}: {c.results}/{c.attempts} results, "
                       f"{c.seconds:.3f} CPU-s x {_money(c.price)} = {_money(c.cost)}{note}")
        limit = "" if self.budget is None else f" of budget {_money(self.budget)}"
        out.append(f"total: {_money(self.total)}{limit}")
        return out


class Ledger:
    """The money side of one task: reserve before each attempt, settle after it.

    Not thread-safe; the one loop that launches and collects attempts owns it.
    """

    def __init__(self, market: Market, providers: Iterable[Provider], *,
                 first_estimate: float, max_claim: float | None = None) -> None:
        estimate = _amount("first_estimate", first_estimate)
        assert estimate is not None
        self.market = market
        # No attempt may claim more CPU-seconds than its subtask timeout.
        self.max_claim = _amount("max_claim", max_claim)
        self._claims: dict[tuple[int, str], float] = {}  # (subtask index, provider) -> claim
        self.first_estimate = estimate
        self._prices = {p.id: p.price for p in providers}
        self._ids = itertools.count()
        self._held: dict[int, Reservation] = {}
        self._rate = 0.0  # largest CPU-seconds per input byte seen
        self._seen = False
        self._attempts: dict[str, int] = {}
        self._results: dict[str, int] = {}
        self._seconds: dict[str, float] = {}
        self._costs: dict[str, float] = {}
        self._rejected: set[str] = set()

    @staticmethod
    def _size(subtask: Subtask) -> int:
        return 1 + sum(len(data) for _, data in subtask.inputs) + sum(map(len, subtask.args))

    def add_providers(self, providers: Iterable[Provider]) -> None:
        """Learn the prices of providers that joined after the task started."""
        for p in providers:
            self._prices.setdefault(p.id, p.price)

    def price(self, provider: str) -> float:
        try:
            return self._prices[provider]
        except KeyError:
            raise MarketError(f"no price known for provider {provider}") from None

    def estimate(self, subtask: Subtask) -> float:
        """Expected CPU-seconds of one attempt of ``subtask``."""
        if not self._seen:
            return self.first_estimate
        return MARGIN * self._rate * self._size(subtask)

    @property
    def paid(self) -> float:
        """What finished results cost, rejected providers excluded."""
        return sum(c for p, c in self._costs.items() if p not in self._rejected)

    @property
    def held(self) -> float:
        """What running attempts are expected to cost."""
        return sum(r.amount for r in self._held.values())

    def reserve(self, provider: str, subtask: Subtask) -> Reservation | None:
        """Hold the expected cost of an attempt on ``provider``.

        None if it does not fit now but may once running attempts settle; raises
        MarketError if the bid excludes the provider or nothing is running and it
        still does not fit (the budget is spent).
        """
        price = self.price(provider)
        if self.market.bid is not None and price > self.market.bid:
            raise MarketError(f"provider {provider} asks {_money(price)}/CPU-s, "
                              f"over the bid {_money(self.market.bid)}")
        amount = price * self.estimate(subtask)
        budget = self.market.budget
        if budget is not None and self.paid + self.held + amount > budget:
            if self._held:
                return None
            raise MarketError(
                f"budget {_money(budget)} would be exceeded: {_money(self.paid)} spent, next "
                f"attempt on {provider} estimated at {self.estimate(subtask):.3g} CPU-s x "
                f"{_money(price)} = {_money(amount)}")
        r = Reservation(next(self._ids), provider, price, amount, self._size(subtask))
        self._held[r.id] = r
        return r

    def settle(self, reservation: Reservation, result: SubtaskResult) -> float:
        """Release the reservation, charge the attempt and learn from its CPU-seconds;
        returns its cost."""
        if self._held.pop(reservation.id, None) is None:
            raise ValueError(f"reservation {reservation.id} is not held")
        p = reservation.provider
        if result.provider != p:
            raise ValueError(f"result from {result.provider} settled against {p}")
        self._attempts[p] = self._attempts.get(p, 0) + 1
        if not result.ok:
            return 0.0
        seconds = self.claim(result)
        cost = reservation.price * seconds
        self._claims[(result.index, p)] = seconds
        self._results[p] = self._results.get(p, 0) + 1
        self._seconds[p] = self._seconds.get(p, 0.0) + seconds
        self._costs[p] = self._costs.get(p, 0.0) + cost
        self._rate = max(self._rate, seconds / reservation.size)
        self._seen = True
        return cost

    def claim(self, result: SubtaskResult) -> float:
        """The CPU-seconds ``result`` may bill: what it reports, capped at the subtask timeout."""
        seconds = max(0.0, result.seconds) if math.isfinite(result.seconds) else 0.0
        return seconds if self.max_claim is None else min(seconds, self.max_claim)

    def agree(self, index: int, providers: Iterable[str]) -> None:
        """``providers`` agreed on subtask ``index``: each is paid the smallest
        claim among them, not its own."""
        claims = {p: self._claims[(index, p)] for p in providers if (index, p) in self._claims}
        if not claims:
            return
        least = min(claims.values())
        for p in claims:
            self._claims[(index, p)] = least
        for p in claims:  # summed afresh: no rounding left over from the larger claims
            self._seconds[p] = math.fsum(c for (_, q), c in self._claims.items() if q == p)
            self._costs[p] = self._prices.get(p, 0.0) * self._seconds[p]

    def release(self, reservation: Reservation) -> None:
        """Drop the hold of an attempt that was cancelled before it delivered anything."""
        self._held.pop(reservation.id, None)

    def reject(self, provider: str) -> None:
        """``provider`` lost a vote: none of its results are paid."""
        self._rejected.add(provider)

    def bill(self) -> Bill:
        lines = []
        for p in sorted(set(self._attempts) | self._rejected):
            rejected = p in self._rejected
            lines.append(ProviderCost(
                provider=p,
                price=self._prices.get(p, 0.0),
                attempts=self._attempts.get(p, 0),
                results=self._results.get(p, 0),
                seconds=self._seconds.get(p, 0.0),
                cost=0.0 if rejected else self._costs.get(p, 0.0),
                rejected=rejected,
            ))
        return Bill(tuple(lines), self.paid, self.market.bid, self.market.budget)
