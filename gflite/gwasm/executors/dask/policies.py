"""What each party of a gflite cluster may unpickle (see :mod:`.unpickle`).

Each entry is one an honest gflite run uses (an install, attempts queued behind
it, attempts after it), as logged by an instrumented run; anything else is
refused and logged as ``refused to unpickle ...`` in that process's log.
Nothing here may be called with arbitrary arguments: a call is allowed only
with arguments of the shape Dask itself sends.
"""
from __future__ import annotations

from collections.abc import Callable

from gflite.gwasm.executors.dask.unpickle import Policy

INSTALL = "gflite.gwasm.executors.dask.tasks:install"
ATTEMPT = "gflite.gwasm.executors.dask.tasks:attempt"
TASK = "dask._task_spec:Task"
ALIAS = "dask._task_spec:Alias"
SHUFFLE_PLUGIN = "distributed.shuffle._worker_plugin:ShuffleWorkerPlugin"
RECONSTRUCT = "dask._expr:Expr._reconstruct"
LLG_EXPR = "dask._expr:LLGExpr"


def _is_part(x: object) -> bool:
    if isinstance(x, str):
        return len(x) <= 1024
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_key(x: object) -> bool:
    """A Dask key: a string, a number, or a short tuple of them."""
    return _is_part(x) or isinstance(x, tuple) and len(x) <= 8 and all(map(_is_part, x))


def _keys(n: int) -> Callable[[tuple], bool]:
    return lambda args: len(args) == n and all(_is_key(a) for a in args)


def _llg_expr(args: tuple) -> bool:
    """``Expr._reconstruct(LLGExpr, dsk, token, cache)``: the only expression a
    client's ``submit`` sends; the graph inside is checked as it is unpickled."""
    from dask._expr import LLGExpr

    return (len(args) == 4 and args[0] is LLGExpr and isinstance(args[1], dict)
            and isinstance(args[2], str) and isinstance(args[3], dict) and not args[3])


# Providers: tasks naming the two entry points, and the scheduler's plugin
# without which a worker does not start.
PROVIDER = Policy(
    "provider",
    values=frozenset({INSTALL, ATTEMPT}),
    calls={ALIAS: _keys(2)},
    builds=frozenset({TASK, SHUFFLE_PLUGIN}),
)

# The requestor's scheduler: the client's graph, i.e. the same tasks inside one
# low-level-graph expression.
SCHEDULER = Policy(
    "scheduler",
    values=frozenset({INSTALL, ATTEMPT, LLG_EXPR}),
    calls={ALIAS: _keys(2), RECONSTRUCT: _llg_expr},
    builds=frozenset({TASK}),
)

# The requestor: an answer is bytes; Dask names the type of each result it
# reports (bytes for an attempt, str for an install). Nothing is ever called.
REQUESTOR = Policy("requestor", values=frozenset({"builtins:bytes", "builtins:str"}))
