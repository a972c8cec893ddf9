"""What the requestor decided about a subtask, as types: how an accepted result
was obtained (:class:`Provenance`), what a run asks of a result before it
replays one from the cache (:class:`Trust`), and the accepted result itself
(:class:`Accepted`, a :class:`SubtaskResult` that carries its provenance).

A provider's answer is a plain ``SubtaskResult`` and claims nothing about who
agreed with it: only the dispatcher makes an ``Accepted``, so nobody else's
data can say it was verified.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from gflite.gwasm.subtask import SubtaskResult

# Past this many operators a record says nothing more (and a cache entry that
# names more is not one of ours).
MAX_OPERATORS = 64
MAX_NAME = 512


@dataclass(frozen=True)
class Provenance:
    """How a result was obtained: by this machine's sandbox (``local``), and/or
    by the distinct ``operators`` that agreed on it (sorted; one for an
    unverified answer). ``providers`` names the processes that ran it."""

    local: bool
    operators: tuple[str, ...]
    providers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "operators", tuple(sorted(set(self.operators))))
        object.__setattr__(self, "providers", tuple(sorted(set(self.providers))))
        if len(self.operators) > MAX_OPERATORS or len(self.providers) > MAX_OPERATORS:
            raise ValueError("too many operators in a provenance record")
        if any(not isinstance(x, str) or len(x) > MAX_NAME for x in self.operators + self.providers):
            raise ValueError("bad operator or provider name in a provenance record")

    def meets(self, trust: Trust) -> bool:
        """True if a run asking for ``trust`` may replay a result obtained so."""
        return (trust.local_ok and self.local) or len(self.operators) >= trust.operators

    def describe(self) -> str:
        where = "this machine's sandbox" if self.local else ""
        ops = f"{len(self.operators)} agreeing operators ({', '.join(self.operators)})" \
            if len(self.operators) > 1 else ""
        return " and ".join(p for p in (where, ops) if p) or \
            f"one unverified operator ({', '.join(self.operators) or 'unknown'})"


@dataclass(frozen=True)
class Trust:
    """What a run asks of a cached result: at least ``operators`` distinct
    operators agreed on it, or (if ``local_ok``) this machine's sandbox made it."""

    operators: int
    local_ok: bool

    @classmethod
    def for_run(cls, *, redundancy: int, local: bool) -> Trust:
        """A local run replays local entries or entries at least 2 operators
        agreed on; a run at redundancy K entries K operators agreed on (a
        redundancy-1 run elsewhere takes any entry: it trusts one operator anyway)."""
        if redundancy > 1:
            return cls(redundancy, local_ok=False)
        if local:
            return cls(2, local_ok=True)
        return cls(1, local_ok=True)


@dataclass(frozen=True)
class Accepted(SubtaskResult):
    """A successful result the requestor accepted, with how it was obtained."""

    provenance: Provenance = Provenance(local=False, operators=())

    @classmethod
    def of(cls, result: SubtaskResult, provenance: Provenance) -> Accepted:
        if not result.ok:
            raise ValueError("only a successful result can be accepted")
        values = {f.name: getattr(result, f.name) for f in fields(SubtaskResult)}
        return cls(**values, provenance=provenance)
