"""The requestor's terms for one run, decided before any work starts, and the
report a run leaves besides its results."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from gflite.gwasm.market import Bill, Market
from gflite.gwasm.subtask import Failure, Limits


@dataclass(frozen=True)
class RunTerms:
    """How a task is run.

    ``limits``: what one guest may use (``subtask_timeout`` also caps a claim).
    ``retries``: extra attempts for a failed subtask (fewer for a deterministic
    guest on this machine: see :meth:`attempts_after`). ``redundancy`` K: each
    subtask runs on K distinct operators, and on more (up to ``max_replicas``,
    default 2K + 1) while they disagree. ``task_timeout``: seconds for the whole
    task. ``market``: bid and budget; ``first_estimate``: CPU-seconds the
    budget holds for an attempt before any has finished (default the subtask
    timeout). ``audit`` P: a fraction P of results accepted from other
    machines is run again in this machine's sandbox. ``seed``: makes the
    random choice of replicas and audits reproducible. ``use_cache``: replay
    and store results in the result cache.
    """

    limits: Limits = Limits()
    retries: int = 2
    redundancy: int = 1
    max_replicas: int | None = None
    task_timeout: float | None = None
    market: Market = Market()
    first_estimate: float | None = None
    audit: float = 0.0
    seed: int = 0
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.redundancy < 1:
            raise ValueError("redundancy must be >= 1")
        if not (0.0 <= self.audit <= 1.0) or math.isnan(self.audit):
            raise ValueError("audit must be a fraction from 0 to 1")

    def attempts_after(self, failure: Failure | None, *, local: bool) -> int:
        """How many attempts a subtask may have in all once one failed so.

        On this machine the guest is deterministic: a timeout, or input the
        sandbox refuses, would happen again, so it is not retried; a guest
        error is retried once (the cheap check that it was not this machine).
        Elsewhere any failure may be the provider's, so it is retried, on
        another provider, up to ``retries`` times."""
        if local:
            if failure in (Failure.TIMEOUT, Failure.BAD_INPUT):
                return 1
            if failure in (Failure.GUEST, Failure.LIMIT):
                return min(self.retries + 1, 2)
        return self.retries + 1


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
    audited: int = 0  # results run again in this machine's sandbox
    caught: int = 0  # of those, how many a provider had forged

    def name(self, provider: str) -> str:
        name = self.names.get(provider, provider)
        return provider if name == provider else f"{name} ({provider})"

    def lines(self) -> list[str]:
        """The summary: verification, audits, excluded providers, then the bill."""
        out = []
        if self.redundancy > 1:
            out.append(f"verified {self.verified} subtasks on {self.redundancy} operators each; "
                       f"{len(self.disagreements)} with disagreeing results")
        if self.audited:
            out.append(f"audited {self.audited} subtasks in this machine's sandbox; "
                       f"{self.caught} forged")
        for provider, verdict in sorted(self.rejected.items()):
            out.append(f"excluded {self.name(provider)}: {verdict}")
        if self.bill is not None:
            out += self.bill.lines(self.names)
        return out
