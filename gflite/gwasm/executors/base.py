"""The one complete interface every execution backend implements.

The engine (:mod:`gflite.gwasm.execution`) uses exactly what is declared here
and nothing else, so a new backend (a Golem network, Ray) is one new folder
under ``executors/`` that subclasses :class:`Executor`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass

from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult


@dataclass(frozen=True)
class Provider:
    """Somebody who runs subtasks: a local worker slot or a cluster worker.

    ``slots`` is how many attempts it runs at once; ``name`` is how reports
    show it (may come from the provider itself: escape before printing);
    ``operator`` is who answers for it (two providers of one operator are one
    vote): a certificate identity, a host, or the provider itself. ``caps``
    are the most it allows one subtask (memory, time, output, stdio), declared
    by the provider as it declares its price; None: whatever the requestor asks."""

    id: str
    price: float = 0.0  # per CPU-second, in the requestor's currency
    slots: int = 1
    name: str = ""
    operator: str = ""
    caps: Limits | None = None

    @property
    def display(self) -> str:
        return self.name or self.id

    @property
    def owner(self) -> str:
        return self.operator or self.id


class Executor(ABC):
    """Runs single subtask attempts. Retries, ordering, verification live above it.

    ``prefetch``: attempts the engine may queue on a provider beyond its slots
    (hides a network round trip). ``rejoin_grace``: seconds the engine waits
    for providers to (re)join before it gives up on work nobody can take.
    ``on_this_machine``: attempts run in this machine's own sandbox, so their
    results are the requestor's own, and a guest that failed or timed out
    would do so again on the same input (it is deterministic)."""

    prefetch: int = 0
    rejoin_grace: float = 0.0
    on_this_machine: bool = False

    @abstractmethod
    def providers(self) -> tuple[Provider, ...]:
        """The providers currently able to take work."""

    @abstractmethod
    def submit(
        self,
        program: Program,
        subtask: Subtask,
        limits: Limits,
        provider: str | None = None,
    ) -> Future[SubtaskResult]:
        """Run one attempt, on ``provider`` if given. The future never raises for a
        guest failure: it resolves to a SubtaskResult with ``ok=False`` and a reason."""

    def excluded(self) -> dict[str, str]:
        """Providers this executor stopped offering on its own (e.g. after an answer it
        refused as malformed), each with the reason; reports name them."""
        return {}

    @abstractmethod
    def close(self) -> None:
        """Release workers and connections. Idempotent."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
