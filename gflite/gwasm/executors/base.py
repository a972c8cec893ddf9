"""The one small interface every execution backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass

from gflite.gwasm.subtask import Limits, Program, Subtask, SubtaskResult


@dataclass(frozen=True)
class Provider:
    """Somebody who runs subtasks: a local worker slot or a cluster worker."""

    id: str
    price: float = 0.0  # per CPU-second, in the requestor's currency


class Executor(ABC):
    """Runs single subtask attempts. Retries, ordering, verification live above it."""

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

    def close(self) -> None:
        """Release workers and connections."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
