"""Canaries for the Dask hardening: it patches private internals of one pinned
distributed release, so an upgrade that adds an unpickling site or an RPC
handler must fail here until someone decides about it."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gflite.gwasm.executors.dask import guard, unpickle

PINNED = "2026.8.0"
# dask (not distributed) modules that unpickle. None is reached by a message:
# they run inside task functions a hardened process never admits (parquet,
# merges, from_npy_stack) or reload what they just pickled themselves
# (tokenize, utils).
DASK_UNPICKLERS = {"dask.array.core", "dask.dataframe.dask_expr.io.parquet",
                   "dask.dataframe.multi", "dask.tokenize", "dask.utils"}
LOADS = re.compile(r"\b(?:pickle|cloudpickle|marshal)\.loads?\(|Unpickler\b|"
                   r"^\s*from (?:pickle|cloudpickle) import (?!PickleBuffer\b)", re.M)
STDLIB_PICKLE = re.compile(r"^\s*import pickle\b", re.M)


def _modules(package: str) -> dict[str, str]:
    root = Path(__import__(package).__file__).parent
    out = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent).with_suffix("")
        if "tests" in rel.parts:
            continue
        out[".".join(rel.parts).removesuffix(".__init__")] = path.read_text(errors="replace")
    return out


def test_distributed_is_the_pinned_release() -> None:
    import dask
    import distributed

    assert distributed.__version__ == PINNED and dask.__version__ == PINNED


def test_every_unpickling_site_in_distributed_is_covered() -> None:
    sites = set()
    for name, text in _modules("distributed").items():
        calls = LOADS.findall(text)
        if not calls:
            continue
        if STDLIB_PICKLE.search(text) and any(c.startswith("pickle.load") for c in calls):
            sites.add(name)
        # Every other kind of site (cloudpickle.loads, an Unpickler, marshal) is new.
        others = [c for c in calls if not c.startswith("pickle.load")]
        assert not others, f"{name} unpickles by another route: {others}"
    # distributed.protocol.pickle calls the standard pickle.loads for everyone else.
    assert sites == set(unpickle.SITES)


def test_dask_itself_unpickles_only_where_it_did() -> None:
    found = {name for name, text in _modules("dask").items() if LOADS.search(text)}
    assert found == DASK_UNPICKLERS


def test_every_handler_is_known_and_decided() -> None:
    from distributed import Nanny, Scheduler, Worker

    async def handlers() -> dict[str, set[str]]:
        s = Scheduler(dashboard=False, dashboard_address="127.0.0.1:0")
        w = Worker("tcp://127.0.0.1:1")
        n = Nanny("tcp://127.0.0.1:1")
        return {"scheduler": set(s.handlers), "worker": set(w.handlers),
                "nanny": set(n.handlers)}

    found = asyncio.run(handlers())
    for kind, names in found.items():
        assert names == guard.KNOWN[kind], (kind, sorted(names ^ guard.KNOWN[kind]))
        assert guard.ALLOWED[kind] <= names


@pytest.mark.parametrize("kind", sorted(guard.KNOWN))
def test_the_dangerous_handlers_are_blocked(kind: str) -> None:
    must = {"scheduler": {"run_function", "feed", "register_worker_plugin",
                          "register_scheduler_plugin", "register_nanny_plugin", "restart",
                          "retire_workers", "broadcast", "proxy", "scatter",
                          "dump_cluster_state_to_url", "terminate", "gather"},
            "worker": {"run", "run_coroutine", "plugin-add", "upload_file", "actor_execute",
                       "actor_attribute", "terminate", "update_data", "gather"},
            "nanny": {"run", "plugin_add", "kill", "restart", "terminate", "instantiate"}}
    assert must[kind] <= set(guard.blocked(kind))


def test_the_readmes_provider_variables_block_only_what_the_preload_blocks() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for kind in ("worker", "nanny"):
        m = re.search(rf"DASK_DISTRIBUTED__{kind.upper()}__BLOCKED_HANDLERS='(\[[^']*\])'", readme)
        assert m, kind
        listed = set(eval(m.group(1)))  # a literal list of strings
        assert listed <= set(guard.blocked(kind))
        assert {"run", "terminate"} <= listed
    assert {"run_coroutine", "upload_file", "plugin-add", "actor_execute"} <= set(eval(re.search(
        r"WORKER__BLOCKED_HANDLERS='(\[[^']*\])'", readme).group(1)))


def test_the_wrapped_internals_are_where_the_hardening_expects_them() -> None:
    import inspect

    import distributed.client
    import distributed.core
    from distributed.comm import tcp

    # requestor.harden wraps these: TCP.read must read its frames through the
    # module-level read_bytes_rw, and the client must call clean_exception by name.
    assert "read_bytes_rw(" in inspect.getsource(tcp.TCP.read)
    assert "clean_exception(" in inspect.getsource(distributed.client)
    assert "self.handlers[op]" in inspect.getsource(distributed.core.Server._handle_comm)
    assert "self.blocked_handlers" in inspect.getsource(distributed.core.Server._handle_comm)
