"""The only unpickler a hardened Dask process uses: named globals, and fewer calls.

No Dask setting turns pickle off, and Dask unpickles what peers send in many
places (task graphs, results' types, errors, warnings, plugins). Almost all of
them end in the standard library's ``pickle.loads`` looked up at call time from
a handful of modules (:data:`SITES`), so :func:`install` gives each of them a
``pickle`` of its own whose ``loads`` (``tests/test_dask_canary.py`` fails
when an upgrade adds a site):

- looks up only the globals a :class:`Policy` names (``module:qualname``);
- calls (REDUCE) only those the policy lets it call, each with an argument
  check, and builds (NEWOBJ + BUILD, no ``__init__``) only the classes it
  names: an allowed global is still code, e.g. ``bytes(3_000_000_000)``;
- never raises for a refused global or call: it puts an inert :class:`Refused`
  in its place, so one bad object in a batch of Dask messages does not drop the
  batch (or the connection, or the worker); a task whose function is Refused
  fails with PermissionError when run.

It is the pure-Python unpickler: a few tens of microseconds per task message.
"""
from __future__ import annotations

import importlib
import io
import logging
import pickle
import threading
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("gflite.dask.unpickle")

ArgCheck = Callable[[tuple], bool]


def any_args(args: tuple) -> bool:
    return True


@dataclass(frozen=True)
class Policy:
    """What one kind of process may unpickle. Keys are ``module:qualname``."""

    name: str
    values: frozenset[str] = frozenset()  # may be looked up, never called
    calls: Mapping[str, ArgCheck] = field(default_factory=dict)  # REDUCE, with a check
    builds: frozenset[str] = frozenset()  # NEWOBJ (cls.__new__) and BUILD on its instances

    def known(self, key: str) -> bool:
        return key in self.values or key in self.calls or key in self.builds


class Refused:
    """What stands where a refused global, call or object was: inert data."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(f"gflite refused to unpickle {self.what}")

    def __repr__(self) -> str:
        return f"<refused {self.what}>"

    def __reduce__(self) -> tuple:
        return (Refused, (self.what,))


# Counted, for the tests and for the log: what was refused in this process.
refusals: list[str] = []
_refusals_lock = threading.Lock()


def _refuse(what: str) -> Refused:
    with _refusals_lock:
        if len(refusals) < 1000:
            refusals.append(what)
    logger.warning("refused to unpickle %s", what)
    return Refused(what)


def _key(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """``pickle._Unpickler`` with find_class, REDUCE, NEWOBJ, BUILD and INST/OBJ
    under a :class:`Policy`."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, policy: Policy, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self.policy = policy
        self._found: dict[int, str] = {}  # id of each global handed out -> its key

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}:{name}"
        if not self.policy.known(key):
            return _refuse(key)
        obj = super().find_class(module, name)
        self._found[id(obj)] = key
        return obj

    def _key_of(self, obj: Any) -> str | None:
        # Globals stay alive in their modules, so their ids are not reused meanwhile.
        return self._found.get(id(obj))

    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        key = self._key_of(func)
        check = self.policy.calls.get(key) if key else None
        if check is None or not isinstance(args, tuple) or not check(args):
            stack[-1] = _refuse(f"a call of {key or type(func).__name__}")
            return
        stack[-1] = func(*args)

    def _new(self, cls: Any, args: tuple, kwargs: dict | None = None) -> Any:
        key = self._key_of(cls)
        if key is None or key not in self.policy.builds or not isinstance(cls, type):
            return _refuse(f"an instance of {key or type(cls).__name__}")
        return cls.__new__(cls, *args, **(kwargs or {}))

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def load_build(self) -> None:
        inst = self.stack[-2]  # below the state
        if isinstance(inst, Refused):
            self.stack.pop()  # the state goes nowhere
            return
        if _key(type(inst)) not in self.policy.builds:
            self.stack.pop()
            self.stack[-1] = _refuse(f"the state of a {type(inst).__name__}")
            return
        super().load_build()

    def load_inst(self) -> None:  # protocol 0/1 spellings of a call
        _refuse("an INST/OBJ opcode")
        raise pickle.UnpicklingError("INST/OBJ opcodes are not accepted")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.INST[0]] = load_inst
    dispatch[pickle.OBJ[0]] = load_inst


def loads_with(policy: Policy, data: Any, *, buffers: Any = (), **kwargs: Any) -> Any:
    """Unpickle ``data`` (bytes-like) under ``policy``."""
    file = io.BytesIO(data)
    return RestrictedUnpickler(file, policy, buffers=buffers or None, **kwargs).load()


# The modules of distributed that call the standard library's pickle.loads (by
# attribute, at call time). Everything else in Dask that unpickles goes through
# the first one. tests/test_dask_canary.py fails when an upgrade adds a site.
SITES = ("distributed.protocol.pickle", "distributed.client", "distributed.scheduler",
         "distributed.shuffle._pickle", "distributed.shuffle._core")

_installed: Policy | None = None


def installed() -> Policy | None:
    return _installed


def install(policy: Policy) -> None:
    """From now on every unpickling Dask does in this process goes through
    ``policy``: each of :data:`SITES` gets a ``pickle`` module of its own whose
    ``loads`` is restricted. The standard library's module is left alone (the
    local executor's pipe to its own sandbox processes uses it). One policy per
    process: a second, different one is an error."""
    global _installed
    if _installed is not None:
        if _installed.name != policy.name:
            raise RuntimeError(f"this process already unpickles as {_installed.name}")
        return

    def loads(data: Any, /, *, fix_imports: bool = True, encoding: str = "ASCII",
              errors: str = "strict", buffers: Any = ()) -> Any:
        return loads_with(policy, data, buffers=buffers, fix_imports=fix_imports,
                          encoding=encoding, errors=errors)

    shim = types.ModuleType(f"pickle (gflite {policy.name} policy)")
    shim.__dict__.update({k: v for k, v in vars(pickle).items() if not k.startswith("__")})
    shim.loads = loads  # type: ignore[attr-defined]
    shim.Unpickler = None  # type: ignore[attr-defined]  # nobody may build an unrestricted one
    shim.load = None  # type: ignore[attr-defined]
    for name in SITES:
        module = importlib.import_module(name)
        if module.pickle is not pickle:  # type: ignore[attr-defined]
            raise RuntimeError(f"{name} no longer uses the standard pickle module")
        module.pickle = shim  # type: ignore[attr-defined]
    _installed = policy
