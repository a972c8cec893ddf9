"""Dask preload that makes a worker (and its nanny) a hardened gflite provider::

    GFLITE_PRICE=0.02 GFLITE_MAX_MEMORY=2G dask worker tls://requestor.example:8786 --name alice \\
        --preload gflite.gwasm.executors.dask.provider \\
        --preload-nanny gflite.gwasm.executors.dask.provider ...

(the README's "Run a cluster" gives the whole recipe). Importing it hardens
this process: every unpickling goes through the provider policy (tasks naming
:mod:`.tasks`' two entry points, nothing else callable), Dask's HTTP servers
listen on loopback, and the handlers a provider does not need are blocked.
Never import it in a requestor.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import dask

from gflite import __version__
from gflite.gwasm.executors.dask import guard, messages, policies, tasks, unpickle

logger = logging.getLogger("distributed.gflite")

unpickle.install(policies.PROVIDER)
dask.config.set(guard.blocked_config())
guard.loopback_http()


def dask_setup(server: Any) -> None:
    """Dask preload hook, for the worker and for its nanny: block and guard their
    handlers; a worker also publishes its price before it registers."""
    from distributed import Nanny

    if isinstance(server, Nanny):
        guard.harden(server, "nanny")
        return
    guard.harden(server, "worker")
    info = {"price": messages.declared_price(), "version": __version__,
            "caps": messages.caps_info(tasks.declare_caps())}
    server.startup_information[messages.INFO_KEY] = lambda _w: dict(info)
    logger.info("gflite provider: hardened, pid %d, price %s per CPU-second", os.getpid(),
                info["price"])


def dask_teardown(server: Any) -> None:
    """Dask preload hook: stop this worker's sandbox processes and remove their files."""
    tasks.close()
